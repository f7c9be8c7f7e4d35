// 2-D convolution on CNHW activations as one GEMM: Y[O, N*OH*OW] = W[O, C*KH*KW] · cols[C*KH*KW, N*OH*OW]
// (+ bias[O] per row), with OH = floor((H + 2 pad - KH) / stride) + 1 (likewise OW).
// Layout: x is [C, N, H, W] (channel-major, then batch), y is [O, N, OH, OW], w is [O, C*KH*KW] with
// columns ordered (c, ki, kj) (a PyTorch [O, C, KH, KW] weight, flattened, is the same memory).
// Binding contract of a variant's shader (wgsl/im2col.wgsl): x, dcols, bias (read); cols, dx, y
// (read_write) f32; uniform { C, N, H, W, OH, OW, rows, P }; overrides WG, KH, KW, STRIDE, PAD;
// entries `im2col` (y-grid = cols row, x-grid walks P = N*OH*OW; `im2col4` the same in vec4s of cols4, the
// cols buffer, when OW % 4 == 0), `im2col_t` (colsT[P, C*KH*KW], flat
// grid-stride x-grid; `rows` = C*KH*KW), `col2im` (y-grid = channel, x-grid walks
// N*H*W; a gather, every dx element written once; `col2im4` the same in vec4s of dcols4 and dx4, the dcols
// and dx buffers, at stride 1 when W % 4 == 0) and `add_row_bias` (in place on y, y-grid = row).
// A forward that is not handed cols skips them where it can: at stride 1, on rows of whole vec4s, when the GEMM
// would take the exact register-blocked kernel (the CPU adapter's), it runs `implicitConvShader`
// (matmul-codegen.ts), the same GEMM reading x in place of cols; in eval it can also apply the batch norm, relu and
// 2x2 max pool that follow (src/nn/layers.ts Sequential).
// Backward: dw = dy · colsᵀ (= dy · im2colT(x)), db = row sums of dy, dx = col2im(wᵀ · dy); the GEMMs
// are `matmul`, db is reduce's `sum`. Where the forward would run implicitly, dx at stride 1 is the forward of dy
// with the weights' channels swapped and taps mirrored (`flipTaps`, entry `flip_taps`). Temporaries (cols, colsT,
// dcols) are released before returning.
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { chooseKernel, implicitConvCode, matmul, matmulProblem, type MatmulTile, splitKWins } from "./matmul.ts";
import { full } from "./fill.ts";
import { blockCopy } from "./project.ts";
import { sum } from "./reduce.ts";
import { defineOp, type Variant } from "./registry.ts";

export interface Conv2dVariant extends Variant {
  workgroupSize: number;
  /** Elements of a row each invocation walks (grid-stride): sizes the x-grid. */
  itemsPerInvocation: number;
}

export const conv2dOp = defineOp<Conv2dVariant>("conv2d", "im2col, col2im and per-row bias add for CNHW convolution");
conv2dOp.register({
  name: "default",
  file: "wgsl/im2col.wgsl",
  code: await wgsl("im2col.wgsl"),
  workgroupSize: 256,
  itemsPerInvocation: 16,
});

export interface ConvGeom {
  kh: number;
  kw: number;
  stride: number;
  pad: number;
}

export interface ConvShapes {
  C: number;
  N: number;
  H: number;
  W: number;
  O: number;
}

/** Output height and width; throws when the kernel does not fit the padded input. */
export function convOutSize(H: number, W: number, g: ConvGeom): { OH: number; OW: number } {
  for (const [k, v] of Object.entries(g)) {
    if (!Number.isInteger(v) || v < (k === "pad" ? 0 : 1)) throw new Error(`conv2d: bad geometry ${k}=${v}`);
  }
  const OH = Math.floor((H + 2 * g.pad - g.kh) / g.stride) + 1;
  const OW = Math.floor((W + 2 * g.pad - g.kw) / g.stride) + 1;
  if (OH < 1 || OW < 1) {
    throw new Error(`conv2d: a ${g.kh}x${g.kw} kernel does not fit a ${H}x${W} input with pad ${g.pad}`);
  }
  return { OH, OW };
}

