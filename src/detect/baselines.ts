// Baseline detectors on the same trained model: on its penultimate-layer activations, spectral signatures
// (Tran et al. 2018), activation clustering (Chen et al. 2018), SPECTRE (Hayase et al. 2021) and SCAn (Tang
// et al. 2021); on its training losses, an ABL-style isolation score (Li et al. 2021). All work per class
// where the method does, in float64 on the host: the features are small (n x F, F = the head's input width).
import { median, symmetricEigen } from "../math.ts";
import { assembleBatch, type DeviceDataset } from "../../kernels/batch.ts";
import type { Runtime, Tensor } from "../gpu/runtime.ts";
import { type Dataset, mulberry32 } from "../data/dataset.ts";
import { Dense, type Layer } from "../nn/layers.ts";
import type { Model } from "../nn/models.ts";
import { evaluate, Recipe } from "../nn/train.ts";

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

/** f(S) = V diag(f(lambda)) V^T for a symmetric S. */
function matrixFunction(S: Float64Array, d: number, f: (x: number) => number): Float64Array {
  const { values, vectors } = symmetricEigen(S, d);
  const out = new Float64Array(d * d);
  values.forEach((lam, k) => {
    const fv = f(lam), u = vectors[k];
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) out[i * d + j] += fv * u[i] * u[j];
  });
  return out;
}

function covariance(x: ArrayLike<number>[], d: number, mean: Float64Array): Float64Array {
  const c = new Float64Array(d * d);
  for (const r of x) {
    for (let i = 0; i < d; i++) {
      const di = r[i] - mean[i];
      for (let j = 0; j < d; j++) c[i * d + j] += (di * (r[j] - mean[j])) / x.length;
    }
  }
  return c;
}

function meanOf(x: ArrayLike<number>[], d: number): Float64Array {
  const m = new Float64Array(d);
  for (const r of x) for (let i = 0; i < d; i++) m[i] += r[i] / x.length;
  return m;
}

/** Top-`count` per-class scores flagged (ties by index), the shared budget of the per-class baselines. */
function flagTop(idx: number[], s: ArrayLike<number>, count: number): number[] {
  return idx.map((i, j) => [i, s[j]] as const).sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, count).map(([i]) =>
    i
  );
}

/**
 * SPECTRE: per class, features reduced to their top `dims` principal directions, whitened with a robust
 * mean and covariance (spectral filtering: drop the points farthest out along the top direction, refit), then
 * scored by quantum entropy (QUE, alpha = 4): tau_i = z_i^T Q z_i / tr Q with
 * Q = exp(alpha (Sigma - I) / (||Sigma|| - 1)), Sigma the whitened covariance. Flags 1.5 eps of each class.
 * Scores are divided by the class median so classes compare.
 */
export function spectre(
  rows: Float64Array[],
  labels: ArrayLike<number>,
  expectedRate: number,
  seed = 0,
  dims = 16,
): BaselineResult {
  const scores = new Float64Array(rows.length);
  const flagged: number[] = [];
  const eps = Math.min(0.33, Math.max(expectedRate, 0.01));
  for (const [, idx] of byClass(labels)) {
    if (idx.length < 8) continue;
    const x = centred(rows, idx);
    const dirs = principal(x, Math.min(dims, x[0].length, idx.length - 1), seed);
    const d = dirs.length;
    const z = x.map((r) => Float64Array.from(dirs, (u) => dot(r, u)));
    // Robust estimate by spectral filtering: 8 rounds, each dropping the kept points farthest out along
    // the kept covariance's top direction, 1.5 eps of the class in all.
    let keep = z;
    let mean = meanOf(z, d), cov = covariance(z, d, mean);
    const rounds = 8, drop = Math.max(1, Math.round((1.5 * eps * z.length) / rounds));
    for (let it = 0; it < rounds && keep.length > d + drop; it++) {
      const top = symmetricEigen(cov, d).vectors[d - 1];
      const far = keep.map((p) => Math.abs(p.reduce((acc, v, i) => acc + (v - mean[i]) * top[i], 0)));
      const cut = [...far].sort((a, b) => b - a)[drop - 1];
      keep = keep.filter((_, j) => far[j] < cut);
      mean = meanOf(keep, d);
      cov = covariance(keep, d, mean);
    }
    const half = matrixFunction(cov, d, (l) => 1 / Math.sqrt(Math.max(l, 1e-9)));
    const w = z.map((p) => {
      const c = Float64Array.from(p, (v, i) => v - mean[i]);
      return Float64Array.from({ length: d }, (_, i) => {
        let acc = 0;
        for (let j = 0; j < d; j++) acc += half[i * d + j] * c[j];
        return acc;
      });
    });
    const sigma = covariance(w, d, new Float64Array(d));
    const top = symmetricEigen(sigma, d).values[d - 1];
    const alpha = 4;
    const Q = matrixFunction(sigma, d, (l) => Math.exp((alpha * (l - 1)) / Math.max(top - 1, 1e-9)));
    let trace = 0;
    for (let i = 0; i < d; i++) trace += Q[i * d + i];
    const s = w.map((p) => mahalanobis(p, new Float64Array(d), Q, d) / trace);
    const med = [...s].sort((a, b) => a - b)[s.length >> 1] || 1e-12;
    idx.forEach((i, j) => (scores[i] = s[j] / med));
    flagged.push(...flagTop(idx, s, Math.min(idx.length, Math.round(1.5 * eps * idx.length))));
  }
  return { scores, flagged };
}

