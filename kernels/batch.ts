// Training batches assembled on the device from a dataset kept there (u8 pixels packed in u32), with
// random crop + flip augmentation and per-channel normalisation. Output images are CNHW [C, B, H, W].
// Binding contract: pixels, order, labels (read u32), x (read_write f32), x4 (x as vec4s), y (read_write
// u32); uniform { mean, inv_std (vec4), B, C, H, W, start, pad, flip, seed, stream }; entries images,
// images4 (W % 4 == 0: four pixels of a row per invocation) and targets.
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { RANDOM_LIB, rngBits } from "./random.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";

export const batchOp = defineOp<Variant>("batch", "gather + augment + normalise a batch from device-resident data");
batchOp.register({ name: "default", file: "wgsl/batch.wgsl", code: RANDOM_LIB + (await wgsl("batch.wgsl")) });

export interface DeviceDataset {
  /** u8 pixels, four per u32 word, images back to back in CHW order. */
  pixels: Tensor<"u32">;
  labels: Tensor<"u32">;
  n: number;
  c: number;
  h: number;
  w: number;
}

export interface BatchSpec {
  /** Shuffled example indices of the epoch (u32, on the device). */
  order: Tensor<"u32">;
  start: number;
  size: number;
  mean: number[];
  std: number[];
  /** Crop padding in pixels (0 = no crop) and horizontal flips. */
  pad: number;
  flip: boolean;
  seed: number;
  /** Usually the epoch number, so every epoch draws fresh augmentations. */
  stream: number;
}

/** Put a dataset's pixels and labels on the device (one upload each). */
/** Images on the host: u8 CHW, back to back (a Dataset of src/data/dataset.ts is one). */
export interface HostImages {
  images: Uint8Array;
  labels: ArrayLike<number>;
  n: number;
  c: number;
  h: number;
  w: number;
}

export function uploadDataset(rt: Runtime, ds: HostImages): DeviceDataset {
  const { images, labels, n, c, h, w } = ds;
  if (c > 4) throw new Error(`batch: at most 4 channels, got ${c}`);
  if (images.length !== n * c * h * w) {
    throw new Error(`uploadDataset: ${images.length} bytes, expected ${n}x${c}x${h}x${w}`);
  }
  const padded = new Uint8Array(Math.ceil(images.length / 4) * 4);
  padded.set(images);
  return {
    pixels: rt.upload(new Uint32Array(padded.buffer), [padded.length / 4], "u32"),
    labels: rt.upload(Uint32Array.from(labels), [n], "u32"),
    n,
    c,
    h,
    w,
  };
}

export function releaseDataset(ds: DeviceDataset): void {
  ds.pixels.release();
  ds.labels.release();
}

export function assembleBatch(rt: Runtime, ds: DeviceDataset, s: BatchSpec): { x: Tensor; y: Tensor<"u32"> } {
  if (s.start + s.size > s.order.size) {
    throw new Error(`batch [${s.start}, ${s.start + s.size}) runs past the order of ${s.order.size}`);
  }
  if (s.pad > 127) throw new Error("batch: crop padding above 127 pixels is not supported");
  const v = batchOp.active;
  const x = rt.empty([ds.c, s.size, ds.h, ds.w]);
  const y = rt.empty([s.size], "u32");
  const four = (a: number[], fill: number) => [0, 1, 2, 3].map((i) => a[i] ?? fill);
  const uniforms = {
    mean: four(s.mean, 0),
    inv_std: four(s.std.map((d) => 1 / d), 1),
    B: s.size,
    C: ds.c,
    H: ds.h,
    W: ds.w,
    start: s.start,
    pad: s.pad,
    flip: +s.flip,
    seed: s.seed >>> 0,
    stream: s.stream >>> 0,
  };
  const buffers = { pixels: ds.pixels, order: s.order, labels: ds.labels, x, x4: x, y };
  const vec4 = ds.w % 4 === 0;
  rt.dispatch({
    label: `batch.images/${v.name}`,
    code: v.code,
    entryPoint: vec4 ? "images4" : "images",
    constants: { WG: 256 },
    buffers,
    uniforms,
    workgroups: grid1d(vec4 ? x.size / 4 : x.size, 256),
  });
  rt.dispatch({
    label: `batch.targets/${v.name}`,
    code: v.code,
    entryPoint: "targets",
    constants: { WG: 256 },
    buffers,
    uniforms,
    workgroups: [Math.ceil(s.size / 256)],
  });
  return { x, y };
}

/** CPU twin: the same batch in float64. */
export function assembleBatchRef(
  images: Uint8Array,
  labels: ArrayLike<number>,
  c: number,
  h: number,
  w: number,
  order: ArrayLike<number>,
  s: Omit<BatchSpec, "order">,
) {
  const x = new Float64Array(c * s.size * h * w);
  const y = new Float64Array(s.size);
  for (let b = 0; b < s.size; b++) {
    const pos = s.start + b;
    const ex = order[pos];
    y[b] = labels[ex];
    let dx = 0, dy = 0, flip = false;
    if (s.pad > 0 || s.flip) {
      const bits = rngBits(s.seed, s.stream, pos);
      const span = 2 * s.pad + 1;
      flip = s.flip && ((bits >>> 16) & 1) === 1;
      dy = (((bits >>> 8) & 0xff) % span) - s.pad;
      dx = ((bits & 0xff) % span) - s.pad;
    }
    for (let ch = 0; ch < c; ch++) {
      for (let i = 0; i < h; i++) {
        for (let j = 0; j < w; j++) {
          const sh = i + dy;
          const sw = (flip ? w - 1 - j : j) + dx;
          const v = sh >= 0 && sh < h && sw >= 0 && sw < w ? images[ex * c * h * w + ch * h * w + sh * w + sw] : 0;
          x[((ch * s.size + b) * h + i) * w + j] = (v / 255 - s.mean[ch]) / s.std[ch];
        }
      }
    }
  }
  return { x, y };
}
