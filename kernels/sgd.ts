// SGD step, in place on a parameter and its velocity. Binding contract: param, velocity (read_write),
// grad (read) f32; uniform { n, lr, momentum, weight_decay, nesterov }; override WG.
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";

export const sgdOp = defineOp<Variant>("sgd", "SGD with momentum, Nesterov and weight decay (in place)");
sgdOp.register({ name: "default", file: "wgsl/sgd.wgsl", code: await wgsl("sgd.wgsl") });

export interface SgdHyper {
  lr: number;
  momentum: number;
  weightDecay: number;
  nesterov: boolean;
}

export function sgdStep(rt: Runtime, param: Tensor, grad: Tensor, velocity: Tensor, h: SgdHyper): void {
  if (grad.size !== param.size || velocity.size !== param.size) {
    throw new Error(`sgd: param ${param.size}, grad ${grad.size} and velocity ${velocity.size} sizes differ`);
  }
  const v = sgdOp.active;
  rt.dispatch({
    label: `sgd/${v.name}`,
    code: v.code,
    constants: { WG: 256 },
    buffers: { param, grad, velocity },
    uniforms: { n: param.size, lr: h.lr, momentum: h.momentum, weight_decay: h.weightDecay, nesterov: +h.nesterov },
    workgroups: grid1d(param.size, 256),
  });
}

/** CPU twin: updates p and v in place (float64 arrays). */
export function sgdStepRef(p: Float64Array, g: ArrayLike<number>, v: Float64Array, h: SgdHyper): void {
  for (let i = 0; i < p.length; i++) {
    const gi = g[i] + h.weightDecay * p[i];
    v[i] = h.momentum * v[i] + gi;
    p[i] -= h.lr * (h.nesterov ? gi + h.momentum * v[i] : v[i]);
  }
}