function dims4(t: { shape: readonly number[] }, what: string): [number, number, number, number] {
  if (t.shape.length !== 4) throw new Error(`${what}: expected [C, N, H, W], got [${t.shape}]`);
  return t.shape as [number, number, number, number];
}

/** Grid for a kernel whose y (folded into z past 65535) is a row and whose x walks a row of length P. */
function rowGrid(rows: number, P: number, v: Conv2dVariant): [number, number, number] {
  const x = Math.max(1, Math.min(Math.ceil(P / (v.workgroupSize * v.itemsPerInvocation)), 65535));
  return rows <= 65535 ? [x, rows, 1] : [x, 65535, Math.ceil(rows / 65535)];
}

const geomConstants = (g: ConvGeom, wg: number) => ({ WG: wg, KH: g.kh, KW: g.kw, STRIDE: g.stride, PAD: g.pad });

/** cols[C*kh*kw, N*OH*OW] from x[C, N, H, W], zero padded. */
export function im2col(rt: Runtime, x: Tensor, g: ConvGeom): Tensor {
  const [C, N, H, W] = dims4(x, "im2col");
  const { OH, OW } = convOutSize(H, W, g);
  const v = conv2dOp.active;
  const rows = C * g.kh * g.kw;
  const P = N * OH * OW;
  const cols = rt.empty([rows, P], "f32");
  const vec4 = OW % 4 === 0; // rows of whole vec4s that never straddle an output row
  rt.dispatch({
    label: `conv2d.im2col/${v.name}`,
    code: v.code,
    entryPoint: vec4 ? "im2col4" : "im2col",
    constants: geomConstants(g, v.workgroupSize),
    buffers: { x, x4: x, cols, cols4: cols },
    uniforms: { C, N, H, W, OH, OW, rows, P },
    workgroups: rowGrid(rows, vec4 ? P / 4 : P, v),
  });
  return cols;
}

/** colsT[N*OH*OW, C*kh*kw], the transpose of im2col(x), written directly. */
export function im2colT(rt: Runtime, x: Tensor, g: ConvGeom): Tensor {
  const [C, N, H, W] = dims4(x, "im2colT");
  const { OH, OW } = convOutSize(H, W, g);
  const v = conv2dOp.active;
  const rows = C * g.kh * g.kw;
  const P = N * OH * OW;
  const colsT = rt.empty([P, rows], "f32");
  const groups = Math.max(1, Math.min(Math.ceil((rows * P) / (v.workgroupSize * v.itemsPerInvocation)), 65535));
  rt.dispatch({
    label: `conv2d.im2col_t/${v.name}`,
    code: v.code,
    entryPoint: "im2col_t",
    constants: geomConstants(g, v.workgroupSize),
    buffers: { x, cols: colsT },
    uniforms: { C, N, H, W, OH, OW, rows, P },
    workgroups: [groups, 1, 1],
  });
  return colsT;
}

/** The adjoint of im2col: dx[C, N, H, W] where each element sums the dcols entries that read it. */
export function col2im(rt: Runtime, dcols: Tensor, xShape: readonly number[], g: ConvGeom): Tensor {
  if (xShape.length !== 4) throw new Error(`col2im: expected xShape [C, N, H, W], got [${xShape}]`);
  const [C, N, H, W] = xShape;
  const { OH, OW } = convOutSize(H, W, g);
  const rows = C * g.kh * g.kw;
  if (dcols.size !== rows * N * OH * OW) {
    throw new Error(`col2im: dcols [${dcols.shape}] is not [${rows}, ${N * OH * OW}]`);
  }
  const v = conv2dOp.active;
  const dx = rt.empty([C, N, H, W], "f32");
  const P = N * H * W;
  const vec4 = g.stride === 1 && W % 4 === 0; // a tap's four neighbours along w read neighbours in dcols
  rt.dispatch({
    label: `conv2d.col2im/${v.name}`,
    code: v.code,
    entryPoint: vec4 ? "col2im4" : "col2im",
    constants: geomConstants(g, v.workgroupSize),
    buffers: { dcols, dcols4: dcols, dx, dx4: dx },
    uniforms: { C, N, H, W, OH, OW, rows: C, P },
    workgroups: rowGrid(C, vec4 ? P / 4 : P, v),
  });
  return dx;
}

