// Baseline detectors on penultimate-layer activations of the same trained model: spectral signatures
// (Tran et al. 2018) and activation clustering (Chen et al. 2018). Both work per class, in float64 on
// the host: the features are small (n x F, F = the head's input width).
import { assembleBatch, type DeviceDataset } from "../../kernels/batch.ts";
import type { Runtime, Tensor } from "../gpu/runtime.ts";
import { type Dataset, mulberry32 } from "../data/dataset.ts";
import { Dense, type Layer } from "../nn/layers.ts";
import type { Model } from "../nn/models.ts";
import { Recipe } from "../nn/train.ts";

/** Penultimate activations (the input of the last dense layer), row per example: [n][F], one readback. */
export async function penultimate(
  rt: Runtime,
  model: Model,
  ds: DeviceDataset,
  batchSize = 256,
): Promise<Float64Array[]> {
  const layers = model.net.layers;
  let head = layers.length - 1;
  while (head >= 0 && !(layers[head] instanceof Dense)) head--;
  if (head < 0) throw new Error("penultimate: the model has no dense head");
  const body: Layer[] = layers.slice(0, head);
  const r = Recipe.parse({});
  const order = rt.upload(Uint32Array.from({ length: ds.n }, (_, i) => i), [ds.n], "u32");
  const outs: Tensor[] = [];
  for (let start = 0; start < ds.n; start += batchSize) {
    const size = Math.min(batchSize, ds.n - start);
    const { x, y } = assembleBatch(rt, ds, {
      order,
      start,
      size,
      mean: r.mean,
      std: r.std,
      pad: 0,
      flip: false,
      seed: 0,
      stream: 0,
    });
    let h = x;
    for (const l of body) {
      const out = l.forward(rt, h, "eval");
      h.release();
      h = out;
    }
    y.release();
    outs.push(h);
  }
  const host = await rt.readMany(outs);
  outs.forEach((t) => t.release());
  order.release();
  const rows: Float64Array[] = [];
  host.forEach((block, b) => {
    const [F, size] = outs[b].shape;
    for (let j = 0; j < size; j++) rows.push(Float64Array.from({ length: F }, (_, f) => block[f * size + j]));
  });
  return rows;
}

function byClass(labels: ArrayLike<number>): Map<number, number[]> {
  const m = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) m.set(labels[i], [...(m.get(labels[i]) ?? []), i]);
  return m;
}

function centred(rows: Float64Array[], idx: number[]): Float64Array[] {
  const F = rows[0].length;
  const mean = new Float64Array(F);
  for (const i of idx) for (let f = 0; f < F; f++) mean[f] += rows[i][f] / idx.length;
  return idx.map((i) => rows[i].map((v, f) => v - mean[f]));
}

