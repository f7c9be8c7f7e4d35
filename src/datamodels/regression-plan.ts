// Everything about a datamodels fit that does not depend on where it runs: the data interface, the
// options and the plan (sizes, the regularisation path, stopping rules, momentum), and the streamed
// encoding of the training rows with its float64 statistics. The device fit (./regression.ts) and its
// float64 twin (./regression-ref.ts) both follow it, step for step.
import type { Tensor } from "../gpu/runtime.ts";

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

export function logspace(from: number, to: number, count: number): number[] {
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
  if (penalty !== "l1" && penalty !== "l2") {
    throw new Error(`fitDatamodels: penalty must be "l1" or "l2", got ${JSON.stringify(penalty)}`);
  }
  const heldOut = opts.heldOut ?? Math.max(1, Math.round(models * 0.1));
  if (!Number.isInteger(heldOut) || heldOut < 1 || models - heldOut < 2) {
    throw new Error(
      `fitDatamodels: heldOut must be an integer in [1, ${models - 2}] for ${models} models, got ${heldOut}`,
    );
  }
  const ratios = opts.lambdas ?? [...DEFAULT_RATIOS[penalty]];
  if (ratios.length === 0 || !ratios.every((x) => Number.isFinite(x) && x > 0)) {
    throw new Error(`fitDatamodels: lambdas must be positive numbers, got ${JSON.stringify(opts.lambdas)}`);
  }
  const iterations = opts.iterations ?? 100;
  if (!Number.isInteger(iterations) || iterations < 1) {
    throw new Error(`fitDatamodels: iterations must be a positive integer, got ${iterations}`);
  }
  const solver = opts.ridgeSolver ?? "cg";
  if (solver !== "cg" && solver !== "apg") {
    throw new Error(`fitDatamodels: ridgeSolver must be "cg" or "apg", got ${JSON.stringify(solver)}`);
  }
  const tolerance = opts.tolerance ?? 1e-4;
  if (!(tolerance >= 0)) throw new Error(`fitDatamodels: tolerance must be >= 0, got ${tolerance}`);
  const batch = opts.batchRows ?? 256;
  if (!Number.isInteger(batch) || batch < 1) {
    throw new Error(`fitDatamodels: batchRows must be a positive integer, got ${batch}`);
  }
  return {
    n,
    N: paddedSize(n),
    penalty,
    cg: penalty === "l2" && solver === "cg",
    ratios,
    train: models - heldOut,
    heldOut,
    iterations,
    tolerance,
    batchRows: Math.ceil(batch / 4) * 4,
    seed: opts.seed ?? 1,
  };
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

export async function checkedRows(data: RegressionData, start: number, count: number) {
  const b = await data.rows(start, count);
  if (b.X.length !== count * data.n || b.Y.length !== count * data.n) {
    throw new Error(
      `RegressionData.rows(${start}, ${count}): expected ${
        count * data.n
      } mask and margin values, got ${b.X.length} and ${b.Y.length}`,
    );
  }
  for (let i = 0; i < b.Y.length; i++) {
    if (!Number.isFinite(b.Y[i])) {
      throw new Error(
        `RegressionData.rows(${start}, ${count}): margin of model ${start + Math.floor(i / data.n)} on example ${
          i % data.n
        } is ${b.Y[i]}`,
      );
    }
  }
  return b;
}

/** Host-side statistics of the training pass, in float64. */
export interface TrainSums {
  /** Σ_r (2x − 1) per example. */
  sx: Float64Array;
  /** Σ_r (y − shift) per target. */
  sy: Float64Array;
  shift: Float64Array;
}

export function newSums(n: number): TrainSums {
  return { sx: new Float64Array(n), sy: new Float64Array(n), shift: new Float64Array(n) };
}

/**
 * Convert one batch to the padded device layouts (xs [bP, N] and its transpose, ys [bP, N], in ±1 and
 * shifted units), adding to the host sums. The first batch sets the shift.
 */
export function encodeTrainBatch(
  X: Uint8Array,
  Y: Float32Array,
  count: number,
  n: number,
  N: number,
  bP: number,
  sums: TrainSums,
  first: boolean,
) {
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

/** The ridge path's scale: the mean of H's diagonal (the masks' variance), exact from the host sums. */
export function meanMaskVariance(sums: TrainSums, m: number): number {
  let s = 0;
  for (let j = 0; j < sums.sx.length; j++) s += (m - (sums.sx[j] * sums.sx[j]) / m) / (4 * m);
  return s / sums.sx.length;
}

/** Iterations of the power method for H's largest eigenvalue, and the margin put on its estimate. */
export const POWER_ITERATIONS = 40;
export const POWER_READ_EVERY = 5;
export const LIPSCHITZ_MARGIN = 1.05;
