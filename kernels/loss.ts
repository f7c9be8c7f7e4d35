// Softmax cross-entropy (with optional label smoothing) and the margin output function, on class-major
// logits [K, B]. Both return per-example values and d(value * gradScale)/dlogits.
// Binding contract: logits (read f32), labels (read u32), value, dlogits, correct (read_write f32);
// uniform { B, eps, grad_scale, offset }; entries `cross_entropy` and `margin`; overrides WG and K (classes).
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { defineOp, type Variant } from "./registry.ts";

export const lossOp = defineOp<Variant>("loss", "softmax cross-entropy (label smoothing) and margin, with gradients");
lossOp.register({ name: "default", file: "wgsl/loss.wgsl", code: await wgsl("loss.wgsl") });

export interface LossOptions {
  /** Label smoothing for cross-entropy. */
  eps?: number;
  /** Multiplies dlogits (1/B gives the gradient of the mean loss). */
  gradScale?: number;
  /** Write values and correctness into these buffers at `offset` instead of new [B] tensors. */
  into?: { value: Tensor; correct: Tensor; offset: number };
}

export interface LossResult {
  value: Tensor;
  dlogits: Tensor;
  /** 1 where the argmax of the logits is the label, else 0. */
  correct: Tensor;
}

function run(
  rt: Runtime,
  entry: "cross_entropy" | "margin",
  logits: Tensor,
  labels: Tensor,
  o: LossOptions,
): LossResult {
  if (logits.shape.length !== 2) throw new Error(`${entry}: logits must be [classes, batch], got [${logits.shape}]`);
  const [K, B] = logits.shape;
  if (labels.size !== B || labels.dtype !== "u32") {
    throw new Error(`${entry}: labels must be u32 [${B}], got ${labels.dtype} [${labels.shape}]`);
  }
  const value = o.into?.value ?? rt.empty([B]);
  const correct = o.into?.correct ?? rt.empty([B]);
  const offset = o.into?.offset ?? 0;
  if (offset + B > value.size || offset + B > correct.size) {
    throw new Error(`${entry}: ${B} values at offset ${offset} overflow a buffer of ${value.size}`);
  }
  const dlogits = rt.empty([K, B]);
  const v = lossOp.active;
  rt.dispatch({
    label: `loss.${entry}/${v.name}`,
    code: v.code,
    entryPoint: entry,
    constants: { WG: 64, K },
    buffers: { logits, labels, value, dlogits, correct },
    uniforms: { B, eps: o.eps ?? 0, grad_scale: o.gradScale ?? 1, offset },
    workgroups: [Math.ceil(B / 64)],
  });
  return { value, dlogits, correct };
}

export const crossEntropy = (rt: Runtime, logits: Tensor, labels: Tensor, o: LossOptions = {}) =>
  run(rt, "cross_entropy", logits, labels, o);
export const margin = (rt: Runtime, logits: Tensor, labels: Tensor, o: LossOptions = {}) =>
  run(rt, "margin", logits, labels, o);

// ---------------------------------------------------------------- CPU twins (float64)

function column(logits: ArrayLike<number>, K: number, B: number, i: number): number[] {
  return Array.from({ length: K }, (_, c) => logits[c * B + i]);
}
const logSumExp = (z: number[]) => {
  const m = Math.max(...z);
  return m + Math.log(z.reduce((s, x) => s + Math.exp(x - m), 0));
};

export function crossEntropyRef(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  K: number,
  B: number,
  eps = 0,
  gradScale = 1,
) {
  const value = new Float64Array(B);
  const dlogits = new Float64Array(K * B);
  for (let i = 0; i < B; i++) {
    const z = column(logits, K, B, i);
    const lse = logSumExp(z);
    for (let c = 0; c < K; c++) {
      const q = (c === labels[i] ? 1 - eps : 0) + eps / K;
      value[i] -= q * (z[c] - lse);
      dlogits[c * B + i] = (Math.exp(z[c] - lse) - q) * gradScale;
    }
  }
  return { value, dlogits };
}

export function marginRef(logits: ArrayLike<number>, labels: ArrayLike<number>, K: number, B: number, gradScale = 1) {
  const value = new Float64Array(B);
  const dlogits = new Float64Array(K * B);
  for (let i = 0; i < B; i++) {
    const z = column(logits, K, B, i);
    const others = z.filter((_, c) => c !== labels[i]);
    const lse = logSumExp(others);
    value[i] = z[labels[i]] - lse;
    for (let c = 0; c < K; c++) dlogits[c * B + i] = (c === labels[i] ? 1 : -Math.exp(z[c] - lse)) * gradScale;
  }
  return { value, dlogits };
}