/** y[o, :] += bias[o] in place, for y viewed as [O, P]. */
export function addRowBias(rt: Runtime, y: Tensor, bias: Tensor): Tensor {
  const O = y.shape[0];
  if (bias.size !== O) throw new Error(`add_row_bias: bias has ${bias.size} elements for ${O} rows`);
  const v = conv2dOp.active;
  const P = y.size / O;
  rt.dispatch({
    label: `conv2d.add_row_bias/${v.name}`,
    code: v.code,
    entryPoint: "add_row_bias",
    constants: { WG: v.workgroupSize },
    buffers: { bias, y },
    uniforms: { C: 0, N: 0, H: 0, W: 0, OH: 0, OW: 0, rows: O, P },
    workgroups: rowGrid(O, P, v),
  });
  return y;
}

function weightRows(w: Tensor, C: number, g: ConvGeom): { O: number; w2: Tensor } {
  const K = C * g.kh * g.kw;
  const O = w.shape[0];
  if (w.size !== O * K) throw new Error(`conv2d: weight [${w.shape}] is not [O, ${C}*${g.kh}*${g.kw}]`);
  return { O, w2: w.shape.length === 2 ? w : w.reshape([O, K]) };
}

/**
 * y[O, N, OH, OW] = conv(x[C, N, H, W], w[O, C*kh*kw]) + bias[O]. `opts.cols`: im2col(x), already computed
 * (the caller keeps it, e.g. for the backward); else it is computed and released here. `opts.bn`: an eval batch
 * norm applied to y in the same kernel (only where `implicitTile` gives a tile, and without bias); `opts.pool`: then a
 * 2x2 max pool too (where `poolFolds`), y [O, N, OH/2, OW/2].
 */
export function conv2dForward(
  rt: Runtime,
  x: Tensor,
  w: Tensor,
  bias: Tensor | undefined,
  g: ConvGeom,
  opts: { cols?: Tensor; bn?: FoldedBatchNorm; pool?: boolean } = {},
): Tensor {
  const [C, N, H, W] = dims4(x, "conv2d");
  const { OH, OW } = convOutSize(H, W, g);
  const { O, w2 } = weightRows(w, C, g);
  const K = w2.shape[1];
  const P = N * OH * OW;
  const implicit = !opts.cols && implicitTile({ C, N, H, W, O }, g);
  const bn = opts.bn;
  if (bn && (!implicit || bias)) {
    throw new Error("conv2d: a batch norm folds only into an implicit forward without bias");
  }
  const pool = !!opts.pool;
  if (pool && !(implicit && foldsPool(implicit, OH, OW))) throw new Error("conv2d: this forward cannot pool");
  let y: Tensor;
  if (implicit) {
    // The kernel reads W's rows as vec4s: pad them with zeros to a multiple of 4 (a first conv's C*9 = 27).
    const K4 = Math.ceil(K / 4) * 4;
    const wRows = K4 === K ? w2 : blockCopy(rt, w2, full(rt, [O, K4], 0), { rows: O, cols: K, sld: K, dld: K4 });
    y = rt.empty(pool ? [O, N, OH / 2, OW / 2] : [O, P], "f32");
    rt.dispatch({
      label: `conv2d.implicit${bn ? "+bn" : ""}${pool ? "+pool" : ""} ${O}x${K}x${P}`,
      code: implicitConvCode(JSON.stringify({ TM: implicit.TM, TV: implicit.TV, BN: bn ? 1 : 0, POOL: pool ? 1 : 0 })),
      constants: { WG_X: implicit.WG_X, KH: g.kh, KW: g.kw, PAD: g.pad, ...(bn && { RELU: bn.relu ? 1 : 0 }) },
      buffers: {
        A: wRows,
        X: x,
        C: y,
        ...(bn && { gamma: bn.gamma, beta: bn.beta, run_mean: bn.runningMean, run_var: bn.runningVar }),
      },
      uniforms: { M: O, N: P, K: K4, C, NB: N, H, W, OH, OW, KR: K, eps: bn?.eps ?? 0 },
      workgroups: [P / (4 * implicit.TV * implicit.WG_X), O / implicit.TM, 1],
    });
    if (wRows !== w2) wRows.release();
  } else {
    const cols = opts.cols ?? im2col(rt, x, g);
    if (cols.size !== K * P) throw new Error(`conv2d: cols [${cols.shape}] is not im2col(x)`);
    y = matmul(rt, w2, cols); // [O, N*OH*OW]
    if (!opts.cols) cols.release();
  }
  if (bias) addRowBias(rt, y, bias);
  return pool ? y : y.reshape([O, N, OH, OW]);
}

