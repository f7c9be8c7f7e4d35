// Linear datamodeling score: train models on fresh random alpha-subsets of the training set, record their
// margins on target examples, and compare with the margins the attribution predicts for each subset,
//   predicted[s][i] = sum_{j in S_s} A[i][j] = (U_targets (Vᵀ 1_{S_s}))_i,
// by Spearman correlation across subsets, averaged over targets; and the same score for an n x n A whose
// targets are the training examples (heldOutLds).
import { type DeviceDataset } from "../../kernels/batch.ts";
import type { Runtime, Tensor } from "../gpu/runtime.ts";
import { buildModel, type Model, type ModelConfig, releaseModel } from "../nn/models.ts";
import { evaluate, type Recipe, trainModel } from "../nn/train.ts";
import { maskBits } from "../datamodels/masks.ts";
import { spearman } from "../math.ts";
import { matmul } from "../../kernels/matmul.ts";
import { Featurizer, type Projection } from "./featurize.ts";
import { type Attribution, buildAttribution, type KernelOptions } from "./trak.ts";

/** S masks over n examples, each with round(alpha n) ones: the held-out stream of src/datamodels/masks.ts. */
export function subsetMasks(n: number, S: number, alpha: number, seed: number): Uint8Array[] {
  return Array.from({ length: S }, (_, s) => maskBits({ n, alpha, seed }, "heldout", s));
}

export interface Lds {
  /** The mean over scored targets. */
  lds: number;
  /** Per target; NaN where the target was not scored. */
  perTarget: Float64Array;
  targets: number;
}

/** The mean of the per-target Spearman correlations, over the targets that were scored (not NaN). */
function averaged(perTarget: Float64Array): Lds {
  const valid = perTarget.filter((v) => !Number.isNaN(v));
  return {
    lds: valid.length ? valid.reduce((a, b) => a + b, 0) / valid.length : NaN,
    perTarget,
    targets: valid.length,
  };
}

/** LDS from predicted and actual margins, both [S][T], on separate target examples. */
export function ldsScore(predicted: ArrayLike<number>[], actual: ArrayLike<number>[]): Lds {
  const column = (m: ArrayLike<number>[], t: number) => Array.from(m, (row) => row[t]);
  return averaged(
    Float64Array.from({ length: predicted[0].length }, (_, t) => spearman(column(predicted, t), column(actual, t))),
  );
}

/** Subset models held out from a fit: their masks and their margins on the training examples. */
export interface HeldOut {
  /** S masks, n bytes each. */
  masks: Uint8Array[];
  /** S x n actual margins on the training examples. */
  margins: Float32Array[];
}

/**
 * LDS of an n x n attribution whose targets are the training examples themselves (datamodels, or TRAK's
 * A read densely), on held-out subset models. `readRows(r0, r1)` gives rows r0..r1-1 of A (row = target).
 * For target i the Spearman correlation runs over the held-out models whose subset leaves i out: A's
 * diagonal is zero by definition, and a model trained on i fits i whatever the other examples do, which
 * no attribution of other examples can predict. Targets with fewer than `minSubsets` such models are
 * skipped.
 */
export async function heldOutLds(
  readRows: (r0: number, r1: number) => Promise<Float32Array>,
  n: number,
  h: HeldOut,
  opts: { rowBlock?: number; minSubsets?: number } = {},
): Promise<Lds> {
  const minSubsets = opts.minSubsets ?? 3;
  const block = opts.rowBlock ?? 256;
  const perTarget = new Float64Array(n).fill(NaN);
  const members = h.masks.map((m) => Uint32Array.from(Array.from(m.entries()).filter(([, v]) => v).map(([j]) => j)));
  for (let r0 = 0; r0 < n; r0 += block) {
    const r1 = Math.min(n, r0 + block);
    const rows = await readRows(r0, r1);
    for (let i = r0; i < r1; i++) {
      const row = rows.subarray((i - r0) * n, (i - r0 + 1) * n);
      const pred: number[] = [];
      const actual: number[] = [];
      h.masks.forEach((mask, s) => {
        if (mask[i]) return;
        let p = 0;
        for (const j of members[s]) p += row[j];
        pred.push(p);
        actual.push(h.margins[s][i]);
      });
      if (pred.length >= minSubsets) perTarget[i] = spearman(pred, actual);
    }
  }
  return averaged(perTarget);
}

