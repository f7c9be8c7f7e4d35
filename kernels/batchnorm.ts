// Batch norm on CNHW activations x[C, N, H, W] (any shape whose first axis is C): statistics per
// channel over its contiguous row of L = N*H*W elements. PyTorch conventions: biased batch variance
// normalises; running_mean/var (updated in place in training) use momentum m (default 0.1) as
// running = (1 - m) running + m batch, with the unbiased batch variance for running_var; eps 1e-5.
// Training saves mean and invstd = 1/sqrt(var + eps) per channel for the backward pass.
// Binding contract of a variant's shader (wgsl/batchnorm.wgsl): x, gamma, beta, dy (read); y,
// stats ([mean, invstd], 2C), run_mean, run_var, dx, dgamma, dbeta (read_write) f32, and x4, y4, dy4, dx4
// (the same buffers as vec4 arrays); uniform { C, L, eps, momentum, unbias }; overrides WG (power of two)
// and RELU (a fused relu after the normalisation); entries train_fwd and bwd (one workgroup per channel:
// y-grid, folded into z past 65535) and eval_fwd (y-grid = channel, x-grid walks the row), each also as
// a *4 entry on vec4 rows, used when L % 4 == 0; train_fwd_pool4 and bwd_pool4 (y2, dy2: the pooled output
// and its gradient as vec2 arrays; uniform W4 = W / 4) add a 2x2 max pool after the output.
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { maxPool2x2BackwardRef, maxPool2x2Ref } from "./pool.ts";
import { defineOp, type Variant } from "./registry.ts";

export interface BatchNormVariant extends Variant {
  workgroupSize: number;
}

export const batchNormOp = defineOp<BatchNormVariant>(
  "batchnorm",
  "batch norm over CNHW: training and eval forward, backward",
);
batchNormOp.register({
  name: "default",
  file: "wgsl/batchnorm.wgsl",
  code: await wgsl("batchnorm.wgsl"),
  workgroupSize: 256,
});

export interface BatchNormState {
  /** [C], updated in place by batchNormTrain. */
  runningMean: Tensor;
  /** [C], updated in place by batchNormTrain. */
  runningVar: Tensor;
}

export interface BatchNormOptions {
  eps?: number;
  momentum?: number;
  /** Apply a relu to the output. */
  relu?: boolean;
  /** Then a 2x2 max pool (x as poolsFused takes it): y is the pooled output, and neither the full-size output nor
   *  the pool's argmax is stored (the backward finds them again from x and the saved statistics). */
  pool?: boolean;
}

/** Whether `pool` takes x of this shape: [C, N, H, W] with H even and W % 4 == 0 (two windows per vec4 of a row). */
export const poolsFused = (shape: readonly number[]): boolean =>
  shape.length === 4 && shape[2] % 2 === 0 && shape[2] > 0 && shape[3] % 4 === 0 && shape[3] > 0;

/** With `pool`: the pooled shape and the uniform W4, checked. */
function pooling(x: Tensor, pool: boolean | undefined, what: string): { shape: number[]; W4: number } | undefined {
  if (!pool) return undefined;
  if (!poolsFused(x.shape)) {
    throw new Error(`${what}: a fused pool needs [C, N, H, W] with H even, W % 4 == 0, got [${x.shape}]`);
  }
  const [C, N, H, W] = x.shape;
  return { shape: [C, N, H / 2, W / 2], W4: W / 4 };
}

/** Row units an eval_fwd invocation walks: fewer invocations, each paying the per-channel prologue once. */
const EVAL_UNITS_PER_INVOCATION = 8;

export interface BatchNormSaved {
  /** [2, C]: the batch mean, then invstd. */
  stats: Tensor;
}

/** The entry point for rows of length L: its vec4 form when they are whole vec4s. */
const entry = (name: string, L: number) => (L % 4 === 0 ? `${name}4` : name);
/** Rows of length L counted in the units the entry for them walks. */
const units = (L: number) => (L % 4 === 0 ? L / 4 : L);

function channels(x: Tensor, ...perChannel: Tensor[]): { C: number; L: number } {
  const C = x.shape[0];
  if (x.shape.length < 2 || !C) throw new Error(`batchnorm: expected [C, N, H, W], got [${x.shape}]`);
  for (const t of perChannel) {
    if (t.size !== C) throw new Error(`batchnorm: a per-channel tensor has shape [${t.shape}], expected [${C}]`);
  }
  return { C, L: x.size / C };
}

const channelGrid = (
  C: number,
  x = 1,
): [number, number, number] => (C <= 65535 ? [x, C, 1] : [x, 65535, Math.ceil(C / 65535)]);

