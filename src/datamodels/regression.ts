// Datamodels regression (DESIGN.md §2): for every target i, fit Y[:, i] ~ X theta_i + b_i over the
// trained models, with an L2 (ridge) or L1 (lasso) penalty chosen per target on held-out models.
// All n targets are fitted at once, as matrix products on the device:
//  1. one streamed pass over the training models accumulates G' = Xsᵀ Xs and C' = Xsᵀ Ys with
//     Xs = 2X − 1 (±1: exact in f32, and nearly centred already) and Ys = Y − a per-target shift, so the
//     centring below subtracts small numbers; the column sums are kept on the host in float64;
//  2. centring: H = (G' − sx sxᵀ/m) / 4m is the covariance of the 0/1 masks, R = (C' − sx syᵀ/m) / 2m
//     their cross-covariance with the margins (rank-1 updates on the device);
//  3. down the regularisation path, every target's problem ½θᵀHθ − rᵀθ + λ·penalty(θ) is solved with all
//     targets as the columns of one n x n Θ, one matmul H·P per iteration plus O(n²) step kernels:
//     ridge by conjugate gradients (each column its own CG run, in lockstep), lasso by accelerated
//     proximal gradient (FISTA; soft-threshold fused into the step). Warm starts carry Θ down the path,
//     and a path point stops once converged (FitOptions.tolerance);
//  4. after each λ the held-out models stream through: predictions Xh Θ + b, squared error per target,
//     and each target keeps the Θ column, bias and λ with the lowest held-out error so far;
//  5. the kept Θ (targets as columns) is transposed to row = target, cropped and its diagonal zeroed.
// Memory: O(n²) on the device (H, R, Θ, the search direction or extrapolated point, H·P, the CG residual,
// the best Θ: 7 n x n f32 matrices, 730 MiB at n = 5,000) plus O(batch · n) per
// streamed batch; the held-out batches are kept on the device only when they fit a budget.
// The objective per target is the sklearn/glmnet one: (1/2m) Σ_r (y_r − b − x_r·θ)² + λ·P(θ), with
// P = ½|θ|² (l2) or |θ|₁ (l1), x in 0/1 units, so θ is "margin change when example j is included".
import { axpy, scale } from "../../kernels/elementwise.ts";
import { fill } from "../../kernels/fill.ts";
import { gemv } from "../../kernels/gemv.ts";
import { matmul } from "../../kernels/matmul.ts";
import { blockCopy } from "../../kernels/project.ts";
import { cgActive, cgDirection, cgInit, cgStep, colAbsMax, colDot, colSse, finalizeWeights, proxStep, rank1Update, selectBest } from "../../kernels/regression.ts";
import { cholesky } from "../attribution/trak.ts";
import { decodeSafetensors, encodeSafetensors } from "../checkpoint/safetensors.ts";
import { mulberry32 } from "../data/dataset.ts";
import { joinPath, makeDir, readBytes, readText, writeBytesAtomic } from "../data/io.ts";
import type { Runtime, Tensor } from "../gpu/runtime.ts";

/** Models' masks and margins, streamed in row batches (so nothing holds models x n at once). */
export interface RegressionData {
  /** Training examples = number of targets = columns of X and Y. */
  n: number;
  /** Rows of X and Y. */
  models: number;
  /** Rows [start, start+count): X[r*n + j] = 1 if example j was in model r's subset; Y[r*n + i] = margin of
   *  model r on example i. Called repeatedly (once per pass over the data). */
  rows(start: number, count: number): Promise<{ X: Uint8Array; Y: Float32Array }>;
}

export interface FitOptions {
  /** Default "l2". */
  penalty?: "l2" | "l1";
  /**
   * Ridge solver: "cg" (default), conjugate gradients per target, or "apg", the accelerated proximal
   * gradient that lasso uses (with the ridge term smooth). Lasso always uses "apg".
   */
  ridgeSolver?: "cg" | "apg";
  /**
   * Regularisation path, largest first is best (warm starts), as multiples of a per-problem scale:
   * l1: of each target's λ_max = max_{j≠i} |R[j, i]| (from about there on, θ_i's off-diagonal entries are 0);
   * l2: of the mean variance of the masks (mean diagonal of H, α(1−α) for α-subsets). The absolute λ
   * chosen per target is reported in `DatamodelFit.lambda`. Default: 8 log-spaced values
   * (l1: 1 .. 1e-2; l2: 10 .. 1e-3).
   */
  lambdas?: number[];
  /** Models held out to choose λ per target: the last `heldOut` rows (default 10% of models, at least 1). */
  heldOut?: number;
  /** Most proximal-gradient iterations per path point (default 100). */
  iterations?: number;
  /**
   * Stop a path point early (checked every 5 iterations; default 1e-4; 0 = always run `iterations`):
   * CG once every target's residual |r − (H + λI)θ| is below `tolerance` times |r|; APG once an iteration
   * moves no off-diagonal weight by more than `tolerance` times the largest off-diagonal weight.
   */
  tolerance?: number;
  /** Models per streamed batch (default 256; rounded up to a multiple of 4). */
  batchRows?: number;
  /** Seeds the power iteration that bounds H's largest eigenvalue. */
  seed?: number;
  /** Keep held-out batches on the device up to this many bytes (default 256 MiB), else re-stream them per λ. */
  heldOutCacheBytes?: number;
  onProgress?: (done: number, total: number, detail?: string) => void;
}

export interface DatamodelFit {
  n: number;
  /** n x n on the device, row i = target i's weights theta_i over training examples j; diagonal zeroed. */
  weights: Tensor;
  /** Per target: the intercept of the full fit (the self weight θ_i[i], zeroed in `weights`, included). */
  bias: Float32Array;
  /** Chosen per target (absolute, in the objective's units). */
  lambda: Float32Array;
  /** Per target at the chosen lambda. */
  heldOutMse: Float32Array;
  /** Iterations run at each path point (fewer than asked where the tolerance was met). */
  pathIterations?: number[];
}