/** Predicted margins [S][T] of every subset on the targets whose U rows are `targetU` [T, M k]. */
export async function predictSubsetMargins(
  rt: Runtime,
  a: Attribution,
  targetU: Tensor,
  masks: Uint8Array[],
): Promise<Float32Array[]> {
  const S = masks.length;
  const n = a.n;
  const X = new Float32Array(n * S);
  masks.forEach((m, s) => m.forEach((v, j) => (X[j * S + s] = v)));
  const x = rt.upload(X, [n, S]);
  const w = matmul(rt, a.V, x, { transA: true }); // [M k, S]
  const p = matmul(rt, targetU, w); // [T, S]
  const host = (await rt.read(p)) as Float32Array;
  [x, w, p].forEach((t) => t.release());
  const T = targetU.shape[0];
  return masks.map((_, s) => Float32Array.from({ length: T }, (_, t) => host[t * S + s]));
}

export interface LdsSetting {
  config: ModelConfig;
  train: DeviceDataset;
  targets: DeviceDataset;
  recipe: Recipe;
  mean?: number[];
  std?: number[];
}

/** Margins [S][T] on the targets of models trained on each subset (training seed = seed + s). */
export async function subsetMargins(
  rt: Runtime,
  st: LdsSetting,
  masks: Uint8Array[],
  seed: number,
  log?: (s: string) => void,
): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let s = 0; s < masks.length; s++) {
    const indices = Uint32Array.from(Array.from(masks[s]).flatMap((v, j) => (v ? [j] : [])));
    const model = buildModel(rt, st.config, seed + s);
    await trainModel(rt, model, st.train, { ...st.recipe, seed: seed + s }, { indices });
    out.push((await evaluate(rt, model, st.targets, { mean: st.mean, std: st.std })).margins);
    releaseModel(model);
    log?.(`subset model ${s + 1}/${masks.length}`);
  }
  return out;
}

export interface EnsembleFeatures {
  train: { phi: Tensor; margins: Float32Array; q: Float32Array; n: number; k: number }[];
  targets: Tensor[];
}

/** Featurise train and target sets with each model (same projection seed, model index m). */
export async function ensembleFeatures(
  rt: Runtime,
  models: Model[],
  st: LdsSetting,
  o: { k: number; projection: Projection; seed: number; batchSize?: number },
): Promise<EnsembleFeatures> {
  const out: EnsembleFeatures = { train: [], targets: [] };
  for (const [m, model] of models.entries()) {
    const f = new Featurizer(rt, model, { ...o, modelIndex: m, mean: st.mean, std: st.std });
    out.train.push(await f.run(st.train));
    out.targets.push((await f.run(st.targets)).phi);
    f.release();
  }
  return out;
}

/** LDS of the attribution built from the first M models of an ensemble, for M in `sizes`. */
export async function ldsBySize(
  rt: Runtime,
  feats: EnsembleFeatures,
  masks: Uint8Array[],
  actual: Float32Array[],
  sizes: number[],
  ko: KernelOptions = {},
): Promise<{ M: number; lds: number }[]> {
  const out: { M: number; lds: number }[] = [];
  for (const M of sizes) {
    const { attribution } = await buildAttribution(rt, feats.train.slice(0, M), ko);
    const tu = attribution.targetU(feats.targets.slice(0, M));
    const predicted = await predictSubsetMargins(rt, attribution, tu, masks);
    out.push({ M, lds: ldsScore(predicted, actual).lds });
    tu.release();
    attribution.release();
  }
  return out;
}

/** Train an ensemble of M models on the whole training set (seeds seed + 1000 + m). */
export async function trainEnsemble(
  rt: Runtime,
  st: LdsSetting,
  M: number,
  seed: number,
  log?: (s: string) => void,
): Promise<Model[]> {
  const models: Model[] = [];
  for (let m = 0; m < M; m++) {
    const model = buildModel(rt, st.config, seed + 1000 + m);
    await trainModel(rt, model, st.train, { ...st.recipe, seed: seed + 1000 + m });
    models.push(model);
    log?.(`ensemble model ${m + 1}/${M}`);
  }
  return models;
}