function mahalanobis(p: ArrayLike<number>, mean: ArrayLike<number>, M: Float64Array, d: number): number {
  let acc = 0;
  for (let i = 0; i < d; i++) {
    let row = 0;
    for (let j = 0; j < d; j++) row += M[i * d + j] * (p[j] - mean[j]);
    acc += (p[i] - mean[i]) * row;
  }
  return acc;
}

/**
 * SCAn (untangling): representations are a class identity plus a variation whose covariance S_e is shared
 * by all classes (estimated here as the pooled within-class covariance of the top `dims` principal
 * directions, from the less split half of the classes). In the S_e-whitened space a class that is one group
 * has variance about 1 in every direction; a class that is two groups has a direction of excess variance,
 * their split. J_c is the class's largest
 * whitened variance. The paper flags classes whose robust z-score of its statistic exceeds e^2; with this
 * statistic and ten classes the z-score is too noisy (clean classes' J spread 1.4-1.9, a poisoned one 4.4:
 * z 5.6 on one seed), so a class is flagged at J_c >= 2 x the median class's, with the smaller subgroup of a
 * 2-means split. Score: J_c / median J, plus for members of its smaller subgroup their share of the split
 * (|z|^2 - |z - subgroup mean|^2 over the largest), so flagged classes' small subgroups rank first.
 */
export function scan(rows: Float64Array[], labels: ArrayLike<number>, seed = 0, dims = 16): BaselineResult {
  const scores = new Float64Array(rows.length);
  const flagged: number[] = [];
  const classes = [...byClass(labels)].filter(([, idx]) => idx.length >= 4);
  if (!classes.length) return { scores, flagged };
  /** Each class split in the space whitened by the pooled variation of the classes `from`. */
  const untangle = (from: typeof classes) => {
    const within = from.flatMap(([, idx]) => centred(rows, idx));
    const dirs = principal(within, Math.min(dims, rows[0].length), seed);
    const d = dirs.length;
    const se = covariance(within.map((r) => dirs.map((u) => dot(r, u))), d, new Float64Array(d));
    const white = matrixFunction(se, d, (l) => 1 / Math.sqrt(Math.max(l, 1e-9)));
    const project = (r: ArrayLike<number>) => {
      const p = dirs.map((u) => dot(r, u));
      return Array.from({ length: d }, (_, i) => p.reduce((acc, v, j) => acc + white[i * d + j] * v, 0));
    };
    return classes.map(([, idx]) => {
      const z = centred(rows, idx).map(project);
      const assign = twoMeans(z, seed);
      const groups = [0, 1].map((g) => z.filter((_, j) => assign[j] === g));
      const centres = groups.map((g) => (g.length ? centre(g) : new Array(d).fill(0)));
      const gain = z.map((p, j) => p.reduce((acc, v, k) => acc + v * v - (v - centres[assign[j]][k]) ** 2, 0));
      const small = groups[1].length <= groups[0].length ? 1 : 0;
      const J = symmetricEigen(covariance(z, d, new Float64Array(d)), d).values[d - 1];
      return { idx, assign, gain, small, J };
    });
  };
  // The variation is estimated again from the less split half of the classes, so a poisoned class's split
  // does not inflate it (the paper's untangling does the same with an EM over the two-component model).
  const first = untangle(classes);
  const cut = [...first.map((p) => p.J)].sort((a, b) => a - b)[(first.length - 1) >> 1];
  const parts = untangle(classes.filter((_, k) => first[k].J <= cut));
  const typical = median(parts.map((p) => p.J));
  for (const p of parts) {
    const index = p.J / typical;
    const top = Math.max(...p.gain, 1e-12);
    p.idx.forEach((i, j) => {
      const inSmall = p.assign[j] === p.small;
      scores[i] = index + (inSmall ? 1 + p.gain[j] / top : 0);
      if (inSmall && index >= 2) flagged.push(i);
    });
  }
  return { scores, flagged };
}

/**
 * ABL-style isolation (Anti-Backdoor Learning, Li et al. 2021): poisons are learned first, so early in
 * training their loss is the lowest. Score: minus the model's training loss on each example (the detect
 * models are early: a few epochs). Flags the lowest-loss 1%, ABL's isolation rate.
 */
export function lossIsolation(losses: ArrayLike<number>, isolation = 0.01): BaselineResult {
  const scores = Float64Array.from(losses, (l) => -l);
  const all = Array.from({ length: losses.length }, (_, i) => i);
  return { scores, flagged: flagTop(all, scores, Math.round(isolation * losses.length)) };
}

/** Every baseline's result, by name. */
export type BaselineResults = Record<string, BaselineResult>;

/** Every baseline on `model` (penultimate activations, training losses). */
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
  const { losses } = await evaluate(rt, model, deviceTrain);
  return {
    "spectral signatures": spectralSignatures(rows, train.labels, expectedRate, seed),
    "activation clustering": activationClustering(rows, train.labels, seed),
    spectre: spectre(rows, train.labels, expectedRate, seed),
    scan: scan(rows, train.labels, seed),
    "loss isolation (ABL)": lossIsolation(losses),
  };
}
