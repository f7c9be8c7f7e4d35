// TRAK featurisation: per-example gradients of the margin for every Conv2d and Dense weight, projected
// to k dimensions and summed over layers into Phi [n, k], one tile (batch) of examples at a time.
//
// Per batch: forward in "grad" mode (eval numerics, running BN statistics, so examples do not interact),
// margin with gradScale 1 (one dlogits column per example), backward without parameter gradients; the
// tap sees each weight layer's input x and output gradient dy. With T output positions per example
// (T = 1 for dense layers), dyT [N*T, O] = dyᵀ and xT [N*T, CK] = im2colT(x) (or xᵀ), and
//   dense     G [N, O, CK] = batched dyT_nᵀ · xT_n, then Phi += G R / sqrt(k), R regenerated on the fly
//             (kernels/project.ts);
//   factored  Phi_n += vec((dyT_n R_out)ᵀ (xT_n R_in)) / sqrt(k), R_out [O, kOut], R_in [CK, kIn] +-1:
//             the projection by R_in ⊗ R_out without a per-example gradient. The side products are computed
//             wide, R_outᵀ dy and R_inᵀ im2col(x) ([k, N*T]: as tall [N*T, k] products their 16 columns
//             filled a sixteenth of each workgroup), and each example's product
//             straight from its column block (matmulBlocksNT), without transposes;
//   baseline  G as in dense, times an explicitly stored R (benchmark only).
// Biases and batch-norm affine parameters are not featurised (under 1% of the parameters).
import { assembleBatch, type DeviceDataset } from "../../kernels/batch.ts";
import { im2col, im2colT } from "../../kernels/conv2d.ts";
import { fill } from "../../kernels/fill.ts";
import { margin } from "../../kernels/loss.ts";
import { matmul, matmulBlocksNT } from "../../kernels/matmul.ts";
import { accumulateRows, blockCopy, generateR, projectDense } from "../../kernels/project.ts";
import { random, rngCombine, rngHash, rngSign } from "../../kernels/random.ts";
import { transpose } from "../../kernels/transpose.ts";
import type { Runtime, Tensor } from "../gpu/runtime.ts";
import { Conv2d, Dense, type Layer, Residual, Sequential } from "../nn/layers.ts";
import type { Model } from "../nn/models.ts";
import type { ArrayValue } from "../protocol/job-kind.ts";
import { CIFAR10_MEAN, CIFAR10_STD } from "../data/dataset.ts";

export type Projection = "dense" | "factored" | "baseline";

export interface WeightLayer {
  layer: Conv2d | Dense;
  /** Offset of this weight in the concatenated weight vector (forward order). */
  offset: number;
  /** Index among weight layers (forward order): names the factored streams. */
  index: number;
  O: number;
  /** Input side: C*kh*kw for convolutions, F for dense layers. */
  CK: number;
}

/** Every Conv2d and Dense layer in forward order, with its weight's offset. */
export function weightLayers(model: Model): WeightLayer[] {
  const out: WeightLayer[] = [];
  let offset = 0;
  const walk = (l: Layer) => {
    if (l instanceof Sequential) l.layers.forEach(walk);
    else if (l instanceof Residual) walk(l.block);
    else if (l instanceof Conv2d || l instanceof Dense) {
      const [O, CK] = l.weight.shape;
      out.push({ layer: l, offset, index: out.length, O, CK });
      offset += O * CK;
    }
  };
  walk(model.net);
  return out;
}

/** k = kOut * kIn for the factored projection: kOut the largest power of two <= sqrt(k) dividing k. */
export function factorK(k: number, kOut?: number): { kOut: number; kIn: number } {
  let ko = kOut ?? 2 ** Math.floor(Math.log2(Math.sqrt(k)));
  while (k % ko !== 0) ko--;
  return { kOut: ko, kIn: k / ko };
}

/** Stream of the factored projection's side matrix (side 0 = R_out, 1 = R_in) of weight layer `index`. */
export function factoredStream(model: number, index: number, side: 0 | 1): number {
  return rngCombine(rngCombine(rngHash(0x54524b21), model >>> 0), index * 2 + side);
}

/** The factored side matrix R_side [rows, cols] as +-1 from rngSign(seed, stream, r * cols + c) (TS twin). */
export function factoredSideRef(
  seed: number,
  model: number,
  index: number,
  side: 0 | 1,
  rows: number,
  cols: number,
): Float64Array {
  const s = factoredStream(model, index, side);
  return Float64Array.from({ length: rows * cols }, (_, i) => rngSign(seed, s, i));
}

export interface FeaturizeOptions {
  k: number;
  projection: Projection;
  /** Projection seed (shared by the ensemble); each model also has its own `modelIndex`. */
  seed: number;
  modelIndex: number;
  /** Examples per tile. Default 64. */
  batchSize?: number;
  /** Dataset indices to featurise, in order (default all). */
  indices?: ArrayLike<number>;
  mean?: readonly number[];
  std?: readonly number[];
  /** Factored split of k (default: the power of two nearest below sqrt k). */
  kOut?: number;
  targetWorkgroups?: number;
  onBatch?: (done: number, total: number) => void;
}

