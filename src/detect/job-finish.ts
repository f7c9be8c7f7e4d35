// The finish shard of a volunteer job (src/protocol/job-kind.ts FINISH), on a volunteer with WebGPU or on a
// Deno coordinator auditing one: the job's attribution assembled from its accepted shards (a trak job's
// features; a datamodels job's subset margins, regressed on their masks), then the pipeline's scoring
// (./scoring.ts) and its one finish (./finish.ts), with model 0 for the baselines and the "before" evaluation,
// as `npm run detect` does. No removal or retraining: the plan is fixed before the scores exist, so the
// flagged list is the output. The result is the report's files plus the search scores, which two volunteers'
// results must agree on (server/jobs/train-shard.ts `finishesAgree`).
import type { DeviceDataset } from "../../kernels/batch.ts";
import type { HeldOut } from "../attribution/lds.ts";
import type { Dataset } from "../data/dataset.ts";
import { maskBits } from "../datamodels/masks.ts";
import { fitDatamodels, type RegressionData } from "../datamodels/regression.ts";
import type { Runtime } from "../gpu/runtime.ts";
import { modelFromSafetensors } from "../nn/checkpoint.ts";
import { type Model, releaseModel } from "../nn/models.ts";
import type { ArrayValue, Inputs } from "../protocol/job-kind.ts";
import { type DatamodelsFinishPayload, featurizeKey, subsetKey, type TrakFinishPayload } from "../protocol/shards.ts";
import { type Cfg, DetectConfig } from "./config.ts";
import { finishDetection } from "./finish.ts";
import { reportFiles } from "./report.ts";
import { type HostFeatures, type Scored, scoreDense, scoreHostFeatures } from "./scoring.ts";
import { type StageClock, stageClock } from "./stages.ts";
import type { TrainingSet } from "./training-set.ts";

/** The search score of every example: what two finish results must agree on. */
export const FINISH_SCORES = "scores";

/** Where a finish shard runs: the device, the job's training set (also on the device), its test split. */
export interface FinishContext {
  rt: Runtime;
  set: TrainingSet;
  device: DeviceDataset;
  /** The dataset's whole test split. */
  testSplit: Dataset;
  inputs: Inputs;
  onProgress?: (fraction: number) => void;
}

export async function trakFinish(p: TrakFinishPayload, c: FinishContext): Promise<Record<string, ArrayValue>> {
  const cfg = DetectConfig.parse(p.cfg);
  const { train } = c.set;
  const n = train.n;
  const clock = stageClock();
  const feats: HostFeatures[] = [];
  for (let m = 0; m < p.models; m++) {
    const f = { phi: new Float32Array(n * p.k), margins: new Float32Array(n), q: new Float32Array(n) };
    for (const [start, end] of p.ranges) {
      const get = async (name: string) => (await c.inputs.get(featurizeKey(m, start, end), name)).data as Float32Array;
      f.phi.set(await get("phi"), start * p.k);
      f.margins.set(await get("margins"), start);
      f.q.set(await get("q"), start);
    }
    feats.push(f);
    c.onProgress?.((0.2 * (m + 1)) / p.models);
  }
  clock.stage("data");
  const settings = { ...cfg, labels: train.labels };
  const scored = await scoreHostFeatures(c.rt, feats, n, p.k, settings, () => {}, () => clock.stage("attribute"));
  clock.stage("search");
  return report(cfg, scored, p.model0, clock, c);
}

export async function datamodelsFinish(
  p: DatamodelsFinishPayload,
  c: FinishContext,
): Promise<Record<string, ArrayValue>> {
  const cfg = DetectConfig.parse(p.cfg);
  const { train } = c.set;
  const n = train.n;
  const clock = stageClock();
  const masks = { n, alpha: cfg.dmAlpha, seed: cfg.seed };
  const margins = async (split: "train" | "heldout", m: number) =>
    (await c.inputs.get(subsetKey(split, m), "margins")).data as Float32Array;
  // Streamed in row batches as the solver asks for them: O(batch n) in memory.
  const data: RegressionData = {
    n,
    models: cfg.dmModels,
    async rows(start, count) {
      const X = new Uint8Array(count * n), Y = new Float32Array(count * n);
      for (let r = 0; r < count; r++) {
        maskBits(masks, "train", start + r, X.subarray(r * n, (r + 1) * n));
        Y.set(await margins("train", start + r), r * n);
      }
      return { X, Y };
    },
  };
  let heldOut: HeldOut | undefined;
  if (cfg.ldsModels > 0) {
    heldOut = { masks: [], margins: [] };
    for (let m = 0; m < cfg.ldsModels; m++) {
      heldOut.masks.push(maskBits(masks, "heldout", m));
      heldOut.margins.push(await margins("heldout", m));
    }
  }
  clock.stage("data");
  const fit = await fitDatamodels(c.rt, data, { penalty: cfg.dmPenalty, seed: cfg.seed });
  const A = (await c.rt.read(fit.weights)) as Float32Array;
  fit.weights.release();
  clock.stage("attribute");
  c.onProgress?.(0.5);
  const scored = await scoreDense(A, n, { ...cfg, labels: train.labels }, () => {}, heldOut);
  clock.stage("search");
  return report(cfg, scored, p.model0, clock, c);
}

/** The pipeline's finish from the scores on: the report's files and the scores. */
async function report(
  cfg: Cfg,
  scored: Scored,
  model0: string,
  clock: StageClock,
  c: FinishContext,
): Promise<Record<string, ArrayValue>> {
  c.onProgress?.(0.7);
  let model: Model | undefined;
  const result = await finishDetection({
    cfg,
    scored,
    train: c.set.train,
    poisoned: c.set.poisoned,
    rt: c.rt,
    deviceTrain: c.device,
    testSplit: c.testSplit,
    model0: async () => {
      const ck = (await c.inputs.get(model0, "checkpoint")).data as Uint8Array;
      return (model = modelFromSafetensors(c.rt, ck, model0).model);
    },
    clock,
    onProgress: () => {},
  });
  if (model) releaseModel(model);
  c.onProgress?.(1);
  const files = reportFiles(result).map(([name, data]): [string, ArrayValue] => [
    name,
    { dtype: "u8", shape: [data.length], data },
  ]);
  return {
    ...Object.fromEntries(files),
    [FINISH_SCORES]: { dtype: "f32", shape: [result.scores.length], data: Float32Array.from(result.scores) },
  };
}
