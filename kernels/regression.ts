// Kernels of the datamodels regression (src/datamodels/regression.ts): all targets are columns of one
// row-major matrix, so the solver is matrix products (matmul) plus these per-element / per-column steps.
// Binding contract (wgsl/regression.wgsl), by entry point:
//   rank1_update  mat (rw), u, v                              mat = s (mat + c u vᵀ)
//   prox_step     r, lam1 (read), hy, theta, y (rw)           accelerated proximal-gradient step; hy <- |t' - t|
//   col_sse       p, yh, bias (read), out (rw)                out[j] += sum_k (yh - p - bias[j])²
//   col_absmax    p (read), out (rw)                          out[j] = max_{k (!= j)} |p[k, j]|
//   select_copy   cand, sse (read), best, best_theta (rw)     copy improved columns
//   select_update sse, bias (read), best, best_bias, choice (rw)
//   finalize      cand (read), out (rw)                       transpose, crop to n x n, zero diagonal
//   cg_init       r, hy (read), theta, res, pdir (rw)         ridge CG: res = pdir = r − hy − ridge theta
//   col_dot       p, yh (read), out (rw)                      out[j] = Σ_k p (yh + ridge p)
//   cg_step       hy, pdir, rr, pap, r0 (read), theta, res    theta += α pdir, res −= α (hy + ridge pdir)
//   cg_dir        res, rr, rr_new, r0 (read), pdir (rw)       pdir = res + β pdir
// (cg_step and cg_dir leave a column alone once rr ≤ floor2 · r0: it has converged.)
// Uniform { rows, cols, count, n, index, s, c, step, ridge, beta, offdiag, floor2 }; override WG; flat grids fold into
// y.
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";

export interface RegressionVariant extends Variant {
  workgroupSize: number;
}

export const regressionOp = defineOp<RegressionVariant>(
  "regression",
  "datamodels regression steps: centring, proximal step, held-out error and selection per target",
);
regressionOp.register({
  name: "default",
  file: "wgsl/regression.wgsl",
  code: await wgsl("regression.wgsl"),
  workgroupSize: 256,
});

const ZERO_UNIFORMS = {
  rows: 0,
  cols: 0,
  count: 0,
  n: 0,
  index: 0,
  s: 0,
  c: 0,
  step: 0,
  ridge: 0,
  beta: 0,
  offdiag: 0,
  floor2: 0,
};

function dispatch(
  rt: Runtime,
  entry: string,
  buffers: Record<string, Tensor>,
  uniforms: Partial<typeof ZERO_UNIFORMS>,
  items: number,
): void {
  const v = regressionOp.active;
  rt.dispatch({
    label: `regression.${entry}/${v.name}`,
    code: v.code,
    entryPoint: entry,
    constants: { WG: v.workgroupSize },
    buffers,
    uniforms: { ...ZERO_UNIFORMS, ...uniforms },
    workgroups: grid1d(items, v.workgroupSize),
  });
}

const cols2d = (t: Tensor, what: string): [number, number] => {
  if (t.shape.length !== 2) throw new Error(`${what}: expected a matrix, got [${t.shape}]`);
  return [t.shape[0], t.shape[1]];
};
const need = (t: Tensor, size: number, what: string) => {
  if (t.size < size) throw new Error(`${what}: has ${t.size} elements, needs ${size}`);
};

/** mat = s (mat + c u vᵀ), in place; u has mat's rows, v its columns. */
export function rank1Update(rt: Runtime, mat: Tensor, u: Tensor, v: Tensor, s: number, c: number): Tensor {
  const [rows, cols] = cols2d(mat, "rank1Update");
  need(u, rows, "rank1Update u");
  need(v, cols, "rank1Update v");
  dispatch(rt, "rank1_update", { mat, u, v }, { rows, cols, s, c }, rows * cols);
  return mat;
}

export interface ProxStepParams {
  step: number;
  /** L2 penalty (ridge/2 |t|²), in the smooth part. */
  ridge: number;
  /** Momentum: y' = t' + beta (t' - t). */
  beta: number;
}

