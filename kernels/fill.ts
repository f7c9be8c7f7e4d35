// Fill a tensor with one value. Binding contract: out (read_write, 32-bit words); uniform { n, bits }.
import { type DType, type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";

export interface FillVariant extends Variant {
  workgroupSize: number;
}

export const fillOp = defineOp<FillVariant>("fill", "set every element to one value");
fillOp.register({ name: "default", file: "wgsl/fill.wgsl", code: await wgsl("fill.wgsl"), workgroupSize: 256 });

/** The 32-bit pattern of `value` in `dtype`. */
export function bitsOf(value: number, dtype: DType): number {
  const w = new DataView(new ArrayBuffer(4));
  if (dtype === "f32") w.setFloat32(0, value, true);
  else if (dtype === "i32") w.setInt32(0, value, true);
  else w.setUint32(0, value, true);
  return w.getUint32(0, true);
}

/** Fill `out` in place (and return it). */
export function fill<T extends Tensor>(rt: Runtime, out: T, value: number): T {
  const v = fillOp.active;
  rt.dispatch({
    label: `fill/${v.name}`,
    code: v.code,
    constants: { WG: v.workgroupSize },
    buffers: { out },
    uniforms: { n: out.size, bits: bitsOf(value, out.dtype) },
    workgroups: grid1d(out.size, v.workgroupSize),
  });
  return out;
}

export function full<D extends DType = "f32">(
  rt: Runtime,
  shape: readonly number[],
  value: number,
  dtype: D = "f32" as D,
): Tensor<D> {
  return fill(rt, rt.empty(shape, dtype), value);
}
