// Reductions along one axis: sum, max, argmax. Binding contract: x (read, f32), out (read_write, u32 words),
// uniform { outer, len, inner }; overrides OP (0 sum, 1 max, 2 argmax) and WG; entry points `per_thread`
// (one invocation per output) and `per_workgroup` (one workgroup per output, for long axes).
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";

export interface ReduceVariant extends Variant {
  workgroupSize: number;
  /** Axis length from which one workgroup per output beats one invocation per output. */
  cooperativeFrom: number;
}

export const reduceOp = defineOp<ReduceVariant>("reduce", "sum, max, argmax along an axis");
reduceOp.register({
  name: "default",
  file: "wgsl/reduce.wgsl",
  code: await wgsl("reduce.wgsl"),
  workgroupSize: 64,
  cooperativeFrom: 512,
});

export type ReduceKind = "sum" | "max" | "argmax";
const OP_CODE: Record<ReduceKind, number> = { sum: 0, max: 1, argmax: 2 };

/** View `shape` as [outer, len, inner] around `axis` (negative counts from the end). */
export function splitAxis(
  shape: readonly number[],
  axis: number,
): { outer: number; len: number; inner: number; outShape: number[] } {
  const ax = axis < 0 ? shape.length + axis : axis;
  if (ax < 0 || ax >= shape.length) throw new Error(`axis ${axis} is out of range for shape [${shape}]`);
  const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
  return {
    outer: prod(shape.slice(0, ax)),
    len: shape[ax],
    inner: prod(shape.slice(ax + 1)),
    outShape: shape.filter((_, i) => i !== ax),
  };
}

export function reduce(rt: Runtime, kind: ReduceKind, x: Tensor, axis: number): Tensor {
  const { outer, len, inner, outShape } = splitAxis(x.shape, axis);
  if (len === 0) throw new Error(`${kind}: cannot reduce an empty axis`);
  const v = reduceOp.active;
  const out = rt.empty(outShape, kind === "argmax" ? "u32" : "f32");
  const outputs = outer * inner;
  const cooperative = len >= v.cooperativeFrom;
  rt.dispatch({
    label: `reduce.${kind}/${v.name}`,
    code: v.code,
    entryPoint: cooperative ? "per_workgroup" : "per_thread",
    constants: { OP: OP_CODE[kind], WG: v.workgroupSize },
    buffers: { x, out },
    uniforms: { outer, len, inner },
    workgroups: cooperative ? grid1d(outputs, 1) : grid1d(outputs, v.workgroupSize),
  });
  return out;
}

export const sum = (rt: Runtime, x: Tensor, axis: number) => reduce(rt, "sum", x, axis);
export const max = (rt: Runtime, x: Tensor, axis: number) => reduce(rt, "max", x, axis);
export const argmax = (rt: Runtime, x: Tensor, axis: number) => reduce(rt, "argmax", x, axis);

/** CPU twin in float64. */
export function reduceRef(
  kind: ReduceKind,
  x: ArrayLike<number>,
  shape: readonly number[],
  axis: number,
): Float64Array {
  const { outer, len, inner } = splitAxis(shape, axis);
  const out = new Float64Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let acc = kind === "sum" ? 0 : -Infinity;
      let best = 0;
      for (let j = 0; j < len; j++) {
        const v = x[(o * len + j) * inner + i];
        if (kind === "sum") acc += v;
        else if (v > acc) {
          acc = v;
          best = j;
        }
      }
      out[o * inner + i] = kind === "argmax" ? best : acc;
    }
  }
  return out;
}
