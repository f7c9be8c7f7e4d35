// Matrix-vector products on a row-major [rows, cols] matrix (a chunk of a larger one is fine):
//   gemv(rt, M, x)                 y = M x         (one output per row)
//   gemv(rt, M, x, {trans: true})  y = M^T x       (two passes: partial sums over blocks of rows, then a sum)
// Options: offsets into x and the output, and beta (y = M x + beta y, y read only when beta != 0), so a
// row-chunked matrix writes or accumulates into one long vector.
// Binding contract: M, x (read), y (read_write), partial (read_write, transposed case), uniform
// { rows, cols, x_offset, y_offset, beta, row_blocks }; overrides WG, RB; entry points rows_wg,
// rows_thread, cols_partial, cols_sum.
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";

export interface GemvVariant extends Variant {
  workgroupSize: number;
  /** Shader with the vec4 entry rows_thread4 (cols % 4 == 0 and x offset % 4 == 0), and its workgroup size. */
  code4?: string;
  workgroupSize4?: number;
  /** Row block of the transposed product's first pass. */
  rowBlock: number;
  /** From this many columns, one workgroup per row beats one invocation per row. */
  cooperativeFrom: number;
}

export const gemvOp = defineOp<GemvVariant>("gemv", "y = M x and y = M^T x on [rows, cols] matrices");
// rows_thread4 (one invocation per row, vec4 loads) is the fastest entry on llvmpipe (kernels/README.md).
gemvOp.register({
  name: "default",
  file: "wgsl/gemv.wgsl",
  code: await wgsl("gemv.wgsl"),
  workgroupSize: 64,
  rowBlock: 256,
  cooperativeFrom: 64,
  code4: await wgsl("gemv_vec4.wgsl"),
  workgroupSize4: 256,
});

export interface GemvOptions {
  trans?: boolean;
  /** Output tensor (default: a fresh one of the product's length). */
  out?: Tensor;
  /** First element of x to use. */
  xOffset?: number;
  /** First element of out to write. */
  outOffset?: number;
  /** out = M x + beta * out. */
  beta?: number;
  /** Force an entry point (tests, benchmarks). */
  entry?: "rows_wg" | "rows_thread" | "rows_thread4";
}

export function gemv(rt: Runtime, M: Tensor, x: Tensor, opts: GemvOptions = {}): Tensor {
  if (M.shape.length !== 2) throw new Error(`gemv: M must be 2-D, got [${M.shape}]`);
  const [rows, cols] = M.shape;
  const inLen = opts.trans ? rows : cols;
  const outLen = opts.trans ? cols : rows;
  const xOffset = opts.xOffset ?? 0;
  const outOffset = opts.outOffset ?? 0;
  if (x.size < xOffset + inLen) throw new Error(`gemv: x has ${x.size} elements, needs ${xOffset + inLen}`);
  const out = opts.out ?? rt.empty([outOffset + outLen], "f32");
  if (out.size < outOffset + outLen) throw new Error(`gemv: out has ${out.size} elements, needs ${outOffset + outLen}`);
  const v = gemvOp.active;
  const beta = opts.beta ?? 0;
  if (!opts.trans) {
    const vec4 = v.code4 !== undefined && cols % 4 === 0 && xOffset % 4 === 0;
    const entry = opts.entry ?? (vec4 ? "rows_thread4" : cols >= v.cooperativeFrom ? "rows_wg" : "rows_thread");
    if (entry === "rows_thread4") {
      if (!vec4) {
        throw new Error(`gemv: rows_thread4 needs cols and xOffset divisible by 4 (cols ${cols}, xOffset ${xOffset})`);
      }
      const wg = v.workgroupSize4 ?? v.workgroupSize;
      rt.dispatch({
        label: `gemv.rows_thread4/${v.name}`,
        code: v.code4!,
        entryPoint: entry,
        constants: { WG: wg },
        buffers: { M, x, y: out },
        uniforms: { rows, cols, x_offset: xOffset, y_offset: outOffset, beta, row_blocks: 0 },
        workgroups: grid1d(rows, wg),
      });
      return out;
    }
    rt.dispatch({
      label: `gemv.${entry}/${v.name}`,
      code: v.code,
      entryPoint: entry,
      constants: { WG: v.workgroupSize },
      buffers: { M, x, y: out },
      uniforms: { rows, cols, x_offset: xOffset, y_offset: outOffset, beta, row_blocks: 0 },
      workgroups: entry === "rows_wg" ? grid1d(rows, 1) : grid1d(rows, v.workgroupSize),
    });
    return out;
  }
  const blocks = Math.max(1, Math.ceil(rows / v.rowBlock));
  const partial = rt.empty([blocks, cols], "f32");
  const uniforms = { rows, cols, x_offset: xOffset, y_offset: outOffset, beta, row_blocks: blocks };
  rt.dispatch({
    label: `gemv.cols_partial/${v.name}`,
    code: v.code,
    entryPoint: "cols_partial",
    constants: { WG: v.workgroupSize, RB: v.rowBlock },
    buffers: { M, x, partial },
    uniforms,
    workgroups: [Math.ceil(cols / v.workgroupSize), blocks],
  });
  rt.dispatch({
    label: `gemv.cols_sum/${v.name}`,
    code: v.code,
    entryPoint: "cols_sum",
    constants: { WG: v.workgroupSize, RB: v.rowBlock },
    buffers: { partial, y: out },
    uniforms,
    workgroups: [Math.ceil(cols / v.workgroupSize)],
  });
  partial.release();
  return out;
}

/** CPU twin in float64: y = M x or M^T x for a row-major [rows, cols] M. */
export function gemvRef(
  M: ArrayLike<number>,
  rows: number,
  cols: number,
  x: ArrayLike<number>,
  trans = false,
): Float64Array {
  const y = new Float64Array(trans ? cols : rows);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      if (trans) y[j] += M[i * cols + j] * x[i];
      else y[i] += M[i * cols + j] * x[j];
    }
  }
  return y;
}
