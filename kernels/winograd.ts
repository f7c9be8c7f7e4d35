// Winograd F(2x2, 3x3) convolution: 3x3 kernels at stride 1, pad 1, on CNHW activations with H even and
// W % 8 == 0 (`winogradApplies`). Forward: U = G w Gᵀ [16, O, C], V = Bᵀ d B [16, C, T] (T = N H W / 4
// tiles), M = U · V as 16 batched GEMMs (`matmul`), y = Aᵀ M A. Backward from dy: dM = A dy Aᵀ, dw = Gᵀ (dM · Vᵀ)
// G, reusing the forward's V; dx is the forward of dy with the taps flipped (conv2d.ts `flipTaps`), as in
// conv2dBackward. The multiply-adds are 4/9 of im2col + GEMM's and no im2col buffer is written; the error is
// a few f32 roundings more (the transforms add up to 4 terms).
// Binding contract (wgsl/winograd.wgsl): src, src4 (read), dst, dst4 (read_write), the same buffers as f32 and
// vec4; uniform { R, S, N, H, W }; override WG; entries `weights`, `input`, `output`, `output_grad`,
// `weight_grad` (see the shader). The CPU twins are conv2d.ts's `conv2dRef` and `conv2dBackwardRef`: the
// convolution it computes, from the definition.
import type { Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { type ConvGeom, type ConvShapes, flipTaps } from "./conv2d.ts";
import { matmul } from "./matmul.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";

export interface WinogradVariant extends Variant {
  workgroupSize: number;
}

export const winogradOp = defineOp<WinogradVariant>("winograd", "F(2x2, 3x3) convolution transforms, CNHW");
winogradOp.register({
  name: "default",
  file: "wgsl/winograd.wgsl",
  code: await wgsl("winograd.wgsl"),
  workgroupSize: 64,
});

/** Whether the Winograd convolution computes this one: 3x3, stride 1, pad 1, H even, W a multiple of 8. */
export function winogradApplies(s: Omit<ConvShapes, "O">, g: ConvGeom): boolean {
  return g.kh === 3 && g.kw === 3 && g.stride === 1 && g.pad === 1 && s.H % 2 === 0 && s.W % 8 === 0;
}

/**
 * Whether a training step should take it: where it applies and the 16 GEMMs' inner size, the input channels, is
 * long enough (a first conv's 3 channels ran 2.5x slower than im2col + GEMM, 8 broke even: kernels/README.md).
 */
export const winogradWins = (s: Omit<ConvShapes, "O">, g: ConvGeom): boolean => s.C >= 16 && winogradApplies(s, g);

interface Dims {
  R: number;
  S: number;
  N: number;
  H: number;
  W: number;
}

function run(rt: Runtime, entry: string, src: Tensor, dst: Tensor, d: Dims, workgroups: [number, number]): Tensor {
  const v = winogradOp.active;
  rt.dispatch({
    label: `winograd.${entry}/${v.name}`,
    code: v.code,
    entryPoint: entry,
    constants: { WG: v.workgroupSize },
    buffers: { src, src4: src, dst, dst4: dst },
    uniforms: { ...d },
    workgroups: [...workgroups, 1],
  });
  return dst;
}

/** Dispatch an entry over the tile groups (x) of `rows` channels (y). */
const overTiles = (rt: Runtime, entry: string, src: Tensor, dst: Tensor, d: Dims, rows: number) =>
  run(rt, entry, src, dst, d, [Math.ceil((d.N * d.H * d.W) / 16 / winogradOp.active.workgroupSize), rows]);

/** U[16, R, S] = G w Gᵀ for w[R, S*9]. */
function weights(rt: Runtime, w: Tensor, R: number, S: number): Tensor {
  const d = { R, S, N: 0, H: 0, W: 0 };
  return run(rt, "weights", w, rt.empty([16, R, S]), d, grid1d(R * S, winogradOp.active.workgroupSize));
}

const GEOM: ConvGeom = { kh: 3, kw: 3, stride: 1, pad: 1 };

function dims4(x: Tensor, what: string): [number, number, number, number] {
  const [C, N, H, W] = x.shape;
  if (x.shape.length !== 4 || !winogradApplies({ C, N, H, W }, GEOM)) {
    throw new Error(`winograd ${what}: [${x.shape}] is not [C, N, H, W] with H even and W a multiple of 8`);
  }
  return [C, N, H, W];
}

/** V[16, S, T] = Bᵀ d B for the tiles of x[S, N, H, W]. */
function transformInput(rt: Runtime, x: Tensor): Tensor {
  const [S, N, H, W] = dims4(x, "input");
  return overTiles(rt, "input", x, rt.empty([16, S, (N * H * W) / 4]), { R: 0, S, N, H, W }, S);
}

/** y[R, N, H, W] = the convolution of x[S, N, H, W] with w[R, S*9], from V = transformInput(x): Aᵀ [U · V] A. */
function convolve(rt: Runtime, v: Tensor, w: Tensor, R: number, [S, N, H, W]: readonly number[]): Tensor {
  const d = { R, S, N, H, W };
  const u = weights(rt, w, R, S);
  const m = matmul(rt, u, v); // [16, R, T]
  u.release();
  const y = overTiles(rt, "output", m, rt.empty([R, N, H, W]), d, R);
  m.release();
  return y;
}

/**
 * y[O, N, H, W] = conv3x3(x[C, N, H, W], w[O, C*9]), pad 1, no bias. With `keep`, also the transformed input V
 * that `winogradBackward` reads (the caller releases it).
 */
export function winogradForward(rt: Runtime, x: Tensor, w: Tensor, keep = false): { y: Tensor; v?: Tensor } {
  const [C] = dims4(x, "forward");
  const O = w.shape[0];
  if (w.size !== O * C * 9) throw new Error(`winograd forward: weight [${w.shape}] is not [O, ${C}*9]`);
  const v = transformInput(rt, x);
  const y = convolve(rt, v, w, O, x.shape);
  if (keep) return { y, v };
  v.release();
  return { y };
}

/** dw[O, C*9] and (with needDx) dx[C, N, H, W] of winogradForward, from its V[16, C, T] and dy[O, N, H, W]. */
export function winogradBackward(
  rt: Runtime,
  v: Tensor,
  w: Tensor,
  dy: Tensor,
  needDx = true,
): { dw: Tensor; dx?: Tensor } {
  const [O, N, H, W] = dims4(dy, "backward");
  const C = v.shape[1];
  const T = (N * H * W) / 4;
  if (v.shape.length !== 3 || v.shape[0] !== 16 || v.shape[2] !== T || w.size !== O * C * 9) {
    throw new Error(`winograd backward: V [${v.shape}], w [${w.shape}] and dy [${dy.shape}] do not match`);
  }
  const d = { R: O, S: C, N, H, W };
  const dm = overTiles(rt, "output_grad", dy, rt.empty([16, O, T]), d, O);
  const du = matmul(rt, dm, v, { transB: true }); // [16, O, C]
  dm.release();
  const dw = run(rt, "weight_grad", du, rt.empty([O, C * 9]), d, grid1d(O * C, winogradOp.active.workgroupSize));
  du.release();
  if (!needDx) return { dw };
  const wf = flipTaps(rt, w.reshape([O, C * 9]), C, GEOM);
  const vdy = transformInput(rt, dy);
  const dx = convolve(rt, vdy, wf, C, dy.shape);
  [wf, vdy].forEach((t) => t.release());
  return { dw, dx };
}
