// Training and evaluation on the device. An epoch records every batch (assemble + augment, forward,
// loss, backward, SGD) without reading anything back; per-example losses and correctness collect in
// epoch-long device buffers, read once at the end: one readback per epoch.
import { z } from "zod";
import { assembleBatch, type DeviceDataset } from "../../kernels/batch.ts";
import { crossEntropy, margin } from "../../kernels/loss.ts";
import { sgdStep } from "../../kernels/sgd.ts";
import { fill } from "../../kernels/fill.ts";
import { mulberry32 } from "../data/dataset.ts";
import type { Runtime, Tensor } from "../gpu/runtime.ts";
import type { Model } from "./models.ts";

export const Recipe = z.object({
  epochs: z.number().positive().default(10).describe("passes over the training set"),
  batchSize: z.number().int().min(2).default(128).describe("examples per SGD step"),
  lr: z.number().positive().default(0.2).describe(
    "peak learning rate, reached after the warm-up, then decayed linearly to 0",
  ),
  warmup: z.number().min(0).max(1).default(0.2).describe("warm-up length as a fraction of all steps"),
  momentum: z.number().min(0).max(1).default(0.9).describe("SGD momentum"),
  nesterov: z.boolean().default(true).describe("Nesterov momentum"),
  weightDecay: z.number().min(0).default(5e-4).describe("L2 weight decay"),
  labelSmoothing: z.number().min(0).max(1).default(0.1).describe("label smoothing of the cross-entropy"),
  cropPad: z.number().int().min(0).default(4).describe("random-crop padding in pixels (0: no crops)"),
  flip: z.boolean().default(true).describe("random horizontal flips"),
  mean: z.array(z.number()).default([0.4914, 0.4822, 0.4465]).describe("per-channel mean the images are normalised by"),
  std: z.array(z.number()).default([0.247, 0.2435, 0.2616]).describe("per-channel standard deviation"),
  seed: z.number().int().default(0).describe("initialisation and shuffling seed"),
});
export type Recipe = z.input<typeof Recipe>;

export interface EpochStats {
  epoch: number;
  loss: number;
  accuracy: number;
  seconds: number;
  imagesPerSecond: number;
}

export interface Progress {
  epoch: number;
  epochs: number;
  batch: number;
  batches: number;
  imagesPerSecond: number;
}

export interface TrainOptions {
  onProgress?: (p: Progress) => void;
  onEpoch?: (s: EpochStats) => void;
  /** Train on these dataset indices only (a subset mask); default all. */
  indices?: ArrayLike<number>;
  /** Wait for the device every this many batches, for honest progress (a wait, not a readback). */
  syncEvery?: number;
  /** Cut the schedule into this many segments of nearly equal steps (`segmentBounds`; default 1). */
  segments?: number;
  /** Awaited at the end of every segment but the last, before the next step is recorded: a worker reads
   *  its training state there, for a verifier to replay the next segment from (server/README.md). */
  onSegment?: (segment: number) => Promise<void>;
  /** Run only this segment, from the state the caller set (parameters and velocities): a replay. */
  only?: number;
}

/** Steps per epoch and in all: the last partial batch is dropped, and a fractional last epoch (epochs = 2.5)
 *  runs that fraction of its batches. */
export function schedule(r: z.output<typeof Recipe>, examples: number) {
  const batchSize = Math.min(r.batchSize, examples);
  const batches = Math.floor(examples / batchSize);
  if (batches < 1) throw new Error(`train: ${examples} examples do not fill one batch of ${batchSize}`);
  const epochs = Math.ceil(r.epochs);
  const batchesIn = (epoch: number) => Math.min(batches, Math.round((r.epochs - epoch) * batches));
  let totalSteps = 0;
  for (let e = 0; e < epochs; e++) totalSteps += batchesIn(e);
  return { batchSize, batches, epochs, batchesIn, totalSteps };
}

/** The first step of each of `segments` segments, then the step count: segment i is [b[i], b[i + 1]). */
export function segmentBounds(totalSteps: number, segments: number): number[] {
  return Array.from({ length: segments + 1 }, (_, i) => Math.round((i * totalSteps) / segments));
}

/** Fisher-Yates with a seeded mulberry32: the epoch's order is a function of (seed, epoch). */
export function epochOrder(indices: ArrayLike<number>, seed: number, epoch: number): Uint32Array {
  const order = Uint32Array.from(indices);
  const rand = mulberry32((seed ^ Math.imul(epoch + 1, 0x9e3779b9)) >>> 0);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** Linear warm-up from 0 to the peak, then linear decay to 0 at the last step. */
export function learningRate(r: z.output<typeof Recipe>, step: number, totalSteps: number): number {
  const warm = Math.max(1, Math.round(r.warmup * totalSteps));
  if (step < warm) return (r.lr * (step + 1)) / warm;
  return r.lr * Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warm));
}