/** Whether an implicit tile can also take a 2x2 max pool (whole windows in one invocation, vec4 stores). */
const foldsPool = (t: MatmulTile, OH: number, OW: number) => t.TV % 4 === 0 && OH % 2 === 0 && OW % (2 * t.TV) === 0;

/** Whether conv2dForward can run a 2x2 max pool of its output in the same kernel (`opts.pool`). */
export function poolFolds(s: ConvShapes, g: ConvGeom): boolean {
  const tile = implicitTile(s, g);
  const { OH, OW } = convOutSize(s.H, s.W, g);
  return tile !== undefined && foldsPool(tile, OH, OW);
}

/** An eval batch norm on a convolution's output channels: y = gamma (y - mean) / sqrt(var + eps) + beta, then relu. */
export interface FoldedBatchNorm {
  gamma: Tensor;
  beta: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
  eps: number;
  relu: boolean;
}

/**
 * The register-blocked tile for a forward without an im2col buffer (matmul-codegen.ts implicitConvShader), or
 * undefined: only where the GEMM on cols (K padded to a multiple of 4) would take the exact regblock kernel (the CPU
 * adapter's choice; a GPU's tiled kernel keeps im2col), at stride 1 on rows of whole vec4s (W, OW multiples of 4).
 */
export function implicitTile(s: ConvShapes, g: ConvGeom): MatmulTile | undefined {
  const { OH, OW } = convOutSize(s.H, s.W, g);
  const K = Math.ceil((s.C * g.kh * g.kw) / 4) * 4;
  if (g.stride !== 1 || s.W % 4 !== 0 || OW % 4 !== 0) return undefined;
  const { variant, tile } = chooseKernel(matmulProblem([s.O, K], [K, s.N * OH * OW]));
  return variant.name === "regblock" ? tile : undefined;
}

/** Whether conv2dBackward's dw[O, K] reads cols[K, P] (split-K dy · colsᵀ) rather than im2colT. */
export const dwReadsCols = (O: number, K: number, P: number) => splitKWins(matmulProblem([O, P], [K, P], false, true));

export interface ConvGrads {
  dw: Tensor; // [O, C*kh*kw]
  db?: Tensor; // [O], unless needDb is false
  dx?: Tensor; // [C, N, H, W], when needDx
}

/**
 * Gradients of conv2dForward given dy[O, N, OH, OW]. Without `opts.cols` the im2col is recomputed: as cols
 * for split-K dw = dy · colsᵀ where that wins (few output channels: 1.3-1.6x faster small-CNN steps on
 * llvmpipe), else in transposed form (im2colT) so dw = dy · colsT is an NN GEMM. `cols` (im2col(x) from the
 * forward pass) may be passed instead; it is not released here. needDx and needDb (false: a conv without bias)
 * default to true.
 */
export function conv2dBackward(
  rt: Runtime,
  x: Tensor,
  w: Tensor,
  dy: Tensor,
  g: ConvGeom,
  opts: { needDx?: boolean; needDb?: boolean; cols?: Tensor } = {},
): ConvGrads {
  const [C, N, H, W] = dims4(x, "conv2d backward");
  const { OH, OW } = convOutSize(H, W, g);
  const { O, w2 } = weightRows(w, C, g);
  const P = N * OH * OW;
  if (dy.size !== O * P) throw new Error(`conv2d backward: dy [${dy.shape}] is not [${O}, ${N}, ${OH}, ${OW}]`);
  const dy2 = dy.reshape([O, P]);
  let dw: Tensor; // [O, C*kh*kw]
  if (opts.cols || dwReadsCols(O, w2.shape[1], P)) {
    // Few output channels against a long N*OH*OW: split-K spreads the long sum over workgroups, where an
    // NN GEMM on colsT has only a handful of output blocks to share out.
    const cols = opts.cols ?? im2col(rt, x, g);
    dw = matmul(rt, dy2, cols, { transB: true });
    if (!opts.cols) cols.release();
  } else {
    // Writing colsT directly makes dw a plain NN GEMM: no transposed copy of the large operand.
    const colsT = im2colT(rt, x, g);
    dw = matmul(rt, dy2, colsT);
    colsT.release();
  }
  const db = (opts.needDb ?? true) ? sum(rt, dy2, 1) : undefined;
  let dx: Tensor | undefined;
  if (opts.needDx ?? true) {
    const mirrored = dxAsForward({ C, N, H, W, O }, g);
    if (mirrored) {
      // At stride 1, dx is the forward of a convolution of dy: no dcols, no col2im.
      const wf = flipTaps(rt, w2, C, g);
      dx = conv2dForward(rt, dy, wf, undefined, mirrored);
      wf.release();
    } else {
      const dcols = matmul(rt, w2, dy2, { transA: true }); // [C*kh*kw, P]
      dx = col2im(rt, dcols, [C, N, H, W], g);
      dcols.release();
    }
  }
  return { dw, db, dx };
}