/**
 * One accelerated proximal-gradient step for every column (target) j of theta at once, minimising
 * ½ tᵀHt − rᵀt + ridge/2 |t|² + lam1[j] |t|₁: with hy = H y,
 * t' = soft(y − step (hy − r + ridge y), step lam1[j]), y' = t' + beta (t' − t). Updates theta and y in place,
 * and overwrites hy (spent) with |t' − t|.
 */
export function proxStep(
  rt: Runtime,
  b: { hy: Tensor; r: Tensor; lam1: Tensor; theta: Tensor; y: Tensor },
  p: ProxStepParams,
): void {
  const [rows, cols] = cols2d(b.theta, "proxStep theta");
  for (const k of ["hy", "r", "y"] as const) need(b[k], rows * cols, `proxStep ${k}`);
  need(b.lam1, cols, "proxStep lam1");
  if (b.theta.buffer === b.y.buffer) throw new Error("proxStep: theta and y must differ");
  dispatch(rt, "prox_step", b, { cols, count: rows * cols, step: p.step, ridge: p.ridge, beta: p.beta }, rows * cols);
}

/** out[j] += Σ_k (yh[k, j] − p[k, j] − bias[j])² over the first `rows` rows, for columns j < n. */
export function colSse(
  rt: Runtime,
  p: Tensor,
  yh: Tensor,
  bias: Tensor,
  out: Tensor,
  o: { rows: number; n: number },
): Tensor {
  const [, cols] = cols2d(p, "colSse p");
  need(p, o.rows * cols, "colSse p");
  need(yh, o.rows * cols, "colSse yh");
  need(bias, o.n, "colSse bias");
  need(out, o.n, "colSse out");
  if (o.n > cols) throw new Error(`colSse: n = ${o.n} > ${cols} columns`);
  dispatch(rt, "col_sse", { p, yh, bias, out }, { rows: o.rows, cols, n: o.n }, o.n);
  return out;
}

/** out[j] = max over rows k of |p[k, j]| (k ≠ j when offDiagonal), for columns j < n. */
export function colAbsMax(rt: Runtime, p: Tensor, n: number, o: { offDiagonal?: boolean; out?: Tensor } = {}): Tensor {
  const [rows, cols] = cols2d(p, "colAbsMax");
  if (n > cols) throw new Error(`colAbsMax: n = ${n} > ${cols} columns`);
  const out = o.out ?? rt.empty([n], "f32");
  need(out, n, "colAbsMax out");
  dispatch(rt, "col_absmax", { p, out }, { rows, cols, n, offdiag: o.offDiagonal ? 1 : 0 }, n);
  return out;
}

export interface Selection {
  /** Best held-out error per column so far (start at +inf). */
  best: Tensor;
  bestTheta: Tensor;
  bestBias: Tensor;
  /** Path index of the chosen candidate, as f32. */
  choice: Tensor;
}

/** Where sse[j] < best[j]: take candidate column j of cand, its bias and `index` (two ordered dispatches). */
export function selectBest(
  rt: Runtime,
  cand: Tensor,
  sse: Tensor,
  bias: Tensor,
  sel: Selection,
  index: number,
  n: number,
): void {
  const [rows, cols] = cols2d(cand, "selectBest cand");
  need(sel.bestTheta, rows * cols, "selectBest bestTheta");
  for (
    const [t, what] of [[sse, "sse"], [bias, "bias"], [sel.best, "best"], [sel.bestBias, "bestBias"], [
      sel.choice,
      "choice",
    ]] as const
  ) need(t, n, `selectBest ${what}`);
  dispatch(
    rt,
    "select_copy",
    { cand, sse, best: sel.best, best_theta: sel.bestTheta },
    { cols, count: rows * cols, n },
    rows * cols,
  );
  dispatch(rt, "select_update", { sse, bias, best: sel.best, best_bias: sel.bestBias, choice: sel.choice }, {
    n,
    index,
  }, n);
}

/** [n, n] with out[i, j] = cand[j, i] (i ≠ j), 0 on the diagonal: targets as rows, cropped from a padded cand. */
export function finalizeWeights(rt: Runtime, cand: Tensor, n: number): Tensor {
  const [rows, cols] = cols2d(cand, "finalizeWeights");
  if (n > rows || n > cols) throw new Error(`finalizeWeights: n = ${n} exceeds [${cand.shape}]`);
  const out = rt.empty([n, n], "f32");
  dispatch(rt, "finalize", { cand, out }, { cols, n }, n * n);
  return out;
}

