// The "trak" job: `npm run detect`'s attribution cut into volunteer shards.
//   train/m             (nondeterministic, spot-checked): ensemble member m -> checkpoint + margins on all n
//   featurize/m/a-b     (deterministic, quorum 2; needs train/m): TRAK features of examples [a, b)
//   finish              (deterministic, quorum 2; needs all of them): the scores and the report, computed by a
//                       volunteer with WebGPU as the single-machine pipeline does (src/detect/job-finish.ts):
//                       scoring, baselines, budget, evaluation of model 0. Removal and retraining are not part
//                       of the job (they need the scores; the plan is fixed up front): "after" figures are left
//                       empty and the flagged list is the output.
// The coordinator's part is validation only; spot checks need no device (the float64 twins of the layers run
// on the host), and a Deno coordinator audits featurize and finish shards on its own device.
import { z } from "zod";
import { DetectConfig } from "../../src/detect/config.ts";
import { ensembleSeed } from "../../src/detect/training-set.ts";
import { ModelConfig } from "../../src/nn/models.ts";
import { Recipe } from "../../src/nn/train.ts";
import { defineJobKind, FINISH, type ShardPlan } from "../../src/protocol/job-kind.ts";
import { featurizeRange } from "../../src/attribution/featurize.ts";
import { detectRuntime } from "../../src/gpu/device.ts";
import { modelFromSafetensors } from "../../src/nn/checkpoint.ts";
import { releaseModel } from "../../src/nn/models.ts";
import {
  FEATURIZE,
  featurizeKey,
  FeaturizePayload,
  TRAIN,
  TRAK_FINISH,
  TrakFinishPayload,
} from "../../src/protocol/shards.ts";
import { trakFinish } from "../../src/detect/job-finish.ts";
import {
  bitwiseEqual,
  datasetRef,
  finishesAgree,
  finishShard,
  JobData,
  onDevice,
  plannedExamples,
  recomputeFinish,
  spotCheckTrain,
  trainingSet,
  trainShard,
} from "./train-shard.ts";

const TILE = 64; // featurisation tile of the pipeline: shard boundaries on tiles keep the rounding identical

export const TrakSpec = DetectConfig.pick({
  testSize: true,
  seed: true,
  attackConfig: true,
  model: true,
  recipe: true,
  models: true,
  k: true,
  projection: true,
  qWeight: true,
  restarts: true,
  searchBackend: true,
  budget: true,
}).extend({
  ...JobData.shape,
  /** Training examples per featurize shard: a multiple of the 64-example tile. */
  shardSize: z.number().int().positive().multipleOf(TILE, "a multiple of 64 (the featurisation tile)").default(512),
});
export type TrakSpec = z.output<typeof TrakSpec>;

/** Agreement of two results of the same deterministic shard; see `agree` below for the reasoning. */
export const TOLERANCE = { phiRow: 1e-3, margin: 1e-3, q: 1e-3 };

const trainKey = (m: number) => `${TRAIN}/${m}`;

export function featurizeRanges(n: number, shardSize: number): [number, number][] {
  const out: [number, number][] = [];
  for (let a = 0; a < n; a += shardSize) out.push([a, Math.min(n, a + shardSize)]);
  return out;
}

function rowsAgree(a: Float32Array, b: Float32Array, rows: number, cols: number, rel: number): boolean {
  for (let r = 0; r < rows; r++) {
    let d = 0, na = 0, nb = 0;
    for (let c = r * cols; c < (r + 1) * cols; c++) {
      d += (a[c] - b[c]) ** 2;
      na += a[c] ** 2;
      nb += b[c] ** 2;
    }
    if (!(Math.sqrt(d) <= rel * Math.sqrt(Math.max(na, nb)) + 1e-12)) return false;
  }
  return true;
}

