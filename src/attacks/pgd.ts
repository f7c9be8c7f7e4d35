// Untargeted L-inf PGD on the device, with the model's own forward and backward: forward in "grad"
// mode (eval numerics, running batch-norm statistics, nothing in the model changes), cross-entropy
// against the true label, backward to the input. Each step ascends the loss by stepSize * sign(grad)
// and projects onto the eps-ball around the clean image and onto [0, 1]; the result is rounded to bytes
// and re-projected, so |x' - x| <= eps in pixel levels.
import { uploadDataset } from "../../kernels/batch.ts";
import { crossEntropy } from "../../kernels/loss.ts";
import "../../kernels/index.ts";
import { type Dataset, mulberry32 } from "../data/dataset.ts";
import type { Runtime } from "../gpu/runtime.ts";
import { buildModel, type Model } from "../nn/models.ts";
import { trainModel } from "../nn/train.ts";

export interface PgdOptions {
  /** Radius and step in pixel levels (of 255). */
  eps: number;
  stepSize: number;
  steps: number;
  randomStart: boolean;
  batchSize: number;
  seed: number;
  mean: number[];
  std: number[];
  log?: (line: string) => void;
}

/** Perturbs m CHW images (u8) of shape ds.c x ds.h x ds.w; returns new bytes. */
export async function pgdAttack(
  rt: Runtime,
  model: Model,
  images: Uint8Array,
  labels: Uint8Array,
  shape: Pick<Dataset, "c" | "h" | "w">,
  o: PgdOptions,
): Promise<Uint8Array> {
  const { c: C, h: H, w: W } = shape;
  const P = H * W, size = C * P, m = labels.length;
  const out = new Uint8Array(images.length);
  const eps = o.eps / 255, step = o.stepSize / 255;
  const rand = mulberry32(o.seed);
  const batches = Math.ceil(m / o.batchSize);
  const t0 = performance.now();
  for (let b = 0; b < batches; b++) {
    // Balanced batches: no tiny last batch.
    const start = Math.floor((b * m) / batches), end = Math.floor(((b + 1) * m) / batches), N = end - start;
    // Host copies in CNHW, values in [0, 1].
    const x0 = new Float32Array(C * N * P);
    for (let n = 0; n < N; n++) {
      for (let ch = 0; ch < C; ch++) {
        for (let p = 0; p < P; p++) x0[(ch * N + n) * P + p] = images[(start + n) * size + ch * P + p] / 255;
      }
    }
    const x = x0.slice();
    if (o.randomStart) {
      for (let k = 0; k < x.length; k++) x[k] = Math.min(1, Math.max(0, x0[k] + (rand() * 2 - 1) * eps));
    }
    const y = rt.upload(Uint32Array.from(labels.subarray(start, end)), [N], "u32");
    const xn = new Float32Array(x.length);
    for (let s = 0; s < o.steps; s++) {
      for (let ch = 0; ch < C; ch++) {
        const mu = o.mean[ch], inv = 1 / o.std[ch];
        for (let k = ch * N * P; k < (ch + 1) * N * P; k++) xn[k] = (x[k] - mu) * inv;
      }
      const xt = rt.upload(xn, [C, N, H, W]);
      const logits = model.net.forward(rt, xt, "grad");
      const loss = crossEntropy(rt, logits, y, { gradScale: 1 });
      const dx = model.net.backward(rt, loss.dlogits, { needDx: true, paramGrads: false })!;
      const g = await rt.read(dx);
      [xt, logits, loss.value, loss.correct, loss.dlogits, dx].forEach((t) => t.release());
      // d/dx_raw = d/dx_norm / std: same sign per element.
      for (let k = 0; k < x.length; k++) {
        const v = x[k] + step * Math.sign(g[k]);
        x[k] = Math.min(1, Math.max(0, Math.min(x0[k] + eps, Math.max(x0[k] - eps, v))));
      }
    }
    y.release();
    for (let n = 0; n < N; n++) {
      for (let ch = 0; ch < C; ch++) {
        for (let p = 0; p < P; p++) {
          const orig = images[(start + n) * size + ch * P + p];
          const v = Math.round(x[(ch * N + n) * P + p] * 255);
          out[(start + n) * size + ch * P + p] = Math.min(
            255,
            Math.max(0, Math.min(orig + Math.floor(o.eps), Math.max(orig - Math.floor(o.eps), v))),
          );
        }
      }
    }
    o.log?.(`pgd: batch ${b + 1}/${batches}, ${end} of ${m} images, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return out;
}

/** A small CNN trained on the clean dataset (the PGD surrogate). */
export async function trainSurrogate(
  rt: Runtime,
  ds: Dataset,
  o: { widths: number[]; epochs: number; lr: number; batchSize: number; seed: number; mean: number[]; std: number[] },
  log?: (line: string) => void,
): Promise<Model> {
  const model = buildModel(rt, {
    kind: "small-cnn",
    input: [ds.c, ds.h, ds.w],
    classes: ds.classes.length,
    widths: o.widths,
  }, o.seed);
  const dev = uploadDataset(rt, ds);
  await trainModel(rt, model, dev, {
    epochs: o.epochs,
    lr: o.lr,
    batchSize: o.batchSize,
    seed: o.seed,
    mean: o.mean,
    std: o.std,
  }, {
    onEpoch: (e) =>
      log?.(
        `surrogate epoch ${e.epoch + 1}: loss ${e.loss.toFixed(3)}, train accuracy ${(100 * e.accuracy).toFixed(1)}%, ${
          e.seconds.toFixed(1)
        } s`,
      ),
  });
  dev.pixels.release();
  dev.labels.release();
  return model;
}