export const DEFAULT_RATIOS = {
  l1: logspace(0, -2, 8),
  l2: logspace(1, -3, 8),
} as const;

function logspace(from: number, to: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => 10 ** (from + ((to - from) * i) / Math.max(1, count - 1)));
}

/** Device matrices are padded to a multiple of 256 from n = 512 on, so the exact-fit matmul runs. */
export function paddedSize(n: number): number {
  return n >= 512 ? Math.ceil(n / 256) * 256 : n;
}

/** Everything about a fit that does not depend on where it runs (device or the float64 twin). */
export interface FitPlan {
  n: number;
  N: number;
  penalty: "l2" | "l1";
  /** Conjugate gradients (ridge) rather than accelerated proximal gradient. */
  cg: boolean;
  ratios: number[];
  train: number;
  heldOut: number;
  iterations: number;
  tolerance: number;
  batchRows: number;
  seed: number;
}

export function planFit(data: Pick<RegressionData, "n" | "models">, opts: FitOptions = {}): FitPlan {
  const { n, models } = data;
  if (!Number.isInteger(n) || n < 1) throw new Error(`fitDatamodels: n must be a positive integer, got ${n}`);
  if (!Number.isInteger(models) || models < 3) throw new Error(`fitDatamodels: need at least 3 models, got ${models}`);
  const penalty = opts.penalty ?? "l2";
  if (penalty !== "l1" && penalty !== "l2") throw new Error(`fitDatamodels: penalty must be "l1" or "l2", got ${JSON.stringify(penalty)}`);
  const heldOut = opts.heldOut ?? Math.max(1, Math.round(models * 0.1));
  if (!Number.isInteger(heldOut) || heldOut < 1 || models - heldOut < 2) {
    throw new Error(`fitDatamodels: heldOut must be an integer in [1, ${models - 2}] for ${models} models, got ${heldOut}`);
  }
  const ratios = opts.lambdas ?? [...DEFAULT_RATIOS[penalty]];
  if (ratios.length === 0 || !ratios.every((x) => Number.isFinite(x) && x > 0)) {
    throw new Error(`fitDatamodels: lambdas must be positive numbers, got ${JSON.stringify(opts.lambdas)}`);
  }
  const iterations = opts.iterations ?? 100;
  if (!Number.isInteger(iterations) || iterations < 1) throw new Error(`fitDatamodels: iterations must be a positive integer, got ${iterations}`);
  const solver = opts.ridgeSolver ?? "cg";
  if (solver !== "cg" && solver !== "apg") throw new Error(`fitDatamodels: ridgeSolver must be "cg" or "apg", got ${JSON.stringify(solver)}`);
  const tolerance = opts.tolerance ?? 1e-4;
  if (!(tolerance >= 0)) throw new Error(`fitDatamodels: tolerance must be >= 0, got ${tolerance}`);
  const batch = opts.batchRows ?? 256;
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`fitDatamodels: batchRows must be a positive integer, got ${batch}`);
  return { n, N: paddedSize(n), penalty, cg: penalty === "l2" && solver === "cg", ratios, train: models - heldOut, heldOut, iterations, tolerance, batchRows: Math.ceil(batch / 4) * 4, seed: opts.seed ?? 1 };
}

/** Iterations between convergence checks (each costs two column reductions and a small readback). */
export const CHECK_EVERY = 5;

/** The stopping rule, from per-column maxima of the last step and of the weights (off-diagonal). */
export function converged(plan: FitPlan, step: ArrayLike<number>, weights: ArrayLike<number>): boolean {
  let [d, w] = [0, 0];
  for (let j = 0; j < step.length; j++) {
    d = Math.max(d, step[j]);
    w = Math.max(w, weights[j]);
  }
  return d <= plan.tolerance * w;
}

/** A CG column stops once its residual is this small relative to |r| (f32 cannot do much better). */
export const CG_FLOOR = 1e-6;

/** The CG stopping rule: every target's |residual|² (rr) within tolerance² of its |r|² (r0). */
export function cgConverged(plan: FitPlan, rr: ArrayLike<number>, r0: ArrayLike<number>): boolean {
  const t2 = plan.tolerance * plan.tolerance;
  for (let j = 0; j < plan.n; j++) if (!(rr[j] <= t2 * r0[j])) return false;
  return true;
}

/** Momentum for iteration k (0-based) of a path point: constant for strongly convex ridge, FISTA's for lasso. */
export function momentum(plan: FitPlan, L: number, ridge: number): (k: number) => number {
  if (plan.penalty === "l2") {
    const q = Math.sqrt(ridge / (L + ridge));
    return () => (1 - q) / (1 + q);
  }
  const ts = [1];
  for (let k = 0; k <= plan.iterations; k++) ts.push((1 + Math.sqrt(1 + 4 * ts[k] * ts[k])) / 2);
  return (k) => (ts[k] - 1) / ts[k + 1];
}

async function checkedRows(data: RegressionData, start: number, count: number) {
  const b = await data.rows(start, count);
  if (b.X.length !== count * data.n || b.Y.length !== count * data.n) {
    throw new Error(`RegressionData.rows(${start}, ${count}): expected ${count * data.n} mask and margin values, got ${b.X.length} and ${b.Y.length}`);
  }
  for (let i = 0; i < b.Y.length; i++) {
    if (!Number.isFinite(b.Y[i])) throw new Error(`RegressionData.rows(${start}, ${count}): margin of model ${start + Math.floor(i / data.n)} on example ${i % data.n} is ${b.Y[i]}`);
  }
  return b;
}

