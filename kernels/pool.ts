// Pooling on CNHW activations x[C, N, H, W], over the H, W axes of each of the C*N planes.
// - maxPool2x2: 2x2 windows, stride 2 -> y[C, N, floor(H/2), floor(W/2)]. Odd H or W: the last row or
//   column is dropped (floor, as PyTorch's default), and gets a zero gradient. `idx` (u32, same shape
//   as y) holds the flat index into x of each window's maximum (the first, row-major, on ties).
// - globalAvgPool / globalMaxPool: y[C, N]; globalMaxPool's `idx` [C, N] is the plane-local position
//   h*W + w of the first maximum.
// Backward passes write each dx element once: max pool one invocation per window, the global pools one
// per element.
// Binding contract of a variant's shader (wgsl/pool.wgsl): x, dy (read f32), idx (read u32), y, dx
// (read_write f32), idx_out (read_write u32); uniform { planes, H, W, OH, OW, n } where n is the number
// of invocations (outputs forward and in maxpool2_bwd, dx elements in the global pools' backward);
// override WG; flat grids fold into y (grid1d); entries maxpool2_fwd/_bwd, global_avg_fwd/_bwd,
// global_max_fwd/_bwd, and maxpool2_fwd_pairs/_bwd_pairs (W % 4 == 0: two windows per invocation on
// x4, y2, idx_out2, dy2, idx2, dx4, the same buffers as vectors; n counts pairs).
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";

export interface PoolVariant extends Variant {
  workgroupSize: number;
}

export const poolOp = defineOp<PoolVariant>(
  "pool",
  "2x2 max pool and global avg/max pool over H, W (CNHW), with backward",
);
poolOp.register({ name: "default", file: "wgsl/pool.wgsl", code: await wgsl("pool.wgsl"), workgroupSize: 256 });

function dims4(shape: readonly number[], what: string): [number, number, number, number] {
  if (shape.length !== 4) throw new Error(`${what}: expected [C, N, H, W], got [${shape}]`);
  return shape as [number, number, number, number];
}

function run(
  rt: Runtime,
  entry: string,
  buffers: Record<string, Tensor>,
  u: { planes: number; H: number; W: number; OH: number; OW: number; n: number },
): void {
  const v = poolOp.active;
  rt.dispatch({
    label: `pool.${entry}/${v.name}`,
    code: v.code,
    entryPoint: entry,
    constants: { WG: v.workgroupSize },
    buffers,
    uniforms: u,
    workgroups: grid1d(u.n, v.workgroupSize),
  });
}

export function maxPool2x2(rt: Runtime, x: Tensor): { y: Tensor; idx: Tensor<"u32"> } {
  const [C, N, H, W] = dims4(x.shape, "maxPool2x2");
  if (H < 2 || W < 2) throw new Error(`maxPool2x2: a ${H}x${W} input has no 2x2 window`);
  const OH = H >> 1;
  const OW = W >> 1;
  const y = rt.empty([C, N, OH, OW], "f32");
  const idx = rt.empty([C, N, OH, OW], "u32");
  const n = C * N * OH * OW;
  if (W % 4 === 0) {
    run(rt, "maxpool2_fwd_pairs", { x4: x, y2: y, idx_out2: idx }, { planes: C * N, H, W, OH, OW, n: n / 2 });
  } else run(rt, "maxpool2_fwd", { x, y, idx_out: idx }, { planes: C * N, H, W, OH, OW, n });
  return { y, idx };
}

export function maxPool2x2Backward(rt: Runtime, dy: Tensor, idx: Tensor, xShape: readonly number[]): Tensor {
  const [C, N, H, W] = dims4(xShape, "maxPool2x2Backward");
  const OH = H >> 1;
  const OW = W >> 1;
  if (dy.size !== C * N * OH * OW || idx.size !== dy.size) {
    throw new Error(`maxPool2x2Backward: dy [${dy.shape}] / idx [${idx.shape}] do not match x [${xShape}]`);
  }
  const dx = rt.empty([C, N, H, W], "f32");
  const n = C * N * OH * OW;
  if (W % 4 === 0) {
    run(rt, "maxpool2_bwd_pairs", { dy2: dy, idx2: idx, dx4: dx }, { planes: C * N, H, W, OH, OW, n: n / 2 });
  } else run(rt, "maxpool2_bwd", { dy, idx, dx }, { planes: C * N, H, W, OH, OW, n });
  return dx;
}

export function globalAvgPool(rt: Runtime, x: Tensor): Tensor {
  const [C, N, H, W] = dims4(x.shape, "globalAvgPool");
  const y = rt.empty([C, N], "f32");
  run(rt, "global_avg_fwd", { x, y }, { planes: C * N, H, W, OH: 1, OW: 1, n: C * N });
  return y;
}

