// Layers: each runs forward and backward with the WGSL kernels, and has a float64 CPU twin built from the
// kernels' twins. Activations are CNHW ([C, N, H, W]; features are [F, N]) so every conv and dense layer
// is one GEMM with the batch in the GEMM's long dimension.
//
// Ownership: forward returns a new tensor and, in training mode, retains what backward needs; backward
// returns the input gradient, writes each parameter's `grad`, and releases what forward kept.
import {
  addRowBias,
  col2im,
  conv2dBackward,
  conv2dBackwardRef,
  conv2dForward,
  conv2dRef,
  type ConvGeom,
  convOutSize,
  dwReadsCols,
  type FoldedBatchNorm,
  im2col,
  implicitTile,
  poolFolds,
} from "../../kernels/conv2d.ts";
import { fill } from "../../kernels/fill.ts";
import { axpy, relu, reluGrad, scale } from "../../kernels/elementwise.ts";
import { matmul, matmulRef } from "../../kernels/matmul.ts";
import { winogradBackward, winogradForward, winogradWins } from "../../kernels/winograd.ts";
import {
  globalAvgPool,
  globalAvgPoolBackward,
  globalAvgPoolBackwardRef,
  globalAvgPoolRef,
  globalMaxPool,
  globalMaxPoolBackward,
  globalMaxPoolBackwardRef,
  globalMaxPoolRef,
  maxPool2x2,
  maxPool2x2Backward,
  maxPool2x2BackwardRef,
  maxPool2x2Ref,
} from "../../kernels/pool.ts";
import {
  batchNormBackward,
  batchNormBackwardRef,
  batchNormEval,
  batchNormEvalRef,
  batchNormTrain,
  batchNormTrainRef,
  poolsFused,
} from "../../kernels/batchnorm.ts";
import { sum } from "../../kernels/reduce.ts";
import { transpose, transposeRef } from "../../kernels/transpose.ts";
import type { Runtime, Tensor } from "../gpu/runtime.ts";

export interface Param {
  name: string;
  shape: number[];
  /** Device value and, after backward, gradient. */
  value: Tensor;
  grad?: Tensor;
  /** Optimiser state. */
  velocity?: Tensor;
  /** CPU-twin value and gradient (float64), when the twin is in use. */
  host?: Float64Array;
  hostGrad?: Float64Array;
  /** Running statistics are state, not trained: no gradient, no weight decay. */
  trainable: boolean;
}

/** Host arrays for the CPU twin: a shape and float64 data. */
export interface HostTensor {
  shape: number[];
  data: Float64Array;
}

/**
 * train: batch statistics, keep what backward needs. eval: running statistics, keep nothing.
 * grad: eval numerics but keep what backward needs (per-example gradients for attribution).
 */
export type Mode = "train" | "eval" | "grad";

/**
 * Sees each weight layer's input and output gradient during backward (TRAK featurisation), and for a conv
 * the forward's im2col of its input when it was kept (it is released after the tap).
 */
export type Tap = (layer: Conv2d | Dense, input: Tensor, dy: Tensor, cols?: Tensor) => void;

export interface BackwardOptions {
  needDx: boolean;
  tap?: Tap;
  /** Skip the summed parameter gradients (a tap may be all the caller wants). Default true. */
  paramGrads?: boolean;
}

export abstract class Layer {
  params: Param[] = [];
  abstract outShape(inShape: readonly number[]): number[];
  abstract forward(rt: Runtime, x: Tensor, mode: Mode): Tensor;
  /** Gradient with respect to the input; undefined when `needDx` is false (the first layer). */
  abstract backward(rt: Runtime, dy: Tensor, opts: BackwardOptions): Tensor | undefined;
  abstract forwardRef(x: HostTensor, mode: Mode): HostTensor;
  abstract backwardRef(dy: HostTensor): HostTensor;
  /** Every parameter, including those of nested layers. */
  allParams(): Param[] {
    return this.params;
  }
}

function setGrad(p: Param, g: Tensor): void {
  p.grad?.release();
  p.grad = g;
}

