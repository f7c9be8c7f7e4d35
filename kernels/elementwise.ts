// Elementwise ops: add, mul, axpy, scale, relu, relu_grad. Binding contract of a variant's shader:
// a, b (read), out (read_write) f32 arrays; uniform { n: u32, b_len: u32, alpha: f32 }; override WG;
// one entry point per op name. `b` broadcasts by index modulo b_len.
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";

export interface ElementwiseVariant extends Variant {
  workgroupSize: number;
}

export const elementwiseOp = defineOp<ElementwiseVariant>("elementwise", "add, mul, axpy, scale, relu, relu_grad");
elementwiseOp.register({
  name: "default",
  file: "wgsl/elementwise.wgsl",
  code: await wgsl("elementwise.wgsl"),
  workgroupSize: 256,
});

export type BinaryOp = "add" | "mul";
export type UnaryOp = "scale" | "relu";

function run(rt: Runtime, entry: string, a: Tensor, b: Tensor | undefined, alpha: number, out?: Tensor): Tensor {
  const v = elementwiseOp.active;
  const n = a.size;
  const bLen = b ? b.size : 1;
  if (b && (bLen === 0 || n % bLen !== 0)) {
    throw new Error(`${entry}: b has ${bLen} elements, which does not divide a's ${n} (shape [${a.shape}])`);
  }
  const o = out ?? rt.empty(a.shape, "f32");
  if (o.size !== n) throw new Error(`${entry}: out has ${o.size} elements, expected ${n}`);
  rt.dispatch({
    label: `elementwise.${entry}/${v.name}`,
    code: v.code,
    entryPoint: entry,
    constants: { WG: v.workgroupSize },
    buffers: { a, b: b ?? a, out: o },
    uniforms: { n, b_len: bLen, alpha },
    workgroups: grid1d(n, v.workgroupSize),
  });
  return o;
}

/** a + b, with b broadcast when its size divides a's (a bias row added to every row). */
export const add = (rt: Runtime, a: Tensor, b: Tensor, out?: Tensor) => run(rt, "add", a, b, 0, out);
/** a * b, with the same broadcasting as add. */
export const mul = (rt: Runtime, a: Tensor, b: Tensor, out?: Tensor) => run(rt, "mul", a, b, 0, out);
/** alpha * a + b. `out` may be b itself (in-place update, e.g. an SGD step). */
export function axpy(rt: Runtime, alpha: number, a: Tensor, b: Tensor, out?: Tensor): Tensor {
  if (out && out.buffer === b.buffer) {
    if (b.size !== a.size) throw new Error(`axpy in place: a has ${a.size} elements, b ${b.size}`);
    return run(rt, "axpy_inplace", a, undefined, alpha, out);
  }
  return run(rt, "axpy", a, b, alpha, out);
}
export const scale = (rt: Runtime, a: Tensor, alpha: number, out?: Tensor) =>
  run(rt, "scale", a, undefined, alpha, out);
export const relu = (rt: Runtime, a: Tensor, out?: Tensor) => run(rt, "relu", a, undefined, 0, out);
/** Upstream gradient `grad` passed where the relu's input `x` was positive. */
export function reluGrad(rt: Runtime, grad: Tensor, x: Tensor, out?: Tensor): Tensor {
  if (grad.size !== x.size) throw new Error(`relu_grad: grad has ${grad.size} elements, x has ${x.size}`);
  return run(rt, "relu_grad", grad, x, 0, out);
}

// ---------------------------------------------------------------- CPU twins (float64)

type Arr = ArrayLike<number>;
const bcast = (a: Arr, b: Arr, f: (x: number, y: number) => number) =>
  Float64Array.from(a, (x, i) => f(x, b[i % b.length]));
export const addRef = (a: Arr, b: Arr) => bcast(a, b, (x, y) => x + y);
export const mulRef = (a: Arr, b: Arr) => bcast(a, b, (x, y) => x * y);
export const axpyRef = (alpha: number, a: Arr, b: Arr) => bcast(a, b, (x, y) => alpha * x + y);
export const scaleRef = (a: Arr, alpha: number) => Float64Array.from(a, (x) => alpha * x);
export const reluRef = (a: Arr) => Float64Array.from(a, (x) => Math.max(x, 0));
export const reluGradRef = (grad: Arr, x: Arr) => Float64Array.from(grad, (g, i) => (x[i] > 0 ? g : 0));