export function globalAvgPoolBackward(rt: Runtime, dy: Tensor, xShape: readonly number[]): Tensor {
  const [C, N, H, W] = dims4(xShape, "globalAvgPoolBackward");
  if (dy.size !== C * N) throw new Error(`globalAvgPoolBackward: dy [${dy.shape}] is not [${C}, ${N}]`);
  const dx = rt.empty([C, N, H, W], "f32");
  run(rt, "global_avg_bwd", { dy, dx }, { planes: C * N, H, W, OH: 1, OW: 1, n: C * N * H * W });
  return dx;
}

export function globalMaxPool(rt: Runtime, x: Tensor): { y: Tensor; idx: Tensor<"u32"> } {
  const [C, N, H, W] = dims4(x.shape, "globalMaxPool");
  if (H * W === 0) throw new Error("globalMaxPool: empty planes");
  const y = rt.empty([C, N], "f32");
  const idx = rt.empty([C, N], "u32");
  run(rt, "global_max_fwd", { x, y, idx_out: idx }, { planes: C * N, H, W, OH: 1, OW: 1, n: C * N });
  return { y, idx };
}

export function globalMaxPoolBackward(rt: Runtime, dy: Tensor, idx: Tensor, xShape: readonly number[]): Tensor {
  const [C, N, H, W] = dims4(xShape, "globalMaxPoolBackward");
  if (dy.size !== C * N || idx.size !== C * N) {
    throw new Error(`globalMaxPoolBackward: dy [${dy.shape}] / idx [${idx.shape}] are not [${C}, ${N}]`);
  }
  const dx = rt.empty([C, N, H, W], "f32");
  run(rt, "global_max_bwd", { dy, idx, dx }, { planes: C * N, H, W, OH: 1, OW: 1, n: C * N * H * W });
  return dx;
}

// ---------------------------------------------------------------- CPU twins (float64)

type Arr = ArrayLike<number>;

export function maxPool2x2Ref(x: Arr, shape: readonly number[]): { y: Float64Array; idx: Uint32Array } {
  const [C, N, H, W] = dims4(shape, "maxPool2x2Ref");
  const OH = H >> 1;
  const OW = W >> 1;
  const y = new Float64Array(C * N * OH * OW);
  const idx = new Uint32Array(y.length);
  for (let p = 0; p < C * N; p++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        let best = -1;
        for (let dh = 0; dh < 2; dh++) {
          for (let dw = 0; dw < 2; dw++) {
            const i = (p * H + 2 * oh + dh) * W + 2 * ow + dw;
            if (best < 0 || x[i] > x[best]) best = i;
          }
        }
        const o = (p * OH + oh) * OW + ow;
        y[o] = x[best];
        idx[o] = best;
      }
    }
  }
  return { y, idx };
}

/** dx from the definition: each window's dy goes to its (first) maximum. */
export function maxPool2x2BackwardRef(x: Arr, dy: Arr, shape: readonly number[]): Float64Array {
  const { idx } = maxPool2x2Ref(x, shape);
  const dx = new Float64Array(x.length);
  idx.forEach((i, o) => (dx[i] += dy[o]));
  return dx;
}

export function globalAvgPoolRef(x: Arr, shape: readonly number[]): Float64Array {
  const [C, N, H, W] = dims4(shape, "globalAvgPoolRef");
  const len = H * W;
  const y = new Float64Array(C * N);
  for (let p = 0; p < C * N; p++) {
    let s = 0;
    for (let j = 0; j < len; j++) s += x[p * len + j];
    y[p] = s / len;
  }
  return y;
}

export function globalAvgPoolBackwardRef(dy: Arr, shape: readonly number[]): Float64Array {
  const [C, N, H, W] = dims4(shape, "globalAvgPoolBackwardRef");
  const len = H * W;
  return Float64Array.from({ length: C * N * len }, (_, i) => dy[Math.floor(i / len)] / len);
}

export function globalMaxPoolRef(x: Arr, shape: readonly number[]): { y: Float64Array; idx: Uint32Array } {
  const [C, N, H, W] = dims4(shape, "globalMaxPoolRef");
  const len = H * W;
  const y = new Float64Array(C * N);
  const idx = new Uint32Array(C * N);
  for (let p = 0; p < C * N; p++) {
    let best = 0;
    for (let j = 1; j < len; j++) if (x[p * len + j] > x[p * len + best]) best = j;
    y[p] = x[p * len + best];
    idx[p] = best;
  }
  return { y, idx };
}

export function globalMaxPoolBackwardRef(x: Arr, dy: Arr, shape: readonly number[]): Float64Array {
  const [, , H, W] = dims4(shape, "globalMaxPoolBackwardRef");
  const len = H * W;
  const { idx } = globalMaxPoolRef(x, shape);
  const dx = new Float64Array(x.length);
  idx.forEach((j, p) => (dx[p * len + j] = dy[p]));
  return dx;
}