/** Host-side statistics of the training pass, in float64. */
interface TrainSums {
  /** Σ_r (2x − 1) per example. */
  sx: Float64Array;
  /** Σ_r (y − shift) per target. */
  sy: Float64Array;
  shift: Float64Array;
}

function newSums(n: number): TrainSums {
  return { sx: new Float64Array(n), sy: new Float64Array(n), shift: new Float64Array(n) };
}

/**
 * Convert one batch to the padded device layouts (xs [bP, N] and its transpose, ys [bP, N], in ±1 and
 * shifted units), adding to the host sums. The first batch sets the shift.
 */
function encodeTrainBatch(X: Uint8Array, Y: Float32Array, count: number, n: number, N: number, bP: number, sums: TrainSums, first: boolean) {
  if (first) {
    for (let r = 0; r < count; r++) for (let j = 0; j < n; j++) sums.shift[j] += Y[r * n + j];
    for (let j = 0; j < n; j++) sums.shift[j] = Math.fround(sums.shift[j] / count);
  }
  const xs = new Float32Array(bP * N);
  const xsT = new Float32Array(N * bP);
  const ys = new Float32Array(bP * N);
  for (let r = 0; r < count; r++) {
    for (let j = 0; j < n; j++) {
      const x = X[r * n + j] ? 1 : -1;
      const y = Math.fround(Y[r * n + j] - sums.shift[j]);
      xs[r * N + j] = x;
      xsT[j * bP + r] = x;
      ys[r * N + j] = y;
      sums.sx[j] += x;
      sums.sy[j] += y;
    }
  }
  return { xs, xsT, ys };
}

function heldOutBatch(X: Uint8Array, Y: Float32Array, count: number, n: number, N: number) {
  const xh = new Float32Array(count * N);
  const yh = new Float32Array(count * N);
  for (let r = 0; r < count; r++) {
    for (let j = 0; j < n; j++) {
      xh[r * N + j] = X[r * n + j] ? 1 : 0;
      yh[r * N + j] = Y[r * n + j];
    }
  }
  return { xh, yh };
}

const padVec = (v: ArrayLike<number>, N: number) => {
  const out = new Float32Array(N);
  for (let i = 0; i < v.length; i++) out[i] = v[i];
  return out;
};

/** The ridge path's scale: the mean of H's diagonal (the masks' variance), exact from the host sums. */
function meanMaskVariance(sums: TrainSums, m: number): number {
  let s = 0;
  for (let j = 0; j < sums.sx.length; j++) s += (m - (sums.sx[j] * sums.sx[j]) / m) / (4 * m);
  return s / sums.sx.length;
}

/** Iterations of the power method for H's largest eigenvalue, and the margin put on its estimate. */
const POWER_ITERATIONS = 40;
const POWER_READ_EVERY = 5;
const LIPSCHITZ_MARGIN = 1.05;

