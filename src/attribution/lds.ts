// Linear datamodeling score: train models on fresh random alpha-subsets of the training set, record their
// margins on target examples, and compare with the margins the attribution predicts for each subset,
//   predicted[s][i] = sum_{j in S_s} A[i][j] = (U_targets (Vᵀ 1_{S_s}))_i,
// by Spearman correlation across subsets, averaged over targets.
import { type DeviceDataset } from "../../kernels/batch.ts";
import type { Runtime, Tensor } from "../gpu/runtime.ts";
import { buildModel, type Model, type ModelConfig } from "../nn/models.ts";
import { evaluate, type Recipe, trainModel } from "../nn/train.ts";
import { seededIndices } from "../data/dataset.ts";
import { matmul } from "../../kernels/matmul.ts";
import { Featurizer, type Projection } from "./featurize.ts";
import { type Attribution, buildAttribution, type KernelOptions } from "./trak.ts";

/** S masks over n examples, each with round(alpha n) ones, from (seed, s). */
export function subsetMasks(n: number, S: number, alpha: number, seed: number): Uint8Array[] {
  const size = Math.round(alpha * n);
  return Array.from({ length: S }, (_, s) => {
    const m = new Uint8Array(n);
    for (const i of seededIndices(n, size, (seed ^ Math.imul(s + 1, 0x9e3779b9)) >>> 0)) m[i] = 1;
    return m;
  });
}

/** Average ranks (ties share the mean rank). */
export function ranks(x: ArrayLike<number>): Float64Array {
  const idx = Array.from({ length: x.length }, (_, i) => i).sort((a, b) => x[a] - x[b]);
  const r = new Float64Array(x.length);
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && x[idx[j + 1]] === x[idx[i]]) j++;
    for (let t = i; t <= j; t++) r[idx[t]] = (i + j) / 2;
    i = j + 1;
  }
  return r;
}

export function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0, mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i] / n;
    mb += b[i] / n;
  }
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) ** 2;
    sbb += (b[i] - mb) ** 2;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : 0;
}

export const spearman = (a: ArrayLike<number>, b: ArrayLike<number>) => pearson(ranks(a), ranks(b));

/** LDS from predicted and actual margins, both [S][T]: Spearman over s per target, averaged over targets. */
export function ldsScore(predicted: ArrayLike<number>[], actual: ArrayLike<number>[]): { lds: number; perTarget: Float64Array } {
  const S = predicted.length;
  const T = predicted[0].length;
  const perTarget = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    perTarget[t] = spearman(Array.from({ length: S }, (_, s) => predicted[s][t]), Array.from({ length: S }, (_, s) => actual[s][t]));
  }
  return { lds: perTarget.reduce((a, b) => a + b, 0) / T, perTarget };
}

/** Predicted margins [S][T] of every subset on the targets whose U rows are `targetU` [T, M k]. */
export async function predictSubsetMargins(rt: Runtime, a: Attribution, targetU: Tensor, masks: Uint8Array[]): Promise<Float32Array[]> {
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
export async function subsetMargins(rt: Runtime, st: LdsSetting, masks: Uint8Array[], seed: number, log?: (s: string) => void): Promise<Float32Array[]> {
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

export function releaseModel(model: Model): void {
  for (const p of model.params) {
    p.value.release();
    p.velocity?.release();
    p.grad?.release();
  }
}

export interface EnsembleFeatures {
  train: { phi: Tensor; margins: Float32Array; q: Float32Array; n: number; k: number }[];
  targets: Tensor[];
}

/** Featurise train and target sets with each model (same projection seed, model index m). */
export async function ensembleFeatures(rt: Runtime, models: Model[], st: LdsSetting, o: { k: number; projection: Projection; seed: number; batchSize?: number }): Promise<EnsembleFeatures> {
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
export async function ldsBySize(rt: Runtime, feats: EnsembleFeatures, masks: Uint8Array[], actual: Float32Array[], sizes: number[], ko: KernelOptions = {}): Promise<{ M: number; lds: number }[]> {
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
export async function trainEnsemble(rt: Runtime, st: LdsSetting, M: number, seed: number, log?: (s: string) => void): Promise<Model[]> {
  const models: Model[] = [];
  for (let m = 0; m < M; m++) {
    const model = buildModel(rt, st.config, seed + 1000 + m);
    await trainModel(rt, model, st.train, { ...st.recipe, seed: seed + 1000 + m });
    models.push(model);
    log?.(`ensemble model ${m + 1}/${M}`);
  }
  return models;
}