const take = <T>(v: T | undefined, what: string): T => {
  if (v === undefined) throw new Error(`${what}: backward without a training-mode forward`);
  return v;
};

// ---------------------------------------------------------------- conv

/** Largest im2col a conv keeps from its forward for its backward; above it the backward recomputes it. */
const KEEP_COLS_MAX_BYTES = 64 << 20;

export class Conv2d extends Layer {
  #x?: Tensor;
  #cols?: Tensor;
  /** The Winograd forward's transformed input, for its backward (training steps of 3x3 / pad 1 convs). */
  #v?: Tensor;
  #xRef?: HostTensor;
  readonly weight: Param;
  readonly bias?: Param;
  constructor(readonly cin: number, readonly cout: number, readonly geom: ConvGeom, weight: Param, bias?: Param) {
    super();
    this.weight = weight;
    this.bias = bias;
    this.params = bias ? [weight, bias] : [weight];
  }
  outShape([, n, h, w]: readonly number[]): number[] {
    const { OH, OW } = convOutSize(h, w, this.geom);
    return [this.cout, n, OH, OW];
  }
  /**
   * The eval forward with the batch norm that follows (and a 2x2 max pool after it, when `pool` and the kernel can)
   * folded into the kernel, where the implicit kernel runs; undefined elsewhere.
   */
  forwardFolded(rt: Runtime, x: Tensor, bn: BatchNorm, pool: boolean): { y: Tensor; pooled: boolean } | undefined {
    const [C, N, H, W] = x.shape;
    const s = { C, N, H, W, O: this.cout };
    if (this.bias || !implicitTile(s, this.geom)) return undefined;
    const pooled = pool && poolFolds(s, this.geom);
    return {
      y: conv2dForward(rt, x, this.weight.value, undefined, this.geom, { bn: bn.folded(), pool: pooled }),
      pooled,
    };
  }
  forward(rt: Runtime, x: Tensor, mode: Mode): Tensor {
    if (mode === "eval") return conv2dForward(rt, x, this.weight.value, this.bias?.value, this.geom);
    this.#x = x.retain();
    this.#cols?.release();
    this.#v?.release();
    this.#cols = this.#v = undefined;
    const [C, N, H, W] = x.shape;
    if (mode === "train" && !this.bias && winogradWins({ C, N, H, W }, this.geom)) {
      // 4/9 of the multiply-adds and no im2col buffer: kernels/README.md "Winograd".
      const { y, v } = winogradForward(rt, x, this.weight.value, true);
      this.#v = v;
      return y;
    }
    const cols = im2col(rt, x, this.geom);
    const y = conv2dForward(rt, x, this.weight.value, this.bias?.value, this.geom, { cols });
    // The backward reads this im2col again (a grad-mode tap always, a training step's dw when split-K): keep it.
    const wanted = mode === "grad" || dwReadsCols(this.cout, cols.shape[0], cols.shape[1]);
    this.#cols = wanted && 4 * cols.size <= KEEP_COLS_MAX_BYTES ? cols : undefined;
    if (!this.#cols) cols.release();
    return y;
  }
  backward(rt: Runtime, dy: Tensor, opts: BackwardOptions): Tensor | undefined {
    const x = take(this.#x, "conv2d");
    opts.tap?.(this, x, dy, this.#cols);
    let dx: Tensor | undefined;
    if (this.#v && (opts.paramGrads ?? true)) {
      const g = winogradBackward(rt, this.#v, this.weight.value, dy, opts.needDx ?? true);
      setGrad(this.weight, g.dw);
      dx = g.dx;
    } else if (opts.paramGrads ?? true) {
      const g = conv2dBackward(rt, x, this.weight.value, dy, this.geom, {
        needDx: opts.needDx,
        needDb: !!this.bias,
        cols: this.#cols,
      });
      setGrad(this.weight, g.dw);
      if (this.bias) setGrad(this.bias, g.db!);
      dx = g.dx;
    } else if (opts.needDx) {
      dx = conv2dInputGrad(rt, x.shape, this.weight.value, dy, this.geom);
    }
    x.release();
    this.#cols?.release();
    this.#v?.release();
    this.#x = this.#cols = this.#v = undefined;
    return dx;
  }
  forwardRef(x: HostTensor, mode: Mode): HostTensor {
    if (mode !== "eval") this.#xRef = x;
    const [C, N, H, W] = x.shape;
    const shape = this.outShape(x.shape);
    return {
      shape,
      data: conv2dRef(x.data, this.weight.host!, this.bias?.host, { C, N, H, W, O: this.cout }, this.geom),
    };
  }
  backwardRef(dy: HostTensor): HostTensor {
    const x = take(this.#xRef, "conv2d twin");
    const [C, N, H, W] = x.shape;
    const g = conv2dBackwardRef(x.data, this.weight.host!, dy.data, { C, N, H, W, O: this.cout }, this.geom);
    this.weight.hostGrad = g.dw;
    if (this.bias) this.bias.hostGrad = g.db;
    return { shape: x.shape, data: g.dx };
  }
}

// ---------------------------------------------------------------- dense: y[O, N] = W[O, F] x[F, N] + b

export class Dense extends Layer {
  #x?: Tensor;
  #xRef?: HostTensor;
  constructor(readonly fin: number, readonly fout: number, readonly weight: Param, readonly bias?: Param) {
    super();
    this.params = bias ? [weight, bias] : [weight];
  }
  outShape([, n]: readonly number[]): number[] {
    return [this.fout, n];
  }
  forward(rt: Runtime, x: Tensor, mode: Mode): Tensor {
    if (x.shape.length !== 2 || x.shape[0] !== this.fin) {
      throw new Error(`dense: input [${x.shape}] is not [${this.fin}, N]`);
    }
    if (mode !== "eval") this.#x = x.retain();
    const y = matmul(rt, this.weight.value, x);
    if (this.bias) addRowBias(rt, y, this.bias.value);
    return y;
  }
  backward(rt: Runtime, dy: Tensor, opts: BackwardOptions): Tensor | undefined {
    const x = take(this.#x, "dense");
    opts.tap?.(this, x, dy);
    if (opts.paramGrads ?? true) {
      setGrad(this.weight, matmul(rt, dy, x, { transB: true }));
      if (this.bias) setGrad(this.bias, sum(rt, dy, 1));
    }
    x.release();
    this.#x = undefined;
    return opts.needDx ? matmul(rt, this.weight.value, dy, { transA: true }) : undefined;
  }
  forwardRef(x: HostTensor, mode: Mode): HostTensor {
    if (mode !== "eval") this.#xRef = x;
    const N = x.shape[1];
    const y = matmulRef(this.weight.host!, x.data, { M: this.fout, N, K: this.fin });
    if (this.bias) {
      for (let o = 0; o < this.fout; o++) {
        for (let n = 0; n < N; n++) y[o * N + n] += this.bias.host![o];
      }
    }
    return { shape: [this.fout, N], data: y };
  }
  backwardRef(dy: HostTensor): HostTensor {
    const x = take(this.#xRef, "dense twin");
    const N = x.shape[1];
    this.weight.hostGrad = matmulRef(dy.data, x.data, { M: this.fout, N: this.fin, K: N, transB: true });
    if (this.bias) {
      const db = new Float64Array(this.fout);
      for (let o = 0; o < this.fout; o++) for (let n = 0; n < N; n++) db[o] += dy.data[o * N + n];
      this.bias.hostGrad = db;
    }
    return {
      shape: x.shape,
      data: matmulRef(this.weight.host!, dy.data, { M: this.fin, N, K: this.fout, transA: true }),
    };
  }
}

// ---------------------------------------------------------------- batch norm (per channel over N, H, W)

/** Batch norm; with `relu` set (models.ts fuses a relu that follows it) also that relu, in the same passes. */
export class BatchNorm extends Layer {
  relu = false;
  /** pooled: the training forward took the max pool after it (forwardPooled). */
  #saved?: { x: Tensor; stats: Tensor; pooled: boolean };
  #gradMode = false;
  /** Grad mode with relu: the output, whose zeros mask the backward. */
  #out?: Tensor;
  #xRef?: HostTensor;
  #outRef?: HostTensor;
  #refMode: Mode = "train";
  constructor(
    readonly channels: number,
    readonly gamma: Param,
    readonly beta: Param,
    readonly runningMean: Param,
    readonly runningVar: Param,
    readonly momentum = 0.1,
    readonly eps = 1e-5,
  ) {
    super();
    this.params = [gamma, beta, runningMean, runningVar];
  }
  outShape(s: readonly number[]): number[] {
    return [...s];
  }
  /** Its eval forward, for a convolution's kernel to apply (Conv2d.forwardFolded). */
  folded(): FoldedBatchNorm {
    const [gamma, beta] = [this.gamma.value, this.beta.value];
    const [runningMean, runningVar] = [this.runningMean.value, this.runningVar.value];
    return { gamma, beta, runningMean, runningVar, eps: this.eps, relu: this.relu };
  }
  forward(rt: Runtime, x: Tensor, mode: Mode): Tensor {
    this.#gradMode = mode === "grad";
    if (mode === "train") return this.#train(rt, x, false);
    const opts = { eps: this.eps, relu: this.relu };
    const y = batchNormEval(rt, x, this.gamma.value, this.beta.value, this.#state(), opts);
    this.#out?.release();
    this.#out = mode === "grad" && this.relu ? y.retain() : undefined;
    return y;
  }
  /** The training forward and the 2x2 max pool after it in one pass (Sequential fuses them where poolsFused). */
  forwardPooled(rt: Runtime, x: Tensor): Tensor {
    this.#gradMode = false;
    return this.#train(rt, x, true);
  }
  #state() {
    return { runningMean: this.runningMean.value, runningVar: this.runningVar.value };
  }
  #train(rt: Runtime, x: Tensor, pool: boolean): Tensor {
    const opts = { momentum: this.momentum, eps: this.eps, relu: this.relu, pool };
    const r = batchNormTrain(rt, x, this.gamma.value, this.beta.value, this.#state(), opts);
    this.#saved = { x: x.retain(), stats: r.stats, pooled: pool };
    return r.y;
  }
  backward(rt: Runtime, dy: Tensor): Tensor {
    if (this.#gradMode) {
      const g = this.#out ? reluGrad(rt, dy, this.#out) : dy;
      this.#out?.release();
      this.#out = undefined;
      // Running statistics make batch norm a per-channel affine map: dx = dy * gamma / sqrt(var + eps),
      // which is the eval forward applied to dy with zero mean and zero shift. (Its own gamma and beta
      // gradients are not computed in this mode.)
      // Two zero buffers: the shader binds beta read-only and run_mean read_write, and one buffer
      // cannot take both usages in a dispatch.
      const zeros = fill(rt, rt.empty([this.channels]), 0);
      const zeroMean = fill(rt, rt.empty([this.channels]), 0);
      const dx = batchNormEval(rt, g, this.gamma.value, zeros, {
        runningMean: zeroMean,
        runningVar: this.runningVar.value,
      }, { eps: this.eps });
      zeros.release();
      zeroMean.release();
      if (g !== dy) g.release();
      return dx;
    }
    const s = take(this.#saved, "batchnorm");
    const opts = { relu: this.relu, pool: s.pooled };
    const g = batchNormBackward(rt, s.x, dy, this.gamma.value, this.beta.value, s, opts);
    setGrad(this.gamma, g.dgamma);
    setGrad(this.beta, g.dbeta);
    s.x.release();
    s.stats.release();
    this.#saved = undefined;
    return g.dx;
  }
  forwardRef(x: HostTensor, mode: Mode): HostTensor {
    const C = this.channels;
    const L = x.data.length / C;
    const [g, b, rm, rv] = [this.gamma, this.beta, this.runningMean, this.runningVar].map((p) => p.host!);
    this.#refMode = mode;
    this.#xRef = x;
    let y: Float64Array;
    if (mode !== "train") y = batchNormEvalRef(x.data, g, b, rm, rv, C, L, this.eps);
    else {
      const r = batchNormTrainRef(x.data, g, b, rm, rv, C, L, { momentum: this.momentum, eps: this.eps });
      this.runningMean.host = r.runningMean;
      this.runningVar.host = r.runningVar;
      y = r.y;
    }
    if (this.relu) y = y.map((v) => Math.max(v, 0));
    this.#outRef = { shape: x.shape, data: y };
    return this.#outRef;
  }
  backwardRef(dyIn: HostTensor): HostTensor {
    const x = take(this.#xRef, "batchnorm twin");
    const out = take(this.#outRef, "batchnorm twin");
    const dy = this.relu ? dyIn.data.map((v, i) => (out.data[i] > 0 ? v : 0)) : dyIn.data;
    if (this.#refMode === "grad") {
      const L = x.data.length / this.channels;
      const [g, rv] = [this.gamma.host!, this.runningVar.host!];
      return {
        shape: x.shape,
        data: dy.map((v, i) => (v * g[Math.floor(i / L)]) / Math.sqrt(rv[Math.floor(i / L)] + this.eps)),
      };
    }
    const g = batchNormBackwardRef(
      x.data,
      dy,
      this.gamma.host!,
      this.channels,
      x.data.length / this.channels,
      this.eps,
    );
    this.gamma.hostGrad = g.dgamma;
    this.beta.hostGrad = g.dbeta;
    return { shape: x.shape, data: g.dx };
  }
}

// ---------------------------------------------------------------- relu, scale

export class Relu extends Layer {
  #x?: Tensor;
  #xRef?: HostTensor;
  outShape(s: readonly number[]): number[] {
    return [...s];
  }
  forward(rt: Runtime, x: Tensor, mode: Mode): Tensor {
    if (mode !== "eval") this.#x = x.retain();
    return relu(rt, x);
  }
  backward(rt: Runtime, dy: Tensor): Tensor {
    const x = take(this.#x, "relu");
    const dx = reluGrad(rt, dy, x);
    x.release();
    this.#x = undefined;
    return dx;
  }
  forwardRef(x: HostTensor, mode: Mode): HostTensor {
    if (mode !== "eval") this.#xRef = x;
    return { shape: x.shape, data: x.data.map((v) => Math.max(v, 0)) };
  }
  backwardRef(dy: HostTensor): HostTensor {
    const x = take(this.#xRef, "relu twin");
    return { shape: x.shape, data: dy.data.map((g, i) => (x.data[i] > 0 ? g : 0)) };
  }
}

export class Scale extends Layer {
  constructor(readonly factor: number) {
    super();
  }
  outShape(s: readonly number[]): number[] {
    return [...s];
  }
  forward(rt: Runtime, x: Tensor): Tensor {
    return scale(rt, x, this.factor);
  }
  backward(rt: Runtime, dy: Tensor): Tensor {
    return scale(rt, dy, this.factor);
  }
  forwardRef(x: HostTensor): HostTensor {
    return { shape: x.shape, data: x.data.map((v) => v * this.factor) };
  }
  backwardRef(dy: HostTensor): HostTensor {
    return { shape: dy.shape, data: dy.data.map((v) => v * this.factor) };
  }
}

// ---------------------------------------------------------------- pooling

export class MaxPool2 extends Layer {
  #saved?: { idx: Tensor; shape: readonly number[] };
  #xRef?: HostTensor;
  outShape([c, n, h, w]: readonly number[]): number[] {
    return [c, n, Math.floor(h / 2), Math.floor(w / 2)];
  }
  forward(rt: Runtime, x: Tensor, mode: Mode): Tensor {
    const { y, idx } = maxPool2x2(rt, x);
    if (mode !== "eval") this.#saved = { idx, shape: x.shape };
    else idx.release();
    return y;
  }
  backward(rt: Runtime, dy: Tensor): Tensor {
    const s = take(this.#saved, "maxpool");
    const dx = maxPool2x2Backward(rt, dy, s.idx, s.shape);
    s.idx.release();
    this.#saved = undefined;
    return dx;
  }
  forwardRef(x: HostTensor, mode: Mode): HostTensor {
    if (mode !== "eval") this.#xRef = x;
    return { shape: this.outShape(x.shape), data: maxPool2x2Ref(x.data, x.shape).y };
  }
  backwardRef(dy: HostTensor): HostTensor {
    const x = take(this.#xRef, "maxpool twin");
    return { shape: x.shape, data: maxPool2x2BackwardRef(x.data, dy.data, x.shape) };
  }
}

/** Global max or average pool over H, W: [C, N, H, W] -> [C, N]. */
export class GlobalPool extends Layer {
  #saved?: { idx?: Tensor; shape: readonly number[] };
  #xRef?: HostTensor;
  constructor(readonly kind: "max" | "avg") {
    super();
  }
  outShape([c, n]: readonly number[]): number[] {
    return [c, n];
  }
  forward(rt: Runtime, x: Tensor, mode: Mode): Tensor {
    if (this.kind === "avg") {
      if (mode !== "eval") this.#saved = { shape: x.shape };
      return globalAvgPool(rt, x);
    }
    const { y, idx } = globalMaxPool(rt, x);
    if (mode !== "eval") this.#saved = { idx, shape: x.shape };
    else idx.release();
    return y;
  }
  backward(rt: Runtime, dy: Tensor): Tensor {
    const s = take(this.#saved, "global pool");
    this.#saved = undefined;
    if (this.kind === "avg") return globalAvgPoolBackward(rt, dy, s.shape);
    const dx = globalMaxPoolBackward(rt, dy, s.idx!, s.shape);
    s.idx!.release();
    return dx;
  }
  forwardRef(x: HostTensor, mode: Mode): HostTensor {
    if (mode !== "eval") this.#xRef = x;
    const data = this.kind === "avg" ? globalAvgPoolRef(x.data, x.shape) : globalMaxPoolRef(x.data, x.shape).y;
    return { shape: this.outShape(x.shape), data };
  }
  backwardRef(dy: HostTensor): HostTensor {
    const x = take(this.#xRef, "global pool twin");
    const data = this.kind === "avg"
      ? globalAvgPoolBackwardRef(dy.data, x.shape)
      : globalMaxPoolBackwardRef(x.data, dy.data, x.shape);
    return { shape: x.shape, data };
  }
}

/** [C, N, H, W] -> [C*H*W, N] (a per-channel transpose; free when H = W = 1). */
export class Flatten extends Layer {
  #shape?: readonly number[];
  outShape([c, n, h = 1, w = 1]: readonly number[]): number[] {
    return [c * h * w, n];
  }
  forward(rt: Runtime, x: Tensor): Tensor {
    this.#shape = x.shape;
    const [c, n, h = 1, w = 1] = x.shape;
    if (h * w === 1) return x.retain().reshape([c, n]);
    return transpose(rt, x.reshape([c, n, h * w])).reshape([c * h * w, n]);
  }
  backward(rt: Runtime, dy: Tensor): Tensor {
    const shape = take(this.#shape, "flatten");
    const [c, n, h = 1, w = 1] = shape;
    if (h * w === 1) return dy.retain().reshape(shape);
    return transpose(rt, dy.reshape([c, h * w, n])).reshape(shape);
  }
  forwardRef(x: HostTensor): HostTensor {
    this.#shape = x.shape;
    const [c, n, h = 1, w = 1] = x.shape;
    return { shape: [c * h * w, n], data: transposeRef(x.data, c, n, h * w) };
  }
  backwardRef(dy: HostTensor): HostTensor {
    const shape = take(this.#shape, "flatten twin");
    const [c, n, h = 1, w = 1] = shape;
    return { shape: [...shape], data: transposeRef(dy.data, c, h * w, n) };
  }
}

// ---------------------------------------------------------------- composition

export class Sequential extends Layer {
  /** The max pools the last training forward ran inside the batch norm before them (their backward too). */
  #fusedPools = new Set<number>();
  constructor(readonly layers: Layer[]) {
    super();
  }
  override allParams(): Param[] {
    return this.layers.flatMap((l) => l.allParams());
  }
  outShape(s: readonly number[]): number[] {
    return this.layers.reduce<number[]>((acc, l) => l.outShape(acc), [...s]);
  }
  forward(rt: Runtime, x: Tensor, mode: Mode): Tensor {
    let h = x;
    this.#fusedPools.clear();
    for (let i = 0; i < this.layers.length; i++) {
      const [layer, next, after] = [this.layers[i], this.layers[i + 1], this.layers[i + 2]];
      let out: Tensor;
      if (mode === "train" && layer instanceof BatchNorm && next instanceof MaxPool2 && poolsFused(h.shape)) {
        // Training: a batch norm and the max pool after it in one pass over the activations.
        out = layer.forwardPooled(rt, h);
        this.#fusedPools.add(++i);
      } else {
        // Eval: a convolution, the batch norm after it and a max pool after that in one kernel where it can.
        const folded = mode === "eval" && layer instanceof Conv2d && next instanceof BatchNorm
          ? layer.forwardFolded(rt, h, next, after instanceof MaxPool2)
          : undefined;
        if (folded) i += folded.pooled ? 2 : 1;
        out = folded?.y ?? layer.forward(rt, h, mode);
      }
      if (h !== x) h.release();
      h = out;
    }
    return h;
  }
  backward(rt: Runtime, dy: Tensor, opts: BackwardOptions): Tensor | undefined {
    let g: Tensor | undefined = dy;
    for (let i = this.layers.length - 1; i >= 0; i--) {
      if (this.#fusedPools.has(i)) continue; // its batch norm's backward takes the pooled gradient
      const gi: Tensor | undefined = this.layers[i].backward(rt, g!, { ...opts, needDx: i > 0 || opts.needDx });
      if (g !== dy) g!.release();
      g = gi;
    }
    return g;
  }
  forwardRef(x: HostTensor, mode: Mode): HostTensor {
    return this.layers.reduce((h, l) => l.forwardRef(h, mode), x);
  }
  backwardRef(dy: HostTensor): HostTensor {
    return this.layers.reduceRight((g, l) => l.backwardRef(g), dy);
  }
}

/** y = x + block(x). */
export class Residual extends Layer {
  constructor(readonly block: Layer) {
    super();
  }
  override allParams(): Param[] {
    return this.block.allParams();
  }
  outShape(s: readonly number[]): number[] {
    return [...s];
  }
  forward(rt: Runtime, x: Tensor, mode: Mode): Tensor {
    const fx = this.block.forward(rt, x, mode);
    return axpy(rt, 1, x, fx, fx); // fx += x, in place
  }
  backward(rt: Runtime, dy: Tensor, opts: BackwardOptions): Tensor {
    const dfx = this.block.backward(rt, dy, { ...opts, needDx: true })!;
    return axpy(rt, 1, dy, dfx, dfx); // dfx += dy, in place
  }
  forwardRef(x: HostTensor, mode: Mode): HostTensor {
    const fx = this.block.forwardRef(x, mode);
    return { shape: x.shape, data: fx.data.map((v, i) => v + x.data[i]) };
  }
  backwardRef(dy: HostTensor): HostTensor {
    const dfx = this.block.backwardRef(dy);
    return { shape: dy.shape, data: dfx.data.map((v, i) => v + dy.data[i]) };
  }
}

/** dx of a convolution alone (no weight gradient): col2im(Wᵀ dy). */
function conv2dInputGrad(rt: Runtime, xShape: readonly number[], w: Tensor, dy: Tensor, geom: ConvGeom): Tensor {
  const P = dy.size / dy.shape[0];
  const dcols = matmul(rt, w, dy.reshape([dy.shape[0], P]), { transA: true });
  const dx = col2im(rt, dcols, xShape, geom);
  dcols.release();
  return dx;
}