export async function fitDatamodels(rt: Runtime, data: RegressionData, opts: FitOptions = {}): Promise<DatamodelFit> {
  const plan = planFit(data, opts);
  const { n, N, train: m, heldOut, batchRows } = plan;
  const maxBinding = rt.device.limits.maxStorageBufferBindingSize;
  if (N * N * 4 > maxBinding) {
    throw new Error(`fitDatamodels: n = ${n} needs ${N} x ${N} f32 matrices (${(N * N * 4 / 2 ** 20).toFixed(0)} MiB) in one binding; ` +
      `this adapter allows ${(maxBinding / 2 ** 20).toFixed(0)} MiB (n up to about ${Math.floor(Math.sqrt(maxBinding / 4) / 256) * 256})`);
  }
  const trainBatches = Math.ceil(m / batchRows);
  const heldBatches = Math.ceil(heldOut / batchRows);
  const total = trainBatches + plan.ratios.length * (plan.iterations + 1);
  let done = 0;
  const progress = (detail: string) => opts.onProgress?.(done, total, detail);

  // 1. Streamed Gram and cross product.
  const sums = newSums(n);
  let G: Tensor | undefined;
  let C: Tensor | undefined;
  for (let b = 0; b < trainBatches; b++) {
    const start = b * batchRows;
    const count = Math.min(batchRows, m - start);
    const { X, Y } = await checkedRows(data, start, count);
    const bP = Math.ceil(count / 4) * 4;
    const enc = encodeTrainBatch(X, Y, count, n, N, bP, sums, b === 0);
    const xs = rt.upload(enc.xs, [bP, N]);
    const xsT = rt.upload(enc.xsT, [N, bP]);
    const ys = rt.upload(enc.ys, [bP, N]);
    if (!G || !C) {
      G = matmul(rt, xsT, xs);
      C = matmul(rt, xsT, ys);
    } else {
      const t = matmul(rt, xsT, xs);
      axpy(rt, 1, t, G, G);
      matmul(rt, xsT, ys, { out: t });
      axpy(rt, 1, t, C, C);
      t.release();
    }
    xs.release();
    xsT.release();
    ys.release();
    await rt.sync(); // bounds the queued uploads to one batch
    done++;
    progress(`Gram: ${start + count}/${m} models`);
  }
  const H = G!;
  const R = C!;

  // 2. Centring.
  const sxT = rt.upload(padVec(sums.sx, N), [N]);
  const syT = rt.upload(padVec(sums.sy, N), [N]);
  rank1Update(rt, H, sxT, sxT, 1 / (4 * m), -1 / m);
  rank1Update(rt, R, sxT, syT, 1 / (2 * m), -1 / m);
  sxT.release();
  syT.release();
  const xbar = Array.from(sums.sx, (s) => (s / m + 1) / 2);
  const ybar = Array.from(sums.sy, (s, j) => sums.shift[j] + s / m);
  const negXbar = rt.upload(padVec(xbar.map((x) => -x), N), [N]);

  // Step size from H's largest eigenvalue (power method; a few readbacks).
  const L = (await largestEigenvalue(rt, H, n, plan.seed)) * LIPSCHITZ_MARGIN;

  // Per-target penalty scale.
  let lamScale: Float32Array;
  if (plan.penalty === "l1") {
    const t = colAbsMax(rt, R, n, { offDiagonal: true });
    lamScale = (await rt.read(t)) as Float32Array;
    t.release();
  } else {
    lamScale = new Float32Array(n).fill(meanMaskVariance(sums, m));
  }

  // Held-out batches: on the device if they fit the budget, else re-streamed per λ.
  const cacheBudget = opts.heldOutCacheBytes ?? 256 * 2 ** 20;
  const cached: { xh: Tensor; yh: Tensor; count: number }[] | undefined = heldOut * N * 8 <= cacheBudget ? [] : undefined;
  const loadHeld = async (b: number) => {
    const start = m + b * batchRows;
    const count = Math.min(batchRows, heldOut - b * batchRows);
    const { X, Y } = await checkedRows(data, start, count);
    const h = heldOutBatch(X, Y, count, n, N);
    return { xh: rt.upload(h.xh, [count, N]), yh: rt.upload(h.yh, [count, N]), count };
  };
  if (cached) for (let b = 0; b < heldBatches; b++) cached.push(await loadHeld(b));

  // 3-4. The path.
  const theta = fill(rt, rt.empty([N, N]), 0);
  const yExt = rt.empty([N, N]); // APG: the extrapolated point; CG: the search direction
  const hy = rt.empty([N, N]);
  // CG: per-target state. Padded columns stay zero (their r is zero: no step), but the step kernels index
  // per-column vectors by every column, so those have N entries.
  const cg = plan.cg
    ? { theta, pdir: yExt, res: rt.empty([N, N]), rr: rt.empty([N]), rrNew: rt.empty([N]), pap: rt.empty([N]), r0: colDot(rt, R, R, 0, N), floor2: CG_FLOOR ** 2 }
    : undefined;
  const r0 = cg ? ((await rt.read(cg.r0)) as Float32Array) : undefined;
  const sel = {
    best: fill(rt, rt.empty([n]), Infinity),
    bestTheta: fill(rt, rt.empty([N, N]), 0),
    bestBias: fill(rt, rt.empty([n]), 0),
    choice: fill(rt, rt.empty([n]), 0),
  };
  const sse = rt.empty([n]);
  const pathIterations: number[] = [];
  for (let t = 0; t < plan.ratios.length; t++) {
    const ratio = plan.ratios[t];
    const ridge = plan.penalty === "l2" ? ratio * lamScale[0] : 0;
    const lam1 = rt.upload(plan.penalty === "l1" ? padVec(lamScale.map((s) => s * ratio), N) : new Float32Array(N), [N]);
    const Lt = L + ridge;
    const beta = momentum(plan, Lt, ridge);
    let k = 0;
    if (cg) {
      // Warm start: the residual of the previous λ's solution under this λ.
      matmul(rt, H, theta, { out: hy });
      cgInit(rt, cg, R, hy, ridge);
      colDot(rt, cg.res, cg.res, 0, N, cg.rr);
    } else scale(rt, theta, 1, yExt); // warm start, momentum reset
    while (cg && k < plan.iterations) {
      matmul(rt, H, cg.pdir, { out: hy });
      colDot(rt, cg.pdir, hy, ridge, N, cg.pap);
      cgStep(rt, cg, hy, cg.rr, cg.pap, ridge);
      colDot(rt, cg.res, cg.res, 0, N, cg.rrNew);
      cgDirection(rt, cg, cg.rr, cg.rrNew);
      [cg.rr, cg.rrNew] = [cg.rrNew, cg.rr];
      k++;
      if (k % CHECK_EVERY === 0 && k < plan.iterations) {
        const stop = plan.tolerance > 0 && cgConverged(plan, await rt.read(cg.rr), r0!);
        if (plan.tolerance === 0) await rt.sync();
        done = trainBatches + t * (plan.iterations + 1) + k;
        progress(`λ ${t + 1}/${plan.ratios.length}: CG iteration ${k}/${plan.iterations}`);
        if (stop) break;
      }
    }
    while (!cg && k < plan.iterations) {
      matmul(rt, H, yExt, { out: hy });
      proxStep(rt, { hy, r: R, lam1, theta, y: yExt }, { step: 1 / Lt, ridge, beta: beta(k) });
      k++;
      if (k % CHECK_EVERY === 0 && k < plan.iterations) {
        let stop = false;
        if (plan.tolerance > 0) {
          const s = colAbsMax(rt, hy, n, { offDiagonal: true });
          const w = colAbsMax(rt, theta, n, { offDiagonal: true });
          const [sh, wh] = await rt.readMany([s, w]);
          s.release();
          w.release();
          stop = converged(plan, sh, wh);
        } else await rt.sync();
        done = trainBatches + t * (plan.iterations + 1) + k;
        progress(`λ ${t + 1}/${plan.ratios.length}: iteration ${k}/${plan.iterations}`);
        if (stop) break;
      }
    }
    pathIterations.push(k);
    done = trainBatches + t * (plan.iterations + 1) + plan.iterations;
    // Held-out error per target: bias = ȳ − Θᵀx̄, predictions Xh Θ + bias.
    const bias = rt.upload(padVec(ybar, N), [N]);
    gemv(rt, theta, negXbar, { trans: true, out: bias, beta: 1 });
    fill(rt, sse, 0);
    for (let b = 0; b < heldBatches; b++) {
      const h = cached ? cached[b] : await loadHeld(b);
      const pred = matmul(rt, h.xh, theta);
      colSse(rt, pred, h.yh, bias, sse, { rows: h.count, n });
      pred.release();
      if (!cached) {
        h.xh.release();
        h.yh.release();
      }
    }
    selectBest(rt, theta, sse, bias, sel, t, n);
    bias.release();
    lam1.release();
    await rt.sync();
    done++;
    progress(`λ ${t + 1}/${plan.ratios.length} done`);
  }

  // 5. Row = target, diagonal zeroed.
  const weights = finalizeWeights(rt, sel.bestTheta, n);
  const [best, bestBias, choice] = await rt.readMany([sel.best, sel.bestBias, sel.choice]);
  for (const t of [H, R, theta, yExt, hy, sse, negXbar, sel.best, sel.bestTheta, sel.bestBias, sel.choice]) t.release();
  if (cg) for (const t of [cg.res, cg.rr, cg.rrNew, cg.pap, cg.r0]) t.release();
  for (const h of cached ?? []) {
    h.xh.release();
    h.yh.release();
  }
  const lambda = new Float32Array(n);
  const heldOutMse = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    const c = choice[j];
    lambda[j] = plan.ratios[c] * (plan.penalty === "l1" ? lamScale[j] : lamScale[0]);
    heldOutMse[j] = best[j] / heldOut;
  }
  return { n, weights, bias: bestBias as Float32Array, lambda, heldOutMse, pathIterations };
}