// ---------------------------------------------------------------- ridge by conjugate gradients

/** Per-column CG state of (H + ridge I) θ = R, every column (target) its own run in lockstep. */
export interface CgState {
  theta: Tensor;
  res: Tensor;
  pdir: Tensor;
  /** |R[:, j]|² per column, and the relative |residual|² below which a column stops. */
  r0: Tensor;
  floor2: number;
}

/** res = pdir = r − hy − ridge θ, with hy = H θ. */
export function cgInit(rt: Runtime, s: CgState, r: Tensor, hy: Tensor, ridge: number): void {
  const [rows, cols] = cols2d(s.theta, "cgInit theta");
  for (const [t, what] of [[r, "r"], [hy, "hy"], [s.res, "res"], [s.pdir, "pdir"]] as const) {
    need(t, rows * cols, `cgInit ${what}`);
  }
  dispatch(
    rt,
    "cg_init",
    { r, hy, theta: s.theta, res: s.res, pdir: s.pdir },
    { cols, count: rows * cols, ridge },
    rows * cols,
  );
}

/**
 * out[j] = Σ_k p[k, j] (yh[k, j] + ridge p[k, j]) for columns j < n: pᵀ(H + ridge I)p with yh = H p, or |p|² with yh =
 * p, ridge 0.
 */
export function colDot(rt: Runtime, p: Tensor, yh: Tensor, ridge: number, n: number, out?: Tensor): Tensor {
  const [rows, cols] = cols2d(p, "colDot p");
  need(yh, rows * cols, "colDot yh");
  const o = out ?? rt.empty([n], "f32");
  need(o, n, "colDot out");
  dispatch(rt, "col_dot", { p, yh, out: o }, { rows, cols, n, ridge }, n);
  return o;
}

/**
 * α_j = rr[j] / pap[j]: θ += α pdir, res −= α (hy + ridge pdir), with hy = H pdir; no step where pap[j] ≤ 0 or the
 * column stopped.
 */
export function cgStep(rt: Runtime, s: CgState, hy: Tensor, rr: Tensor, pap: Tensor, ridge: number): void {
  const [rows, cols] = cols2d(s.theta, "cgStep theta");
  for (const [t, what] of [[rr, "rr"], [pap, "pap"], [s.r0, "r0"]] as const) need(t, cols, `cgStep ${what}`);
  dispatch(rt, "cg_step", { hy, pdir: s.pdir, rr, pap, r0: s.r0, theta: s.theta, res: s.res }, {
    cols,
    count: rows * cols,
    ridge,
    floor2: s.floor2,
  }, rows * cols);
}

/** pdir = res + β pdir, β_j = rrNew[j] / rr[j]; stopped columns keep their direction. */
export function cgDirection(rt: Runtime, s: CgState, rr: Tensor, rrNew: Tensor): void {
  const [rows, cols] = cols2d(s.theta, "cgDirection theta");
  for (const [t, what] of [[rr, "rr"], [rrNew, "rrNew"], [s.r0, "r0"]] as const) need(t, cols, `cgDirection ${what}`);
  dispatch(rt, "cg_dir", { res: s.res, rr, rr_new: rrNew, r0: s.r0, pdir: s.pdir }, {
    cols,
    count: rows * cols,
    floor2: s.floor2,
  }, rows * cols);
}

// ---------------------------------------------------------------- CPU twins (float64)

type Arr = ArrayLike<number>;

export function rank1UpdateRef(
  mat: Arr,
  rows: number,
  cols: number,
  u: Arr,
  v: Arr,
  s: number,
  c: number,
): Float64Array {
  return Float64Array.from({ length: rows * cols }, (_, e) => s * (mat[e] + c * u[Math.floor(e / cols)] * v[e % cols]));
}