export const trak = defineJobKind<TrakSpec>({
  name: "trak",
  spec: TrakSpec as unknown as z.ZodType<TrakSpec>,

  plan(s) {
    trainingSet(s).catch(() => {}); // decode now, not in the first spot check
    const n = plannedExamples(s);
    const dataset = datasetRef(s);
    const shards: ShardPlan[] = [];
    for (let m = 0; m < s.models; m++) {
      shards.push(
        trainShard(
          trainKey(m),
          {
            dataset,
            model: ModelConfig.parse(s.model),
            recipe: Recipe.parse(s.recipe),
            m,
            seed: ensembleSeed(s.seed, m),
          },
          n,
          s,
        ),
      );
    }
    for (let m = 0; m < s.models; m++) {
      for (const [a, b] of featurizeRanges(n, s.shardSize)) {
        const payload: FeaturizePayload = {
          dataset,
          checkpoint: trainKey(m),
          k: s.k,
          projection: s.projection,
          seed: s.seed,
          modelIndex: m,
          start: a,
          end: b,
          batchSize: TILE,
        };
        shards.push({
          key: featurizeKey(m, a, b),
          kind: FEATURIZE,
          payload,
          deps: [trainKey(m)],
          deterministic: true,
          outputs: {
            phi: { dtype: "f32", shape: [b - a, s.k] },
            margins: { dtype: "f32", shape: [b - a] },
            q: { dtype: "f32", shape: [b - a] },
          },
        });
      }
    }
    const finish: TrakFinishPayload = {
      dataset,
      cfg: DetectConfig.parse(s),
      models: s.models,
      k: s.k,
      ranges: featurizeRanges(n, s.shardSize),
      model0: trainKey(0),
    };
    shards.push(finishShard(s, TRAK_FINISH, finish, shards, n));
    return shards;
  },

  /**
   * Two volunteers' features of the same examples under the same accepted checkpoint. On one adapter
   * they are bitwise equal (same kernels, tiles and order). Across GPUs only the summation order of the
   * matmuls changes: each phi entry sums ~10^3-10^4 products over layers, positions and the projection,
   * so f32 reorderings move a row by ~1e-6-1e-5 of its norm (u = 6e-8, error ~ u sqrt(terms) typically,
   * u * terms at worst ~ 1e-3). A row relative error of 1e-3 admits that and rejects any real change
   * (a different checkpoint, example or seed changes rows by O(1)). Margins: 1e-3 (1 + |m|); Q = 1 -
   * sigmoid(m) moves at most |dm|/4, so 1e-3 absolute.
   */
  agree(shard, a, b) {
    if (shard.key === FINISH) return finishesAgree(a, b);
    const names = Object.keys(shard.outputs);
    for (const name of names) if (!a[name] || !b[name] || a[name].data.length !== b[name].data.length) return false;
    if (shard.kind !== FEATURIZE) return bitwiseEqual(a, b);
    const [rows, cols] = shard.outputs.phi.shape;
    if (!rowsAgree(a.phi.data as Float32Array, b.phi.data as Float32Array, rows, cols, TOLERANCE.phiRow)) return false;
    const ma = a.margins.data, mb = b.margins.data, qa = a.q.data, qb = b.q.data;
    for (let i = 0; i < rows; i++) {
      if (!(Math.abs(ma[i] - mb[i]) <= TOLERANCE.margin * (1 + Math.abs(ma[i])))) return false;
      if (!(Math.abs(qa[i] - qb[i]) <= TOLERANCE.q)) return false;
    }
    return true;
  },

  /** A featurize or finish shard on the coordinator's device (Deno): the library call the volunteers' executor
   *  makes. */
  recompute(s, shard, inputs) {
    if (shard.kind === TRAK_FINISH) {
      return recomputeFinish(s, inputs, (c) => trakFinish(TrakFinishPayload.parse(shard.payload), c));
    }
    if (shard.kind !== FEATURIZE || detectRuntime() === "node") return Promise.resolve(undefined);
    const p = FeaturizePayload.parse(shard.payload);
    return onDevice(s, async (rt, ds) => {
      const ck = await inputs.get(p.checkpoint, "checkpoint");
      const { model } = modelFromSafetensors(rt, ck.data as Uint8Array, p.checkpoint, s.model);
      try {
        const { k, projection, seed, modelIndex, batchSize, start, end } = p;
        return await featurizeRange(rt, model, ds, { k, projection, seed, modelIndex, batchSize, start, end });
      } finally {
        releaseModel(model);
      }
    });
  },

  spotCheck: (s, shard, result, _inputs, seed, depth) =>
    shard.kind === TRAIN ? spotCheckTrain(s, shard, result, seed, depth) : Promise.resolve(null),
});
