// The datamodels fit in float64 on the host, step for step the device fit's (./regression.ts: same plan,
// path, step sizes and momentum), and exact ridge and lasso solvers: the tests' reference, the bench's
// peer, and the fit of a coordinator without WebGPU. O(n³) per iteration.
import { cgActive } from "../../kernels/regression.ts";
import { cholesky } from "../math.ts";
import { mulberry32 } from "../data/dataset.ts";
import {
  CG_FLOOR,
  cgConverged,
  CHECK_EVERY,
  checkedRows,
  converged,
  encodeTrainBatch,
  FitOptions,
  FitPlan,
  LIPSCHITZ_MARGIN,
  meanMaskVariance,
  momentum,
  newSums,
  planFit,
  POWER_ITERATIONS,
  POWER_READ_EVERY,
  RegressionData,
  TrainSums,
} from "./regression-plan.ts";

/** H and R (float64, n x n, targets as columns) and the centring statistics, by the same streamed pass. */
export async function gramRef(
  data: RegressionData,
  plan: FitPlan,
): Promise<{ H: Float64Array; R: Float64Array; xbar: Float64Array; ybar: Float64Array; sums: TrainSums }> {
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
  const Hv = (x: Float64Array) =>
    Float64Array.from({ length: n }, (_, i) => {
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
  const offDiagMax = (a: Float64Array) =>
    Float64Array.from({ length: n }, (_, j) => {
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
      if (
        k % CHECK_EVERY === 0 && k < plan.iterations && plan.tolerance > 0 &&
        converged(plan, offDiagMax(hy), offDiagMax(theta))
      ) break;
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
export function solveLassoRef(
  H: Float64Array,
  R: Float64Array,
  n: number,
  lambda: ArrayLike<number>,
  tol = 1e-12,
  maxSweeps = 10_000,
): Float64Array {
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