/** Largest eigenvalue of the symmetric PSD [N, N] H (first n coordinates), by the power method. */
async function largestEigenvalue(rt: Runtime, H: Tensor, n: number, seed: number): Promise<number> {
  const N = H.shape[0];
  const rand = mulberry32(seed);
  let host: Float32Array = new Float32Array(N);
  for (let i = 0; i < n; i++) host[i] = rand() - 0.5;
  let est = 0;
  for (let round = 0; round < POWER_ITERATIONS / POWER_READ_EVERY; round++) {
    let norm = 0;
    for (let i = 0; i < n; i++) norm += host[i] * host[i];
    norm = Math.sqrt(norm);
    if (!(norm > 0)) return est; // H = 0 (no variation in the masks)
    for (let i = 0; i < n; i++) host[i] /= norm;
    let v = rt.upload(host, [N]);
    for (let k = 0; k < POWER_READ_EVERY; k++) {
      const w = gemv(rt, H, v);
      if (k === 0) {
        // |H v| for the unit v: the estimate (a lower bound that converges to the top eigenvalue).
        const [wv] = await rt.readMany([w]);
        let s = 0;
        for (let i = 0; i < n; i++) s += wv[i] * wv[i];
        est = Math.max(est, Math.sqrt(s));
      }
      v.release();
      v = w;
    }
    host = (await rt.read(v)) as Float32Array;
    v.release();
  }
  return est;
}

// ---------------------------------------------------------------- float64 twin (tests, benchmark peer)

/** H and R (float64, n x n, targets as columns) and the centring statistics, by the same streamed pass. */
export async function gramRef(data: RegressionData, plan: FitPlan): Promise<{ H: Float64Array; R: Float64Array; xbar: Float64Array; ybar: Float64Array; sums: TrainSums }> {
  const { n, train: m, batchRows } = plan;
  const sums = newSums(n);
  const G = new Float64Array(n * n);
  const C = new Float64Array(n * n);
  for (let start = 0; start < m; start += batchRows) {
    const count = Math.min(batchRows, m - start);
    const { X, Y } = await checkedRows(data, start, count);
    const enc = encodeTrainBatch(X, Y, count, n, n, count, sums, start === 0);
    for (let r = 0; r < count; r++) {
      const xr = enc.xs.subarray(r * n, (r + 1) * n);
      const yr = enc.ys.subarray(r * n, (r + 1) * n);
      for (let i = 0; i < n; i++) {
        const xi = xr[i];
        const gi = i * n;
        for (let j = 0; j < n; j++) {
          G[gi + j] += xi * xr[j];
          C[gi + j] += xi * yr[j];
        }
      }
    }
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      G[i * n + j] = (G[i * n + j] - (sums.sx[i] * sums.sx[j]) / m) / (4 * m);
      C[i * n + j] = (C[i * n + j] - (sums.sx[i] * sums.sy[j]) / m) / (2 * m);
    }
  }
  const xbar = Float64Array.from(sums.sx, (s) => (s / m + 1) / 2);
  const ybar = Float64Array.from(sums.sy, (s, j) => sums.shift[j] + s / m);
  return { H: G, R: C, xbar, ybar, sums };
}

/** Dense float64 product [n, n] x [n, n]. */
function matmulSquare(A: Float64Array, B: Float64Array, n: number, out: Float64Array): Float64Array {
  out.fill(0);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const a = A[i * n + k];
      if (a === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j] += a * B[k * n + j];
    }
  }
  return out;
}

export interface DatamodelFitRef {
  n: number;
  /** Row i = target i, diagonal zeroed. */
  weights: Float64Array;
  bias: Float64Array;
  lambda: Float64Array;
  heldOutMse: Float64Array;
  pathIterations: number[];
}