export interface Features {
  /** [n, k] on the device. */
  phi: Tensor;
  /** Per-example margins (model in eval numerics) and Q = 1 - sigmoid(margin). */
  margins: Float32Array;
  q: Float32Array;
  n: number;
  k: number;
}

/** A reusable featuriser for one model: holds the factored side matrices or the baseline's explicit R. */
export class Featurizer {
  readonly layers: WeightLayer[];
  readonly k: number;
  readonly kOut: number;
  readonly kIn: number;
  /** The factored side matrices, transposed: rOutT [kOut, O], rInT [kIn, CK]. */
  #sides = new Map<WeightLayer, { rOutT: Tensor; rInT: Tensor }>();
  /** Baseline: the layer's explicit R in row chunks [p0, p0 + rows) that fit a storage binding. */
  #explicit = new Map<WeightLayer, { p0: number; R: Tensor }[]>();

  constructor(readonly rt: Runtime, readonly model: Model, readonly opts: FeaturizeOptions) {
    this.layers = weightLayers(model);
    this.k = opts.k;
    ({ kOut: this.kOut, kIn: this.kIn } = factorK(opts.k, opts.kOut));
    if (opts.k % 4 !== 0) throw new Error(`featurize: k must be a multiple of 4, got ${opts.k}`);
    for (const wl of this.layers) {
      if (opts.projection === "factored") {
        const rOut = random(rt, [wl.O, this.kOut], "sign", {
          seed: opts.seed,
          stream: factoredStream(opts.modelIndex, wl.index, 0),
        });
        const rIn = random(rt, [wl.CK, this.kIn], "sign", {
          seed: opts.seed,
          stream: factoredStream(opts.modelIndex, wl.index, 1),
        });
        this.#sides.set(wl, { rOutT: transpose(rt, rOut), rInT: transpose(rt, rIn) });
        [rOut, rIn].forEach((t) => t.release());
      } else if (opts.projection === "baseline") {
        const P = wl.O * wl.CK;
        const maxRows = Math.max(
          1,
          Math.floor(Math.min(rt.device.limits.maxStorageBufferBindingSize, 64 << 20) / (4 * this.k)),
        );
        const chunks: { p0: number; R: Tensor }[] = [];
        for (let p0 = 0; p0 < P; p0 += maxRows) {
          chunks.push({
            p0,
            R: generateR(rt, Math.min(maxRows, P - p0), this.k, {
              seed: opts.seed,
              model: opts.modelIndex,
              pOffset: wl.offset + p0,
            }),
          });
        }
        this.#explicit.set(wl, chunks);
      }
    }
  }

  /** Record the featurisation of one batch x [C, B, H, W] with labels y into phi rows [row0, row0 + B);
   * margins go to `marginsOut` at row0. Nothing is read back. */
  batch(x: Tensor, y: Tensor<"u32">, phi: Tensor, row0: number, marginsOut: Tensor, correctOut: Tensor): void {
    const rt = this.rt;
    const B = x.shape[1];
    const byLayer = new Map(this.layers.map((wl) => [wl.layer, wl] as const));
    const logits = this.model.net.forward(rt, x, "grad");
    const m = margin(rt, logits, y, { gradScale: 1, into: { value: marginsOut, correct: correctOut, offset: row0 } });
    const tap = (layer: Conv2d | Dense, input: Tensor, dy: Tensor, cols?: Tensor) => {
      const wl = byLayer.get(layer)!;
      this.#layer(wl, input, dy, B, phi, row0, cols);
    };
    this.model.net.backward(rt, m.dlogits, { needDx: false, paramGrads: false, tap });
    logits.release();
    m.dlogits.release();
  }