export async function trainModel(
  rt: Runtime,
  model: Model,
  ds: DeviceDataset,
  recipe: Recipe,
  opts: TrainOptions = {},
): Promise<EpochStats[]> {
  const r = Recipe.parse(recipe);
  const indices = opts.indices ?? Uint32Array.from({ length: ds.n }, (_, i) => i);
  const { batchSize: B, batches, epochs, batchesIn, totalSteps } = schedule(r, indices.length);
  const bounds = segmentBounds(totalSteps, opts.segments ?? 1);
  const [first, last] = opts.only === undefined ? [0, totalSteps] : [bounds[opts.only], bounds[opts.only + 1]];
  if (first === undefined || last === undefined) throw new Error(`train: no segment ${opts.only}`);
  const trainable = model.params.filter((p) => p.trainable);
  for (const p of trainable) p.velocity ??= fill(rt, rt.empty(p.shape), 0);
  const stats: EpochStats[] = [];
  let step = 0;
  for (let epoch = 0; epoch < epochs; epoch++) {
    // The steps of this epoch that run: [b0, b1) of its batches.
    const b0 = Math.min(batchesIn(epoch), Math.max(0, first - step)), b1 = Math.min(batchesIn(epoch), last - step);
    if (b1 <= b0) {
      step += batchesIn(epoch);
      continue;
    }
    step += b0;
    const t0 = performance.now();
    const order = rt.upload(epochOrder(indices, r.seed, epoch), [indices.length], "u32");
    const losses = rt.empty([batches * B]);
    const correct = rt.empty([batches * B]);
    for (let b = b0; b < b1; b++, step++) {
      const { x, y } = assembleBatch(rt, ds, {
        order,
        start: b * B,
        size: B,
        mean: r.mean,
        std: r.std,
        pad: r.cropPad,
        flip: r.flip,
        seed: r.seed,
        stream: epoch,
      });
      const logits = model.net.forward(rt, x, "train");
      const loss = crossEntropy(rt, logits, y, {
        eps: r.labelSmoothing,
        gradScale: 1 / B,
        into: { value: losses, correct, offset: b * B },
      });
      model.net.backward(rt, loss.dlogits, { needDx: false });
      const lr = learningRate(r, step, totalSteps);
      for (const p of trainable) {
        sgdStep(rt, p.value, p.grad!, p.velocity!, {
          lr,
          momentum: r.momentum,
          weightDecay: r.weightDecay,
          nesterov: r.nesterov,
        });
      }
      [x, y, logits, loss.dlogits].forEach((t) => t.release());
      const segment = bounds.indexOf(step + 1);
      if (opts.onSegment && opts.only === undefined && segment > 0 && segment < bounds.length - 1) {
        await opts.onSegment(segment);
      }
      if (opts.onProgress && ((b + 1) % (opts.syncEvery ?? 8) === 0 || b + 1 === b1)) {
        await rt.sync();
        const s = (performance.now() - t0) / 1000;
        opts.onProgress({
          epoch,
          epochs,
          batch: b + 1,
          batches: batchesIn(epoch),
          imagesPerSecond: ((b + 1 - b0) * B) / s,
        });
      }
    }
    step += batchesIn(epoch) - b1;
    const [l, c] = await rt.readMany([losses, correct]);
    const seen = (b1 - b0) * B;
    const seconds = (performance.now() - t0) / 1000;
    const e: EpochStats = {
      epoch,
      loss: sumOf(l.subarray(b0 * B, b1 * B)) / seen,
      accuracy: sumOf(c.subarray(b0 * B, b1 * B)) / seen,
      seconds,
      imagesPerSecond: seen / seconds,
    };
    [order, losses, correct].forEach((t) => t.release());
    stats.push(e);
    opts.onEpoch?.(e);
  }
  for (const p of trainable) {
    p.grad?.release();
    p.grad = undefined;
  }
  return stats;
}

export interface Evaluation {
  accuracy: number;
  /** Per example: the margin z_y - logsumexp_{c != y} z_c, and the cross-entropy loss. */
  margins: Float32Array;
  losses: Float32Array;
  correct: Float32Array;
}

/** Eval-mode pass over a dataset (or some of its indices) with one readback. */
export async function evaluate(
  rt: Runtime,
  model: Model,
  ds: DeviceDataset,
  opts: { batchSize?: number; indices?: ArrayLike<number>; mean?: number[]; std?: number[] } = {},
): Promise<Evaluation> {
  const r = Recipe.parse({});
  const indices = opts.indices ?? Uint32Array.from({ length: ds.n }, (_, i) => i);
  const n = indices.length;
  const B = Math.max(1, Math.min(opts.batchSize ?? 256, n));
  const order = rt.upload(Uint32Array.from(indices), [n], "u32");
  const margins = rt.empty([n]);
  const losses = rt.empty([n]);
  const correct = rt.empty([n]);
  const scratch = rt.empty([n]);
  for (let start = 0; start < n; start += B) {
    const size = Math.min(B, n - start);
    const { x, y } = assembleBatch(rt, ds, {
      order,
      start,
      size,
      mean: opts.mean ?? r.mean,
      std: opts.std ?? r.std,
      pad: 0,
      flip: false,
      seed: 0,
      stream: 0,
    });
    const logits = model.net.forward(rt, x, "eval");
    const m = margin(rt, logits, y, { into: { value: margins, correct, offset: start } });
    const ce = crossEntropy(rt, logits, y, { into: { value: losses, correct: scratch, offset: start } });
    [x, y, logits, m.dlogits, ce.dlogits].forEach((t: Tensor) => t.release());
  }
  const [mg, ls, cr] = (await rt.readMany([margins, losses, correct])) as Float32Array[];
  [order, margins, losses, correct, scratch].forEach((t) => t.release());
  return { accuracy: cr.reduce((s, v) => s + v, 0) / n, margins: mg, losses: ls, correct: cr };
}

function sumOf(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}