/** The fit, step for step, in float64 on the host (same plan, path, step sizes and momentum). O(n³) per iteration. */
export async function fitDatamodelsRef(data: RegressionData, opts: FitOptions = {}): Promise<DatamodelFitRef> {
  const plan = planFit(data, opts);
  const { n, train: m, heldOut, batchRows } = plan;
  const { H, R, xbar, ybar, sums } = await gramRef(data, plan);
  // Power method, as on the device.
  const rand = mulberry32(plan.seed);
  let v = Float64Array.from({ length: n }, () => rand() - 0.5);
  let est = 0;
  const Hv = (x: Float64Array) => Float64Array.from({ length: n }, (_, i) => {
    let s = 0;
    for (let j = 0; j < n; j++) s += H[i * n + j] * x[j];
    return s;
  });
  for (let round = 0; round < POWER_ITERATIONS / POWER_READ_EVERY; round++) {
    const norm = Math.hypot(...v);
    if (!(norm > 0)) break;
    v = v.map((x) => x / norm);
    for (let k = 0; k < POWER_READ_EVERY; k++) {
      const w = Hv(v);
      if (k === 0) est = Math.max(est, Math.hypot(...w));
      v = w;
    }
  }
  const L = est * LIPSCHITZ_MARGIN;
  const offDiagMax = (a: Float64Array) => Float64Array.from({ length: n }, (_, j) => {
    let mx = 0;
    for (let k = 0; k < n; k++) if (k !== j) mx = Math.max(mx, Math.abs(a[k * n + j]));
    return mx;
  });
  const lamScale = plan.penalty === "l1" ? offDiagMax(R) : new Float64Array(n).fill(meanMaskVariance(sums, m));
  const theta = new Float64Array(n * n);
  const y = new Float64Array(n * n);
  const hy = new Float64Array(n * n);
  const res = new Float64Array(n * n);
  const r0 = new Float64Array(n);
  for (let e = 0; e < n * n; e++) r0[e % n] += R[e] * R[e];
  const best = new Float64Array(n).fill(Infinity);
  const bestTheta = new Float64Array(n * n);
  const bestBias = new Float64Array(n);
  const choice = new Int32Array(n);
  const pathIterations: number[] = [];
  for (let t = 0; t < plan.ratios.length; t++) {
    const ratio = plan.ratios[t];
    const ridge = plan.penalty === "l2" ? ratio * lamScale[0] : 0;
    const Lt = L + ridge;
    const step = 1 / Lt;
    const beta = momentum(plan, Lt, ridge);
    let k = 0;
    if (plan.cg) {
      // Same CG as on the device: y is the search direction, res the residual.
      const colDot = (a: Float64Array, b: Float64Array, rdg: number) => {
        const o = new Float64Array(n);
        for (let e = 0; e < n * n; e++) o[e % n] += a[e] * (b[e] + rdg * a[e]);
        return o;
      };
      matmulSquare(H, theta, n, hy);
      for (let e = 0; e < n * n; e++) res[e] = y[e] = R[e] - hy[e] - ridge * theta[e];
      let rr = colDot(res, res, 0);
      while (k < plan.iterations) {
        matmulSquare(H, y, n, hy);
        const pap = colDot(y, hy, ridge);
        const active = Array.from({ length: n }, (_, j) => cgActive(rr, r0, CG_FLOOR ** 2, j));
        for (let e = 0; e < n * n; e++) {
          const j = e % n;
          const alpha = active[j] && pap[j] > 0 ? rr[j] / pap[j] : 0;
          theta[e] += alpha * y[e];
          res[e] -= alpha * (hy[e] + ridge * y[e]);
        }
        const rrNew = colDot(res, res, 0);
        for (let e = 0; e < n * n; e++) if (active[e % n]) y[e] = res[e] + (rrNew[e % n] / rr[e % n]) * y[e];
        rr = rrNew;
        k++;
        if (k % CHECK_EVERY === 0 && k < plan.iterations && plan.tolerance > 0 && cgConverged(plan, rr, r0)) break;
      }
    } else y.set(theta);
    while (!plan.cg && k < plan.iterations) {
      matmulSquare(H, y, n, hy);
      const b = beta(k);
      for (let e = 0; e < n * n; e++) {
        const z = y[e] - step * (hy[e] - R[e] + ridge * y[e]);
        const th = plan.penalty === "l1" ? step * ratio * lamScale[e % n] : 0;
        const tn = Math.sign(z) * Math.max(Math.abs(z) - th, 0);
        y[e] = tn + b * (tn - theta[e]);
        hy[e] = Math.abs(tn - theta[e]);
        theta[e] = tn;
      }
      k++;
      if (k % CHECK_EVERY === 0 && k < plan.iterations && plan.tolerance > 0 && converged(plan, offDiagMax(hy), offDiagMax(theta))) break;
    }
    pathIterations.push(k);
    const bias = Float64Array.from(ybar, (yb, j) => {
      let s = yb;
      for (let k = 0; k < n; k++) s -= xbar[k] * theta[k * n + j];
      return s;
    });
    const sse = new Float64Array(n);
    for (let start = m; start < m + heldOut; start += batchRows) {
      const count = Math.min(batchRows, m + heldOut - start);
      const { X, Y } = await checkedRows(data, start, count);
      for (let r = 0; r < count; r++) {
        for (let j = 0; j < n; j++) {
          let p = bias[j];
          for (let k = 0; k < n; k++) if (X[r * n + k]) p += theta[k * n + j];
          sse[j] += (Y[r * n + j] - p) ** 2;
        }
      }
    }
    for (let j = 0; j < n; j++) {
      if (!(sse[j] < best[j])) continue;
      best[j] = sse[j];
      bestBias[j] = bias[j];
      choice[j] = t;
      for (let k = 0; k < n; k++) bestTheta[k * n + j] = theta[k * n + j];
    }
  }
  const weights = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) weights[i * n + j] = i === j ? 0 : bestTheta[j * n + i];
  return {
    n,
    weights,
    bias: bestBias,
    lambda: Float64Array.from(choice, (c, j) => plan.ratios[c] * (plan.penalty === "l1" ? lamScale[j] : lamScale[0])),
    heldOutMse: best.map((s) => s / heldOut),
    pathIterations,
  };
}