/**
 * The geometry of the convolution of dy (weights `flipTaps`) that gives dx, where conv2dBackward computes dx that way:
 * stride 1, square kernels, pad < kernel, and an implicit forward for it; else undefined (dcols and col2im).
 */
export function dxAsForward(s: ConvShapes, g: ConvGeom): ConvGeom | undefined {
  if (g.stride !== 1 || g.kh !== g.kw || g.pad > g.kh - 1) return undefined;
  const mirrored = { kh: g.kh, kw: g.kw, stride: 1, pad: g.kh - 1 - g.pad };
  const { OH, OW } = convOutSize(s.H, s.W, g);
  return implicitTile({ C: s.O, N: s.N, H: OH, W: OW, O: s.C }, mirrored) ? mirrored : undefined;
}

/** wf[C, O*kh*kw]: w[O, C*kh*kw] with input and output channels swapped and each kernel mirrored. */
export function flipTaps(rt: Runtime, w: Tensor, C: number, g: ConvGeom): Tensor {
  const O = w.shape[0];
  const taps = g.kh * g.kw;
  if (w.size !== O * C * taps) throw new Error(`flipTaps: weight [${w.shape}] is not [O, ${C}*${g.kh}*${g.kw}]`);
  const v = conv2dOp.active;
  const wf = rt.empty([C, O * taps], "f32");
  rt.dispatch({
    label: `conv2d.flip_taps/${v.name}`,
    code: v.code,
    entryPoint: "flip_taps",
    constants: geomConstants(g, v.workgroupSize),
    buffers: { x: w, cols: wf },
    uniforms: { C, N: 0, H: 0, W: 0, OH: 0, OW: 0, rows: O, P: 0 },
    workgroups: [Math.max(1, Math.min(Math.ceil(wf.size / v.workgroupSize), 65535)), 1, 1],
  });
  return wf;
}

// ---------------------------------------------------------------- CPU twins (float64), from the definition

type Arr = ArrayLike<number>;

export function im2colRef(x: Arr, s: Omit<ConvShapes, "O">, g: ConvGeom): Float64Array {
  const { C, N, H, W } = s;
  const { OH, OW } = convOutSize(H, W, g);
  const P = N * OH * OW;
  const out = new Float64Array(C * g.kh * g.kw * P);
  for (let c = 0; c < C; c++) {
    for (let ki = 0; ki < g.kh; ki++) {
      for (let kj = 0; kj < g.kw; kj++) {
        const row = (c * g.kh + ki) * g.kw + kj;
        for (let n = 0; n < N; n++) {
          for (let oh = 0; oh < OH; oh++) {
            for (let ow = 0; ow < OW; ow++) {
              const h = oh * g.stride + ki - g.pad;
              const w = ow * g.stride + kj - g.pad;
              const inside = h >= 0 && h < H && w >= 0 && w < W;
              out[row * P + (n * OH + oh) * OW + ow] = inside ? x[((c * N + n) * H + h) * W + w] : 0;
            }
          }
        }
      }
    }
  }
  return out;
}