export function proxStepRef(
  hy: Arr,
  r: Arr,
  lam1: Arr,
  theta: Arr,
  y: Arr,
  cols: number,
  p: ProxStepParams,
): { theta: Float64Array; y: Float64Array; step: Float64Array } {
  const t2 = new Float64Array(theta.length);
  const y2 = new Float64Array(theta.length);
  const d = new Float64Array(theta.length);
  for (let e = 0; e < theta.length; e++) {
    const z = y[e] - p.step * (hy[e] - r[e] + p.ridge * y[e]);
    const th = p.step * lam1[e % cols];
    const t = Math.sign(z) * Math.max(Math.abs(z) - th, 0);
    y2[e] = t + p.beta * (t - theta[e]);
    t2[e] = t;
    d[e] = Math.abs(t - theta[e]);
  }
  return { theta: t2, y: y2, step: d };
}

export function colSseRef(p: Arr, yh: Arr, bias: Arr, rows: number, cols: number, n: number, out?: Arr): Float64Array {
  const o = Float64Array.from({ length: n }, (_, j) => (out ? out[j] : 0));
  for (let k = 0; k < rows; k++) {
    for (let j = 0; j < n; j++) {
      const d = yh[k * cols + j] - p[k * cols + j] - bias[j];
      o[j] += d * d;
    }
  }
  return o;
}

export function colAbsMaxRef(p: Arr, rows: number, cols: number, n: number, offDiagonal = false): Float64Array {
  const o = new Float64Array(n);
  for (let k = 0; k < rows; k++) {
    for (let j = 0; j < n; j++) if (k !== j || !offDiagonal) o[j] = Math.max(o[j], Math.abs(p[k * cols + j]));
  }
  return o;
}

export function selectBestRef(
  cand: Arr,
  cols: number,
  sse: Arr,
  bias: Arr,
  sel: { best: Arr; bestTheta: Arr; bestBias: Arr; choice: Arr },
  index: number,
  n: number,
): { best: Float64Array; bestTheta: Float64Array; bestBias: Float64Array; choice: Float64Array } {
  const better = (j: number) => j < n && sse[j] < sel.best[j];
  return {
    bestTheta: Float64Array.from(sel.bestTheta, (x, e) => (better(e % cols) ? cand[e] : x)),
    best: Float64Array.from(sel.best, (x, j) => (better(j) ? sse[j] : x)),
    bestBias: Float64Array.from(sel.bestBias, (x, j) => (better(j) ? bias[j] : x)),
    choice: Float64Array.from(sel.choice, (x, j) => (better(j) ? index : x)),
  };
}

export function finalizeWeightsRef(cand: Arr, cols: number, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[i * n + j] = i === j ? 0 : cand[j * cols + i];
  return out;
}

export function cgInitRef(r: Arr, hy: Arr, theta: Arr, ridge: number): Float64Array {
  return Float64Array.from(r, (x, e) => x - hy[e] - ridge * theta[e]);
}

export function colDotRef(p: Arr, yh: Arr, ridge: number, rows: number, cols: number, n: number): Float64Array {
  const o = new Float64Array(n);
  for (let k = 0; k < rows; k++) {
    for (let j = 0; j < n; j++) o[j] += p[k * cols + j] * (yh[k * cols + j] + ridge * p[k * cols + j]);
  }
  return o;
}

/** Whether CG column j still runs: rr[j] > floor2 · r0[j]. */
export const cgActive = (rr: Arr, r0: Arr, floor2: number, j: number) => rr[j] > floor2 * r0[j];

export function cgStepRef(
  theta: Arr,
  res: Arr,
  pdir: Arr,
  hy: Arr,
  rr: Arr,
  pap: Arr,
  r0: Arr,
  floor2: number,
  ridge: number,
  cols: number,
): { theta: Float64Array; res: Float64Array } {
  const alpha = (j: number) => (cgActive(rr, r0, floor2, j) && pap[j] > 0 ? rr[j] / pap[j] : 0);
  return {
    theta: Float64Array.from(theta, (t, e) => t + alpha(e % cols) * pdir[e]),
    res: Float64Array.from(res, (x, e) => x - alpha(e % cols) * (hy[e] + ridge * pdir[e])),
  };
}

export function cgDirectionRef(
  res: Arr,
  pdir: Arr,
  rr: Arr,
  rrNew: Arr,
  r0: Arr,
  floor2: number,
  cols: number,
): Float64Array {
  return Float64Array.from(pdir, (p, e) => {
    const j = e % cols;
    return cgActive(rr, r0, floor2, j) ? res[e] + (rrNew[j] / rr[j]) * p : p;
  });
}