/** Exact ridge solutions (H + λI) θ_j = r_j for every target column j, by one Cholesky factorisation (float64). */
export function solveRidgeRef(H: Float64Array, R: Float64Array, n: number, lambda: number): Float64Array {
  const A = Float64Array.from(H);
  for (let i = 0; i < n; i++) A[i * n + i] += lambda;
  const Lc = cholesky(A, n);
  const theta = new Float64Array(n * n);
  const z = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < n; i++) {
      let s = R[i * n + j];
      for (let t = 0; t < i; t++) s -= Lc[i * n + t] * z[t];
      z[i] = s / Lc[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = z[i];
      for (let t = i + 1; t < n; t++) s -= Lc[t * n + i] * theta[t * n + j];
      theta[i * n + j] = s / Lc[i * n + i];
    }
  }
  return theta;
}

/** Lasso solutions of ½θᵀHθ − r_jᵀθ + λ_j|θ|₁ per target column j, by coordinate descent to `tol` (float64). */
export function solveLassoRef(H: Float64Array, R: Float64Array, n: number, lambda: ArrayLike<number>, tol = 1e-12, maxSweeps = 10_000): Float64Array {
  const theta = new Float64Array(n * n);
  const th = new Float64Array(n);
  const g = new Float64Array(n); // H θ
  for (let j = 0; j < n; j++) {
    th.fill(0);
    g.fill(0);
    for (let sweep = 0; sweep < maxSweeps; sweep++) {
      let change = 0;
      for (let k = 0; k < n; k++) {
        const hkk = H[k * n + k];
        if (!(hkk > 0)) continue;
        const rho = R[k * n + j] - (g[k] - hkk * th[k]);
        const nk = Math.sign(rho) * Math.max(Math.abs(rho) - lambda[j], 0) / hkk;
        const d = nk - th[k];
        if (d !== 0) {
          for (let i = 0; i < n; i++) g[i] += H[i * n + k] * d;
          th[k] = nk;
          change = Math.max(change, Math.abs(d));
        }
      }
      if (change < tol) break;
    }
    for (let k = 0; k < n; k++) theta[k * n + j] = th[k];
  }
  return theta;
}

// ---------------------------------------------------------------- tiled storage

const TILE_FORMAT = "datamodel-tiles/1";
export interface TileIndex {
  format: typeof TILE_FORMAT;
  n: number;
  /** Rows per file (the last may hold fewer). */
  rowsPerFile: number;
  files: { r0: number; r1: number; file: string }[];
  /** bias, lambda and heldOutMse per target. */
  meta: string;
}

/**
 * Write the fit's n x n matrix as row blocks of `tile` rows, one safetensors file each (tensor "weights",
 * [rows, n]), plus bias/lambda/heldOutMse in meta.safetensors and an index.json. Row blocks are copied
 * off the device one at a time, so host memory stays O(tile · n).
 */
export async function saveDatamodelTiles(rt: Runtime, fit: DatamodelFit, dir: string, tile = 1024): Promise<void> {
  const { n } = fit;
  if (!Number.isInteger(tile) || tile < 1) throw new Error(`saveDatamodelTiles: tile must be a positive integer, got ${tile}`);
  if (fit.weights.size !== n * n) throw new Error(`saveDatamodelTiles: weights have ${fit.weights.size} elements, expected ${n}²`);
  await makeDir(dir);
  const files: TileIndex["files"] = [];
  for (let r0 = 0; r0 < n; r0 += tile) {
    const r1 = Math.min(n, r0 + tile);
    const block = rt.empty([r1 - r0, n]);
    blockCopy(rt, fit.weights, block, { rows: r1 - r0, cols: n, sr0: r0, sld: n, dld: n });
    const data = (await rt.read(block)) as Float32Array;
    block.release();
    const file = `rows-${String(r0).padStart(7, "0")}.safetensors`;
    await writeBytesAtomic(joinPath(dir, file), encodeSafetensors({ weights: { dtype: "F32", shape: [r1 - r0, n], data } }, { r0: String(r0), r1: String(r1) }));
    files.push({ r0, r1, file });
  }
  const meta = "meta.safetensors";
  await writeBytesAtomic(joinPath(dir, meta), encodeSafetensors({
    bias: { dtype: "F32", shape: [n], data: fit.bias },
    lambda: { dtype: "F32", shape: [n], data: fit.lambda },
    heldOutMse: { dtype: "F32", shape: [n], data: fit.heldOutMse },
  }));
  const index: TileIndex = { format: TILE_FORMAT, n, rowsPerFile: tile, files, meta };
  await writeBytesAtomic(joinPath(dir, "index.json"), new TextEncoder().encode(JSON.stringify(index, null, 1)));
}

export interface DatamodelTiles {
  n: number;
  /** Rows [r0, r1) x columns [c0, c1), row-major. */
  readBlock(r0: number, r1: number, c0: number, c1: number): Promise<Float32Array>;
  /** bias, lambda and heldOutMse per target. */
  readMeta(): Promise<{ bias: Float32Array; lambda: Float32Array; heldOutMse: Float32Array }>;
}