/** Training forward: y (pooled with `pool`), plus the saved batch statistics; running stats updated in place. */
export function batchNormTrain(
  rt: Runtime,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  state: BatchNormState,
  opts: BatchNormOptions = {},
): { y: Tensor } & BatchNormSaved {
  const { C, L } = channels(x, gamma, beta, state.runningMean, state.runningVar);
  if (L < 2) throw new Error(`batchnorm: training needs more than one value per channel, got ${L}`);
  const pool = pooling(x, opts.pool, "batchnorm");
  const v = batchNormOp.active;
  const y = rt.empty(pool?.shape ?? x.shape, "f32");
  const stats = rt.empty([2, C], "f32");
  rt.dispatch({
    label: `batchnorm.train_fwd${pool ? "_pool" : ""}/${v.name}`,
    code: v.code,
    entryPoint: pool ? "train_fwd_pool4" : entry("train_fwd", L),
    constants: { WG: v.workgroupSize, RELU: opts.relu ? 1 : 0 },
    buffers: { x, x4: x, gamma, beta, y, y4: y, y2: y, stats, run_mean: state.runningMean, run_var: state.runningVar },
    uniforms: { C, L, eps: opts.eps ?? 1e-5, momentum: opts.momentum ?? 0.1, unbias: L / (L - 1), W4: pool?.W4 ?? 0 },
    workgroups: channelGrid(C),
  });
  return { y, stats };
}

/** Eval forward with the running statistics. */
export function batchNormEval(
  rt: Runtime,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  state: BatchNormState,
  opts: BatchNormOptions = {},
): Tensor {
  const { C, L } = channels(x, gamma, beta, state.runningMean, state.runningVar);
  const v = batchNormOp.active;
  const y = rt.empty(x.shape, "f32");
  rt.dispatch({
    label: `batchnorm.eval_fwd/${v.name}`,
    code: v.code,
    entryPoint: entry("eval_fwd", L),
    constants: { WG: v.workgroupSize, RELU: opts.relu ? 1 : 0 },
    buffers: { x, x4: x, gamma, beta, y, y4: y, run_mean: state.runningMean, run_var: state.runningVar },
    uniforms: { C, L, eps: opts.eps ?? 1e-5, momentum: 0, unbias: 1 },
    workgroups: channelGrid(
      C,
      Math.max(1, Math.min(Math.ceil(units(L) / (v.workgroupSize * EVAL_UNITS_PER_INVOCATION)), 65535)),
    ),
  });
  return y;
}

/**
 * Gradients of batchNormTrain's y with respect to x, gamma and beta, from its saved statistics; `gamma`, `beta`
 * and `opts` as the forward's (where a relu or pool is fused, the outputs are recomputed from beta).
 */
export function batchNormBackward(
  rt: Runtime,
  x: Tensor,
  dy: Tensor,
  gamma: Tensor,
  beta: Tensor,
  saved: BatchNormSaved,
  opts: Pick<BatchNormOptions, "relu" | "pool"> = {},
): { dx: Tensor; dgamma: Tensor; dbeta: Tensor } {
  const { C, L } = channels(x, gamma, beta);
  if (saved.stats.size !== 2 * C) throw new Error(`batchnorm backward: stats [${saved.stats.shape}] is not [2, ${C}]`);
  const pool = pooling(x, opts.pool, "batchnorm backward");
  if (dy.size !== (pool ? x.size / 4 : x.size)) {
    throw new Error(`batchnorm backward: dy [${dy.shape}] does not match the output of x [${x.shape}]`);
  }
  const v = batchNormOp.active;
  const dx = rt.empty(x.shape, "f32");
  const dgamma = rt.empty([C], "f32");
  const dbeta = rt.empty([C], "f32");
  rt.dispatch({
    label: `batchnorm.bwd${pool ? "_pool" : ""}/${v.name}`,
    code: v.code,
    entryPoint: pool ? "bwd_pool4" : entry("bwd", L),
    constants: { WG: v.workgroupSize, RELU: opts.relu ? 1 : 0 },
    buffers: { x, x4: x, dy, dy4: dy, dy2: dy, gamma, beta, stats: saved.stats, dx, dx4: dx, dgamma, dbeta },
    uniforms: { C, L, eps: 0, momentum: 0, unbias: 1, W4: pool?.W4 ?? 0 },
    workgroups: channelGrid(C),
  });
  return { dx, dgamma, dbeta };
}

// ---------------------------------------------------------------- CPU twins (float64)

type Arr = ArrayLike<number>;