export function flipTapsRef(w: Arr, O: number, C: number, g: ConvGeom): Float64Array {
  const taps = g.kh * g.kw;
  const wf = new Float64Array(C * O * taps);
  for (let o = 0; o < O; o++) {
    for (let c = 0; c < C; c++) {
      for (let a = 0; a < g.kh; a++) {
        for (let b = 0; b < g.kw; b++) {
          wf[(c * O + o) * taps + a * g.kw + b] = w[(o * C + c) * taps + (g.kh - 1 - a) * g.kw + (g.kw - 1 - b)];
        }
      }
    }
  }
  return wf;
}

/** The adjoint of im2colRef (a scatter-add, the opposite formulation to the GPU's gather). */
export function col2imRef(dcols: Arr, s: Omit<ConvShapes, "O">, g: ConvGeom): Float64Array {
  const { C, N, H, W } = s;
  const { OH, OW } = convOutSize(H, W, g);
  const P = N * OH * OW;
  const dx = new Float64Array(C * N * H * W);
  for (let c = 0; c < C; c++) {
    for (let ki = 0; ki < g.kh; ki++) {
      for (let kj = 0; kj < g.kw; kj++) {
        const row = (c * g.kh + ki) * g.kw + kj;
        for (let n = 0; n < N; n++) {
          for (let oh = 0; oh < OH; oh++) {
            for (let ow = 0; ow < OW; ow++) {
              const h = oh * g.stride + ki - g.pad;
              const w = ow * g.stride + kj - g.pad;
              if (h >= 0 && h < H && w >= 0 && w < W) {
                dx[((c * N + n) * H + h) * W + w] += dcols[row * P + (n * OH + oh) * OW + ow];
              }
            }
          }
        }
      }
    }
  }
  return dx;
}

/** y[o, n, oh, ow] = b[o] + sum_{c, ki, kj} w[o, c, ki, kj] x[c, n, oh*stride + ki - pad, ow*stride + kj - pad]. */
export function conv2dRef(x: Arr, w: Arr, b: Arr | undefined, s: ConvShapes, g: ConvGeom): Float64Array {
  const { C, N, H, W, O } = s;
  const { OH, OW } = convOutSize(H, W, g);
  const y = new Float64Array(O * N * OH * OW);
  for (let o = 0; o < O; o++) {
    for (let n = 0; n < N; n++) {
      for (let oh = 0; oh < OH; oh++) {
        for (let ow = 0; ow < OW; ow++) {
          let acc = b ? b[o] : 0;
          for (let c = 0; c < C; c++) {
            for (let ki = 0; ki < g.kh; ki++) {
              for (let kj = 0; kj < g.kw; kj++) {
                const h = oh * g.stride + ki - g.pad;
                const ww = ow * g.stride + kj - g.pad;
                if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
                acc += w[((o * C + c) * g.kh + ki) * g.kw + kj] * x[((c * N + n) * H + h) * W + ww];
              }
            }
          }
          y[((o * N + n) * OH + oh) * OW + ow] = acc;
        }
      }
    }
  }
  return y;
}

/** Gradients of conv2dRef with respect to x, w and b, given dy[O, N, OH, OW]. */
export function conv2dBackwardRef(
  x: Arr,
  w: Arr,
  dy: Arr,
  s: ConvShapes,
  g: ConvGeom,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const { C, N, H, W, O } = s;
  const { OH, OW } = convOutSize(H, W, g);
  const dx = new Float64Array(C * N * H * W);
  const dw = new Float64Array(O * C * g.kh * g.kw);
  const db = new Float64Array(O);
  for (let o = 0; o < O; o++) {
    for (let n = 0; n < N; n++) {
      for (let oh = 0; oh < OH; oh++) {
        for (let ow = 0; ow < OW; ow++) {
          const d = dy[((o * N + n) * OH + oh) * OW + ow];
          db[o] += d;
          for (let c = 0; c < C; c++) {
            for (let ki = 0; ki < g.kh; ki++) {
              for (let kj = 0; kj < g.kw; kj++) {
                const h = oh * g.stride + ki - g.pad;
                const ww = ow * g.stride + kj - g.pad;
                if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
                const wi = ((o * C + c) * g.kh + ki) * g.kw + kj;
                const xi = ((c * N + n) * H + h) * W + ww;
                dw[wi] += d * x[xi];
                dx[xi] += d * w[wi];
              }
            }
          }
        }
      }
    }
  }
  return { dx, dw, db };
}