export async function loadDatamodelTiles(dir: string): Promise<DatamodelTiles> {
  const indexPath = joinPath(dir, "index.json");
  let index: TileIndex;
  try {
    index = JSON.parse(await readText(indexPath)) as TileIndex;
  } catch (e) {
    throw new Error(`${indexPath}: not a datamodel tile index (${(e as Error).message})`);
  }
  if (index.format !== TILE_FORMAT || !Number.isInteger(index.n) || !Array.isArray(index.files)) {
    throw new Error(`${indexPath}: not a ${TILE_FORMAT} index`);
  }
  const { n } = index;
  let covered = 0;
  for (const f of index.files) {
    if (f.r0 !== covered || !(f.r1 > f.r0) || typeof f.file !== "string" || f.file.includes("/")) throw new Error(`${indexPath}: row blocks do not tile [0, ${n})`);
    covered = f.r1;
  }
  if (covered !== n) throw new Error(`${indexPath}: row blocks cover ${covered} of ${n} rows`);
  let last: { file: string; data: Float32Array } | undefined; // readers usually sweep rows in order
  const rowBlock = async (f: TileIndex["files"][number]) => {
    if (last?.file !== f.file) {
      const path = joinPath(dir, f.file);
      const t = decodeSafetensors(await readBytes(path), path).tensors.weights;
      if (!t || t.dtype !== "F32" || t.shape[0] !== f.r1 - f.r0 || t.shape[1] !== n) throw new Error(`${path}: expected F32 weights [${f.r1 - f.r0}, ${n}]`);
      last = { file: f.file, data: t.data as Float32Array };
    }
    return last.data;
  };
  return {
    n,
    async readBlock(r0, r1, c0, c1) {
      if (!(0 <= r0 && r0 <= r1 && r1 <= n && 0 <= c0 && c0 <= c1 && c1 <= n) || ![r0, r1, c0, c1].every(Number.isInteger)) {
        throw new Error(`readBlock: [${r0}, ${r1}) x [${c0}, ${c1}) is not inside ${n} x ${n}`);
      }
      const w = c1 - c0;
      const out = new Float32Array((r1 - r0) * w);
      for (const f of index.files) {
        if (f.r1 <= r0 || f.r0 >= r1) continue;
        const data = await rowBlock(f);
        for (let r = Math.max(r0, f.r0); r < Math.min(r1, f.r1); r++) {
          out.set(data.subarray((r - f.r0) * n + c0, (r - f.r0) * n + c1), (r - r0) * w);
        }
      }
      return out;
    },
    async readMeta() {
      const path = joinPath(dir, index.meta);
      const t = decodeSafetensors(await readBytes(path), path).tensors;
      const get = (k: string) => {
        if (!t[k] || t[k].dtype !== "F32" || t[k].data.length !== n) throw new Error(`${path}: expected F32 ${k} [${n}]`);
        return t[k].data as Float32Array;
      };
      return { bias: get("bias"), lambda: get("lambda"), heldOutMse: get("heldOutMse") };
    },
  };
}

// ---------------------------------------------------------------- synthetic data (tests, benchmarks)

export interface SyntheticRegression extends RegressionData {
  /** Ground truth: target i's nonzero weights (diagonal included) and bias. */
  truth: { cols: Int32Array[]; vals: Float64Array[]; bias: Float64Array };
  /** Dense truth, row i = target i, diagonal zeroed like a fit's weights (only for small n). */
  denseTruth(): Float64Array;
}

/**
 * Random alpha-subset masks and margins Y = X θ*ᵀ + b + noise, with `support` random nonzero
 * off-diagonal weights per target (uniform ±[0.5, 1.5] · effect) and a self weight `selfEffect`
 * (an example's own inclusion moves its margin most, as in real datamodels). Every row is a pure
 * function of (seed, row), so rows() regenerates any batch without storing models x n.
 */
export function syntheticRegression(o: { n: number; models: number; support?: number; alpha?: number; effect?: number; selfEffect?: number; noise?: number; seed: number }): SyntheticRegression {
  const { n, models, seed } = o;
  const support = Math.min(o.support ?? 5, n - 1);
  const alpha = o.alpha ?? 0.5;
  const effect = o.effect ?? 1;
  const noise = o.noise ?? 0.1;
  const rand = mulberry32(seed);
  const cols: Int32Array[] = [];
  const vals: Float64Array[] = [];
  const bias = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const picked = new Set<number>();
    while (picked.size < support) {
      const j = Math.floor(rand() * n);
      if (j !== i) picked.add(j);
    }
    const c = [i, ...picked];
    cols.push(Int32Array.from(c));
    vals.push(Float64Array.from(c, (j) => (j === i ? o.selfEffect ?? 2 * effect : (rand() < 0.5 ? -1 : 1) * effect * (0.5 + rand()))));
    bias[i] = rand() - 0.5;
  }
  return {
    n,
    models,
    truth: { cols, vals, bias },
    async rows(start, count) {
      if (start < 0 || count < 0 || start + count > models) throw new Error(`rows(${start}, ${count}) outside [0, ${models})`);
      const X = new Uint8Array(count * n);
      const Y = new Float32Array(count * n);
      for (let r = 0; r < count; r++) {
        const rr = mulberry32((seed ^ 0x9e3779b9) + Math.imul(start + r, 0x85ebca6b));
        for (let j = 0; j < n; j++) X[r * n + j] = rr() < alpha ? 1 : 0;
        for (let i = 0; i < n; i++) {
          let y = bias[i];
          const c = cols[i];
          const v = vals[i];
          for (let t = 0; t < c.length; t++) y += X[r * n + c[t]] * v[t];
          // Irwin–Hall(4) noise, unit variance.
          Y[r * n + i] = y + noise * (rr() + rr() + rr() + rr() - 2) * Math.sqrt(3);
        }
      }
      return { X, Y };
    },
    denseTruth() {
      const out = new Float64Array(n * n);
      for (let i = 0; i < n; i++) cols[i].forEach((j, t) => (out[i * n + j] = j === i ? 0 : vals[i][t]));
      return out;
    },
  };
}