function stats(
  x: Arr,
  C: number,
  L: number,
  eps: number,
): { mean: Float64Array; variance: Float64Array; invstd: Float64Array } {
  const mean = new Float64Array(C);
  const variance = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let s = 0;
    for (let j = 0; j < L; j++) s += x[c * L + j];
    mean[c] = s / L;
    let q = 0;
    for (let j = 0; j < L; j++) q += (x[c * L + j] - mean[c]) ** 2;
    variance[c] = q / L;
  }
  return { mean, variance, invstd: variance.map((v) => 1 / Math.sqrt(v + eps)) };
}

export function batchNormTrainRef(
  x: Arr,
  gamma: Arr,
  beta: Arr,
  runningMean: Arr,
  runningVar: Arr,
  C: number,
  L: number,
  opts: BatchNormOptions = {},
): { y: Float64Array; mean: Float64Array; invstd: Float64Array; runningMean: Float64Array; runningVar: Float64Array } {
  const eps = opts.eps ?? 1e-5;
  const m = opts.momentum ?? 0.1;
  const { mean, variance, invstd } = stats(x, C, L, eps);
  const y = Float64Array.from(x, (v, i) => {
    const c = Math.floor(i / L);
    return gamma[c] * (v - mean[c]) * invstd[c] + beta[c];
  });
  return {
    y,
    mean,
    invstd,
    runningMean: Float64Array.from(runningMean, (r, c) => (1 - m) * r + m * mean[c]),
    runningVar: Float64Array.from(runningVar, (r, c) => (1 - m) * r + (m * variance[c] * L) / (L - 1)),
  };
}

export function batchNormEvalRef(
  x: Arr,
  gamma: Arr,
  beta: Arr,
  runningMean: Arr,
  runningVar: Arr,
  _C: number, // the channel count, kept for a signature like the other twins' (channels are i / L here)
  L: number,
  eps = 1e-5,
): Float64Array {
  return Float64Array.from(x, (v, i) => {
    const c = Math.floor(i / L);
    return (gamma[c] * (v - runningMean[c])) / Math.sqrt(runningVar[c] + eps) + beta[c];
  });
}

/** Gradients of batchNormTrainRef's y, recomputing the batch statistics from x. */
export function batchNormBackwardRef(
  x: Arr,
  dy: Arr,
  gamma: Arr,
  C: number,
  L: number,
  eps = 1e-5,
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const { mean, invstd } = stats(x, C, L, eps);
  const dgamma = new Float64Array(C);
  const dbeta = new Float64Array(C);
  const dx = new Float64Array(x.length);
  for (let c = 0; c < C; c++) {
    for (let j = 0; j < L; j++) {
      const i = c * L + j;
      dbeta[c] += dy[i];
      dgamma[c] += dy[i] * (x[i] - mean[c]) * invstd[c];
    }
    for (let j = 0; j < L; j++) {
      const i = c * L + j;
      const xhat = (x[i] - mean[c]) * invstd[c];
      dx[i] = (gamma[c] * invstd[c] / L) * (L * dy[i] - dbeta[c] - xhat * dgamma[c]);
    }
  }
  return { dx, dgamma, dbeta };
}

/** batchNormTrainRef, the relu when `relu`, then maxPool2x2Ref: the pooled output. */
export function batchNormTrainPooledRef(
  x: Arr,
  shape: readonly number[],
  gamma: Arr,
  beta: Arr,
  opts: { eps?: number; relu?: boolean } = {},
): Float64Array {
  const C = shape[0];
  const { y } = batchNormTrainRef(x, gamma, beta, new Float64Array(C), new Float64Array(C), C, x.length / C, opts);
  return maxPool2x2Ref(opts.relu ? y.map((v) => Math.max(v, 0)) : y, shape).y;
}

/** Gradients of batchNormTrainPooledRef: the pool's, the relu's mask, then batchNormBackwardRef. */
export function batchNormBackwardPooledRef(
  x: Arr,
  shape: readonly number[],
  dy: Arr,
  gamma: Arr,
  beta: Arr,
  opts: { eps?: number; relu?: boolean } = {},
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const C = shape[0];
  const L = x.length / C;
  const eps = opts.eps ?? 1e-5;
  const { y } = batchNormTrainRef(x, gamma, beta, new Float64Array(C), new Float64Array(C), C, L, { eps });
  const out = opts.relu ? y.map((v) => Math.max(v, 0)) : y;
  const dOut = maxPool2x2BackwardRef(out, dy, shape);
  const dz = opts.relu ? dOut.map((v, i) => (y[i] > 0 ? v : 0)) : dOut;
  return batchNormBackwardRef(x, dz, gamma, C, L, eps);
}
