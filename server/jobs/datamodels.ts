// The "datamodels" job: `npm run detect -- --attribution datamodels` cut into volunteer shards.
//   train/0       (nondeterministic, spot-checked): a model on the whole set, for the baselines and the
//                 "before" evaluation (as the pipeline's model 0)
//   subset/m      (nondeterministic, spot-checked): subset model m of the regression, trained on its
//                 seeded alpha-mask (src/datamodels/masks.ts) -> checkpoint + margins on all n
//   heldout/m     (the same, on the held-out mask stream; only with ldsModels > 0): scores the fit (LDS)
// Masks are never sent: every worker and the coordinator regenerate them from (seed, split, m).
// finish streams the accepted margins into the regression (fitDatamodels on the device; the float64
// twin on a Node coordinator, up to HOST_FIT_MAX), then the same dense search, budget and report as
// runDetect; see ./train-shard.ts for what a job leaves out (removal and retraining).
import { z } from "zod";
import type { HeldOut } from "../../src/attribution/lds.ts";
import { maskBits, type MaskSpec, type Split, subsetSeed } from "../../src/datamodels/masks.ts";
import { fitDatamodels, type RegressionData } from "../../src/datamodels/regression.ts";
import { fitDatamodelsRef } from "../../src/datamodels/regression-ref.ts";
import { DetectConfig } from "../../src/detect/config.ts";
import { scoreDense } from "../../src/detect/scoring.ts";
import { stageClock } from "../../src/detect/stages.ts";
import { ensembleSeed } from "../../src/detect/training-set.ts";
import { ModelConfig } from "../../src/nn/models.ts";
import { Recipe } from "../../src/nn/train.ts";
import { defineJobKind } from "../../src/protocol/job-kind.ts";
import { TRAIN } from "../../src/protocol/shards.ts";
import {
  bitwiseEqual,
  datasetRef,
  detectConfigOf,
  finishJob,
  finishRuntime,
  JobData,
  plannedExamples,
  searchProgress,
  spotCheckTrain,
  trainingSet,
  trainShard,
} from "./train-shard.ts";

/** Largest n a coordinator without WebGPU fits on the host (float64 twin: O(n³) per solver iteration). */
export const HOST_FIT_MAX = 1024;

export const DatamodelsSpec = DetectConfig.pick({
  testSize: true,
  seed: true,
  attackConfig: true,
  model: true,
  recipe: true,
  dmModels: true,
  dmAlpha: true,
  dmPenalty: true,
  ldsModels: true,
  restarts: true,
  budget: true,
}).extend(JobData.shape);
export type DatamodelsSpec = z.output<typeof DatamodelsSpec>;

const SHARD_PREFIX: Record<Split, string> = { train: "subset", heldout: "heldout" };
export const subsetKey = (split: Split, m: number) => `${SHARD_PREFIX[split]}/${m}`;
const FULL_MODEL = `${TRAIN}/0`;

const maskSpec = (s: DatamodelsSpec, n: number): MaskSpec => ({ n, alpha: s.dmAlpha, seed: s.seed });

export const datamodels = defineJobKind<DatamodelsSpec>({
  name: "datamodels",
  spec: DatamodelsSpec as unknown as z.ZodType<DatamodelsSpec>,

  plan(s) {
    trainingSet(s).catch(() => {}); // decode now, not in the first spot check
    const n = plannedExamples(s);
    const dataset = datasetRef(s);
    const model = ModelConfig.parse(s.model), recipe = Recipe.parse(s.recipe);
    const shards = [
      trainShard(FULL_MODEL, { dataset, model, recipe, m: 0, seed: ensembleSeed(s.seed, 0) }, n, s),
    ];
    const subsets = (split: Split, count: number) => {
      for (let m = 0; m < count; m++) {
        const mask = { alpha: s.dmAlpha, seed: s.seed, split, model: m };
        shards.push(
          trainShard(
            subsetKey(split, m),
            { dataset, model, recipe, m, seed: subsetSeed(s.seed, split, m), mask },
            n,
            s,
          ),
        );
      }
    };
    subsets("train", s.dmModels);
    subsets("heldout", s.ldsModels);
    return shards;
  },

  agree: (_shard, a, b) => bitwiseEqual(a, b),

  spotCheck: (s, shard, result, _inputs, seed, depth) => spotCheckTrain(s, shard, result, seed, depth),

  async finish(s, inputs, outDir, onProgress = () => {}) {
    const clock = stageClock();
    const cfg = detectConfigOf(s, { attribution: "datamodels" });
    const { train } = await trainingSet(s);
    const n = train.n;
    const rt = await finishRuntime(n, HOST_FIT_MAX, "the datamodels fit");
    const spec = maskSpec(s, n);
    const margins = async (split: Split, m: number) =>
      (await inputs.get(subsetKey(split, m), "margins")).data as Float32Array;
    // Streamed in row batches straight from the blob store: O(batch n) in memory, as the issue asks.
    const data: RegressionData = {
      n,
      models: s.dmModels,
      async rows(start, count) {
        const X = new Uint8Array(count * n), Y = new Float32Array(count * n);
        for (let r = 0; r < count; r++) {
          maskBits(spec, "train", start + r, X.subarray(r * n, (r + 1) * n));
          Y.set(await margins("train", start + r), r * n);
        }
        return { X, Y };
      },
    };
    let heldOut: HeldOut | undefined;
    if (s.ldsModels > 0) {
      heldOut = { masks: [], margins: [] };
      for (let m = 0; m < s.ldsModels; m++) {
        heldOut.masks.push(maskBits(spec, "heldout", m));
        heldOut.margins.push(await margins("heldout", m));
      }
    }
    clock.stage("data");

    // One log line per Gram pass and per finished path point, not per solver iteration.
    const fitProgress = (_done: number, _total: number, detail?: string) => {
      if (detail && !detail.includes("iteration")) onProgress(`fit ${detail}`);
    };
    const opts = { penalty: s.dmPenalty, seed: s.seed, onProgress: fitProgress };
    let A: Float32Array;
    if (rt) {
      const fit = await fitDatamodels(rt, data, opts);
      A = (await rt.read(fit.weights)) as Float32Array;
      fit.weights.release();
    } else A = Float32Array.from((await fitDatamodelsRef(data, opts)).weights);
    clock.stage("attribute");
    const scored = await scoreDense(A, n, { ...cfg, labels: train.labels }, searchProgress(onProgress), heldOut);
    clock.stage("search");
    return finishJob({ spec: s, cfg, scored, rt, inputs, model0: FULL_MODEL, outDir, clock, onProgress });
  },
});