  /** One weight layer's share of the batch's features; `kept`: the forward's im2col of `input`, if kept. */
  #layer(wl: WeightLayer, input: Tensor, dy: Tensor, B: number, phi: Tensor, row0: number, kept?: Tensor): void {
    const rt = this.rt;
    const { O, CK } = wl;
    const T = dy.size / (O * B);
    const dy2 = dy.reshape([O, B * T]);
    if (this.opts.projection === "factored") {
      const { rOutT, rInT } = this.#sides.get(wl)!;
      const cols = wl.layer instanceof Conv2d ? kept ?? im2col(rt, input, wl.layer.geom) : input; // [CK, B*T]
      if (cols.size !== CK * B * T) {
        throw new Error(`featurize: layer input gives [${cols.shape}], expected [${CK}, ${B * T}]`);
      }
      const pOutT = matmul(rt, rOutT, dy2); // [kOut, B*T]
      const pInT = matmul(rt, rInT, cols.reshape([CK, B * T])); // [kIn, B*T]
      if (cols !== input && cols !== kept) cols.release();
      // f_n = pOutT_n · pInT_nᵀ, [B, kOut, kIn], from example n's columns [n*T, (n+1)*T) of both.
      const blocks = { batch: B, K: T, strideA: T, strideB: T, ldA: B * T, ldB: B * T };
      const f = matmulBlocksNT(rt, pOutT, pInT, { M: this.kOut, N: this.kIn, ...blocks });
      accumulateRows(rt, f.reshape([B, this.k]), phi, row0, 1 / Math.sqrt(this.k));
      [pOutT, pInT, f].forEach((t) => t.release());
      return;
    }
    // dyT [B*T, O], xT [B*T, CK]: one row per (example, position).
    const dyT = transpose(rt, dy2);
    const xT = wl.layer instanceof Conv2d ? im2colT(rt, input, wl.layer.geom) : transpose(rt, input);
    if (xT.size !== B * T * CK) {
      throw new Error(`featurize: layer input gives [${xT.shape}], expected [${B * T}, ${CK}]`);
    }
    const G = matmul(rt, dyT.reshape([B, T, O]), xT.reshape([B, T, CK]), { transA: true }).reshape([B, O * CK]);
    if (this.opts.projection === "dense") {
      projectDense(rt, G, phi, row0, {
        seed: this.opts.seed,
        model: this.opts.modelIndex,
        pOffset: wl.offset,
        targetWorkgroups: this.opts.targetWorkgroups,
      });
    } else {
      const P = O * CK;
      for (const { p0, R } of this.#explicit.get(wl)!) {
        const rows = R.shape[0];
        const Gc = rows === P
          ? G
          : blockCopy(rt, G, rt.empty([B, rows]), { rows: B, cols: rows, sc0: p0, sld: P, dld: rows });
        const prod = matmul(rt, Gc, R); // [B, k]
        accumulateRows(rt, prod, phi, row0, 1 / Math.sqrt(this.k));
        prod.release();
        if (Gc !== G) Gc.release();
      }
    }
    G.release();
    dyT.release();
    xT.release();
  }

  /** Featurise a dataset (or `opts.indices` of it): Phi [n, k], margins and Q, one readback. */
  async run(ds: DeviceDataset): Promise<Features> {
    const rt = this.rt;
    const indices = this.opts.indices ?? Uint32Array.from({ length: ds.n }, (_, i) => i);
    const n = indices.length;
    const B = Math.max(1, Math.min(this.opts.batchSize ?? 64, n));
    const order = rt.upload(Uint32Array.from(indices), [n], "u32");
    const phi = fill(rt, rt.empty([n, this.k]), 0);
    const margins = rt.empty([n]);
    const correct = rt.empty([n]);
    const mean = [...(this.opts.mean ?? CIFAR10_MEAN)];
    const std = [...(this.opts.std ?? CIFAR10_STD)];
    for (let start = 0; start < n; start += B) {
      const size = Math.min(B, n - start);
      const { x, y } = assembleBatch(rt, ds, {
        order,
        start,
        size,
        mean,
        std,
        pad: 0,
        flip: false,
        seed: 0,
        stream: 0,
      });
      this.batch(x, y, phi, start, margins, correct);
      x.release();
      y.release();
      if (this.opts.onBatch) {
        await rt.sync();
        this.opts.onBatch(start + size, n);
      }
    }
    const [mg] = (await rt.readMany([margins])) as Float32Array[];
    [order, margins, correct].forEach((t) => t.release());
    const q = Float32Array.from(mg, (v) => 1 - 1 / (1 + Math.exp(-v)));
    return { phi, margins: mg, q, n, k: this.k };
  }

  release(): void {
    for (const { rOutT, rInT } of this.#sides.values()) [rOutT, rInT].forEach((t) => t.release());
    for (const chunks of this.#explicit.values()) chunks.forEach((c) => c.R.release());
    this.#sides.clear();
    this.#explicit.clear();
  }
}

/** Featurise one model over a dataset. */
export async function featurize(
  rt: Runtime,
  model: Model,
  ds: DeviceDataset,
  opts: FeaturizeOptions,
): Promise<Features> {
  const f = new Featurizer(rt, model, opts);
  try {
    return await f.run(ds);
  } finally {
    f.release();
  }
}

/**
 * TRAK features of the examples [start, end), read back as a featurize shard's outputs (phi [n, k], margins,
 * q): the one call of the volunteers' executor and of the coordinator's audit.
 */
export async function featurizeRange(
  rt: Runtime,
  model: Model,
  ds: DeviceDataset,
  { start, end, ...opts }: Omit<FeaturizeOptions, "indices"> & { start: number; end: number },
): Promise<Record<"phi" | "margins" | "q", ArrayValue>> {
  const indices = Uint32Array.from({ length: end - start }, (_, i) => start + i);
  const f = await featurize(rt, model, ds, { ...opts, indices });
  const phi = (await rt.read(f.phi)) as Float32Array;
  f.phi.release();
  const f32 = (data: Float32Array, shape: number[]): ArrayValue => ({ dtype: "f32", shape, data });
  return { phi: f32(phi, [f.n, f.k]), margins: f32(f.margins, [f.n]), q: f32(f.q, [f.n]) };
}
