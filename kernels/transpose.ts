// Batched transpose of the last two axes. Binding contract: x (read), out (read_write) as 32-bit words;
// uniform { rows, cols }; entry `main` with workgroup 16x16, one workgroup per 16x16 tile, z = batch.
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { defineOp, type Variant } from "./registry.ts";

export const transposeOp = defineOp<Variant>("transpose", "swap the last two axes (batched)");
transposeOp.register({ name: "default", file: "wgsl/transpose.wgsl", code: await wgsl("transpose.wgsl") });

export function transpose<T extends Tensor>(rt: Runtime, x: T): T {
  if (x.shape.length < 2) throw new Error(`transpose needs at least 2 axes, got [${x.shape}]`);
  const v = transposeOp.active;
  const rows = x.shape[x.shape.length - 2];
  const cols = x.shape[x.shape.length - 1];
  const batch = x.size / (rows * cols || 1);
  const out = rt.empty([...x.shape.slice(0, -2), cols, rows], x.dtype);
  rt.dispatch({
    label: `transpose/${v.name}`,
    code: v.code,
    buffers: { x, out },
    uniforms: { rows, cols },
    workgroups: [Math.ceil(cols / 16), Math.ceil(rows / 16), batch],
  });
  return out as T;
}

export function transposeRef(x: ArrayLike<number>, batch: number, rows: number, cols: number): Float64Array {
  const out = new Float64Array(batch * rows * cols);
  for (let b = 0; b < batch; b++) {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) out[b * rows * cols + c * rows + r] = x[b * rows * cols + r * cols + c];
    }
  }
  return out;
}
