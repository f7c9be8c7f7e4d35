// Softmax and log-softmax along the last axis. Binding contract: x (read), out (read_write) f32;
// uniform { rows, cols }; overrides WG (power of two) and LOG; entry `main`, one workgroup per row.
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";

export interface SoftmaxVariant extends Variant {
  workgroupSize: number;
}

export const softmaxOp = defineOp<SoftmaxVariant>("softmax", "softmax and log-softmax along the last axis");
softmaxOp.register({ name: "default", file: "wgsl/softmax.wgsl", code: await wgsl("softmax.wgsl"), workgroupSize: 64 });

function run(rt: Runtime, x: Tensor, log: boolean): Tensor {
  const v = softmaxOp.active;
  const cols = x.shape[x.shape.length - 1];
  const rows = x.size / cols;
  const out = rt.empty(x.shape, "f32");
  rt.dispatch({
    label: `${log ? "log_softmax" : "softmax"}/${v.name}`,
    code: v.code,
    constants: { WG: v.workgroupSize, LOG: log ? 1 : 0 },
    buffers: { x, out },
    uniforms: { rows, cols },
    workgroups: grid1d(rows, 1),
  });
  return out;
}

export const softmax = (rt: Runtime, x: Tensor) => run(rt, x, false);
export const logSoftmax = (rt: Runtime, x: Tensor) => run(rt, x, true);

export function softmaxRef(x: ArrayLike<number>, cols: number, log = false): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / cols; r++) {
    let m = -Infinity;
    for (let j = 0; j < cols; j++) m = Math.max(m, x[r * cols + j]);
    let s = 0;
    for (let j = 0; j < cols; j++) s += Math.exp(x[r * cols + j] - m);
    for (let j = 0; j < cols; j++) {
      const z = x[r * cols + j] - m;
      out[r * cols + j] = log ? z - Math.log(s) : Math.exp(z) / s;
    }
  }
  return out;
}