/** Top `count` principal directions of centred rows (orthogonal iteration on the F x F covariance). */
function principal(x: Float64Array[], count: number, seed: number): Float64Array[] {
  const F = x[0].length;
  const cov = new Float64Array(F * F);
  for (const r of x) {
    for (let a = 0; a < F; a++) {
      const ra = r[a];
      if (ra) { for (let b = 0; b < F; b++) cov[a * F + b] += ra * r[b]; }
    }
  }
  const rand = mulberry32(seed);
  let q = Array.from({ length: Math.min(count, F) }, () => Float64Array.from({ length: F }, () => rand() - 0.5));
  for (let it = 0; it < 60; it++) {
    q = q.map((v) => {
      const w = new Float64Array(F);
      for (let a = 0; a < F; a++) {
        let s = 0;
        for (let b = 0; b < F; b++) s += cov[a * F + b] * v[b];
        w[a] = s;
      }
      return w;
    });
    for (let i = 0; i < q.length; i++) { // Gram-Schmidt
      for (let j = 0; j < i; j++) {
        const d = dot(q[i], q[j]);
        q[i] = q[i].map((v, f) => v - d * q[j][f]);
      }
      const n = Math.sqrt(dot(q[i], q[i])) || 1;
      q[i] = q[i].map((v) => v / n);
    }
  }
  return q;
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

export interface BaselineResult {
  /** Higher = more suspicious; comparable across classes. */
  scores: Float64Array;
  flagged: number[];
}

/**
 * Spectral signatures: per class, the squared projection of centred features on the top singular
 * vector; the top 1.5 x (expected poison fraction) of each class is flagged. Scores are divided by the
 * class median so classes compare.
 */
export function spectralSignatures(
  rows: Float64Array[],
  labels: ArrayLike<number>,
  expectedRate: number,
  seed = 0,
): BaselineResult {
  const scores = new Float64Array(rows.length);
  const flagged: number[] = [];
  for (const [, idx] of byClass(labels)) {
    if (idx.length < 3) continue;
    const x = centred(rows, idx);
    const [v] = principal(x, 1, seed);
    const s = x.map((r) => dot(r, v) ** 2);
    const med = [...s].sort((a, b) => a - b)[s.length >> 1] || 1e-12;
    idx.forEach((i, j) => (scores[i] = s[j] / med));
    const remove = Math.min(idx.length, Math.round(1.5 * expectedRate * idx.length));
    flagged.push(...idx.map((i, j) => [i, s[j]] as const).sort((a, b) => b[1] - a[1]).slice(0, remove).map(([i]) => i));
  }
  return { scores, flagged };
}

/**
 * Activation clustering: per class, project centred features on their top 10 principal directions,
 * split them with 2-means, and flag the smaller cluster when it holds under `maxFraction` of the class.
 * Score: members of a flagged small cluster rank first, each group ordered by distance from the large
 * cluster's centre.
 */
export function activationClustering(
  rows: Float64Array[],
  labels: ArrayLike<number>,
  seed = 0,
  maxFraction = 0.35,
): BaselineResult {
  const scores = new Float64Array(rows.length);
  const flagged: number[] = [];
  for (const [, idx] of byClass(labels)) {
    if (idx.length < 4) continue;
    const x = centred(rows, idx);
    const dirs = principal(x, 10, seed);
    const z = x.map((r) => dirs.map((d) => dot(r, d)));
    const assign = twoMeans(z, seed);
    const size1 = assign.reduce((s, a) => s + a, 0);
    const small = size1 <= idx.length - size1 ? 1 : 0;
    const smallSize = small ? size1 : idx.length - size1;
    const bigCentre = centre(z.filter((_, j) => assign[j] !== small));
    const dist = z.map((p) => Math.sqrt(p.reduce((s, v, d) => s + (v - bigCentre[d]) ** 2, 0)));
    const scale = Math.max(...dist) || 1;
    const suspicious = smallSize / idx.length < maxFraction;
    idx.forEach((i, j) => {
      const inSmall = assign[j] === small;
      scores[i] = (inSmall && suspicious ? 1 : 0) + dist[j] / scale / 2;
      if (inSmall && suspicious) flagged.push(i);
    });
  }
  return { scores, flagged };
}

function centre(points: number[][]): number[] {
  const c = new Array(points[0]?.length ?? 0).fill(0);
  for (const p of points) p.forEach((v, d) => (c[d] += v / points.length));
  return c;
}

/** Seeded 2-means (farthest-point initialisation, Lloyd iterations). */
function twoMeans(z: number[][], seed: number): number[] {
  const rand = mulberry32(seed);
  const d2 = (a: number[], b: number[]) => a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0);
  const first = z[Math.floor(rand() * z.length)];
  let second = z[0];
  for (const p of z) if (d2(p, first) > d2(second, first)) second = p;
  let c = [first, second];
  let assign = z.map(() => 0);
  for (let it = 0; it < 50; it++) {
    const next = z.map((p) => (d2(p, c[0]) <= d2(p, c[1]) ? 0 : 1));
    const changed = next.some((a, i) => a !== assign[i]);
    assign = next;
    const groups = [z.filter((_, i) => assign[i] === 0), z.filter((_, i) => assign[i] === 1)];
    if (!groups[0].length || !groups[1].length) break;
    c = groups.map(centre);
    if (!changed && it > 0) break;
  }
  return assign;
}

/** Every baseline's result, by name. */
export type BaselineResults = Record<string, BaselineResult>;

/** Both baselines on `model`'s penultimate activations. */
export async function runBaselines(
  rt: Runtime,
  model: Model,
  deviceTrain: DeviceDataset,
  train: Dataset,
  poisoned: number[] | null,
  seed: number,
): Promise<BaselineResults> {
  const rows = await penultimate(rt, model, deviceTrain);
  const expectedRate = poisoned ? poisoned.length / train.n : 0.05;
  return {
    "spectral signatures": spectralSignatures(rows, train.labels, expectedRate, seed),
    "activation clustering": activationClustering(rows, train.labels, seed),
  };
}
