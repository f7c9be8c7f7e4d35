// WaNet (Nguyen & Tran 2021), dirty label: every poisoned image is resampled through one fixed, smooth
// warping field; labels set to the target. As in the paper's code:
//   ins   = uniform(-1, 1) of shape [2, k, k], divided by mean(|ins|)
//   noise = upsample(ins) to [2, H, W] (bicubic, align_corners; bilinear optional)
//   grid  = clamp((identity + s * noise / H) * gridRescale, -1, 1)   (normalised coordinates)
// and "noise mode" examples (crossRatio x the poison count, drawn from the other examples) are warped
// by grid + uniform(-1, 1) / H per pixel (a fresh draw per image) but keep their labels. Resampling is
// bilinear with align_corners (grid_sample): a normalised coordinate g is pixel (g + 1) / 2 * (W - 1).
import { z } from "zod";
import { type Dataset, mulberry32 } from "../data/dataset.ts";
import { range } from "./badnets.ts";
import {
  type AttackResult,
  clampByte,
  commonShape,
  copyDataset,
  imageRng,
  imageView,
  parseConfig,
  relabel,
  SALT,
  sample,
  selectPoisoned,
  streamSeed,
} from "./types.ts";

export const WanetConfig = z.strictObject({
  ...commonShape,
  /** Control grid size. */
  k: z.number().int().min(2).default(4),
  /** Warp strength. */
  s: z.number().positive().default(0.5),
  gridRescale: z.number().positive().default(1),
  /** Noise-mode examples per poisoned example (0 disables them). */
  crossRatio: z.number().min(0).default(2),
  upsample: z.enum(["bicubic", "bilinear"]).default("bicubic"),
});
export type WanetConfig = z.input<typeof WanetConfig>;
export type WanetParsed = z.output<typeof WanetConfig>;

/** The normalised control grid [2][k][k] (component 0 horizontal, 1 vertical). */
export function wanetControlGrid(c: Pick<WanetParsed, "k"> & { seed: number; triggerSeed?: number }): Float64Array {
  const rand = mulberry32(streamSeed(c.triggerSeed ?? c.seed, SALT.warp));
  const ins = Float64Array.from({ length: 2 * c.k * c.k }, () => rand() * 2 - 1);
  const meanAbs = ins.reduce((s, v) => s + Math.abs(v), 0) / ins.length;
  return ins.map((v) => v / meanAbs);
}

/** PyTorch's cubic convolution weights (A = -0.75) for fractional offset t. */
function cubicWeights(t: number): [number, number, number, number] {
  const A = -0.75;
  const near = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1;
  const far = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return [far(t + 1), near(t), near(1 - t), far(2 - t)];
}

/** Upsamples a k x k plane to h x w (align_corners), bicubic with clamped borders or bilinear. */
export function upsample(
  plane: ArrayLike<number>,
  k: number,
  h: number,
  w: number,
  mode: "bicubic" | "bilinear",
): Float64Array {
  const out = new Float64Array(h * w);
  const at = (y: number, x: number) => plane[Math.min(k - 1, Math.max(0, y)) * k + Math.min(k - 1, Math.max(0, x))];
  for (let y = 0; y < h; y++) {
    const fy = h > 1 ? (y * (k - 1)) / (h - 1) : 0, y0 = Math.floor(fy), ty = fy - y0;
    for (let x = 0; x < w; x++) {
      const fx = w > 1 ? (x * (k - 1)) / (w - 1) : 0, x0 = Math.floor(fx), tx = fx - x0;
      let v = 0;
      if (mode === "bilinear") {
        v = (1 - ty) * ((1 - tx) * at(y0, x0) + tx * at(y0, x0 + 1)) +
          ty * ((1 - tx) * at(y0 + 1, x0) + tx * at(y0 + 1, x0 + 1));
      } else {
        const wy = cubicWeights(ty), wx = cubicWeights(tx);
        for (let a = 0; a < 4; a++) for (let b = 0; b < 4; b++) v += wy[a] * wx[b] * at(y0 - 1 + a, x0 - 1 + b);
      }
      out[y * w + x] = v;
    }
  }
  return out;
}

export interface WarpField {
  /** Normalised sampling grid, gx and gy per output pixel (row-major h*w), after clamping. */
  gx: Float64Array;
  gy: Float64Array;
  /** Displacement in pixels: output pixel (y, x) samples the input at (y + dy, x + dx). */
  dx: Float64Array;
  dy: Float64Array;
}

/** The trigger warp for h x w images. */
export function wanetField(config: WanetConfig, h: number, w: number): WarpField {
  const c = parseConfig("wanet", WanetConfig, config);
  const ins = wanetControlGrid(c);
  const kk = c.k * c.k;
  const nx = upsample(ins.subarray(0, kk), c.k, h, w, c.upsample);
  const ny = upsample(ins.subarray(kk), c.k, h, w, c.upsample);
  const gx = new Float64Array(h * w), gy = new Float64Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      const ix = w > 1 ? -1 + (2 * x) / (w - 1) : 0, iy = h > 1 ? -1 + (2 * y) / (h - 1) : 0;
      gx[p] = clamp1((ix + (c.s * nx[p]) / h) * c.gridRescale);
      gy[p] = clamp1((iy + (c.s * ny[p]) / h) * c.gridRescale);
    }
  }
  return withDisplacement(gx, gy, h, w);
}

const clamp1 = (v: number) => (v < -1 ? -1 : v > 1 ? 1 : v);

function withDisplacement(gx: Float64Array, gy: Float64Array, h: number, w: number): WarpField {
  const dx = new Float64Array(h * w), dy = new Float64Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      dx[p] = ((gx[p] + 1) / 2) * (w - 1) - x;
      dy[p] = ((gy[p] + 1) / 2) * (h - 1) - y;
    }
  }
  return { gx, gy, dx, dy };
}

/** The field of a noise-mode example: the trigger grid plus uniform(-1, 1) / H per pixel, clamped. */
export function noiseField(field: WarpField, h: number, w: number, rand: () => number): WarpField {
  const gx = field.gx.map((g) => clamp1(g + (rand() * 2 - 1) / h));
  const gy = field.gy.map((g) => clamp1(g + (rand() * 2 - 1) / h));
  return withDisplacement(gx, gy, h, w);
}

/** Bilinear resampling of one CHW image in place through a field (sources inside the image). */
export function warpImage(img: Uint8Array, c: number, h: number, w: number, f: WarpField): void {
  const src = img.slice();
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      const sx = Math.min(w - 1, Math.max(0, x + f.dx[p])), sy = Math.min(h - 1, Math.max(0, y + f.dy[p]));
      const x0 = Math.min(w - 2, Math.floor(sx)), y0 = Math.min(h - 2, Math.floor(sy));
      const tx = sx - x0, ty = sy - y0;
      for (let ch = 0; ch < c; ch++) {
        const b = ch * h * w;
        const v = (1 - ty) * ((1 - tx) * src[b + y0 * w + x0] + tx * src[b + y0 * w + x0 + 1]) +
          ty * ((1 - tx) * src[b + (y0 + 1) * w + x0] + tx * src[b + (y0 + 1) * w + x0 + 1]);
        img[b + p] = clampByte(v);
      }
    }
  }
}

export function wanet(ds: Dataset, config: WanetConfig = {}): AttackResult<WanetParsed> {
  const c = parseConfig("wanet", WanetConfig, config);
  if (ds.h < 2 || ds.w < 2) throw new Error(`wanet: images must be at least 2x2, got ${ds.h}x${ds.w}`);
  const indices = selectPoisoned("wanet", ds, c);
  const taken = new Set(indices);
  const rest = range(ds.n).filter((i) => !taken.has(i));
  const nNoise = Math.round(c.crossRatio * indices.length);
  if (nNoise > rest.length) {
    throw new Error(
      `wanet: crossRatio ${c.crossRatio} asks for ${nNoise} noise-mode examples, ` +
        `only ${rest.length} examples are not poisoned`,
    );
  }
  const noiseIndices = sample(rest, nNoise, streamSeed(c.seed, SALT.noiseSelect)).sort((a, b) => a - b);
  const poisoned = copyDataset(ds, `${ds.name}+wanet`);
  const field = wanetField(c, ds.h, ds.w);
  for (const i of indices) warpImage(imageView(poisoned, i), ds.c, ds.h, ds.w, field);
  for (const i of noiseIndices) {
    warpImage(imageView(poisoned, i), ds.c, ds.h, ds.w, noiseField(field, ds.h, ds.w, imageRng(c.seed, SALT.noise, i)));
  }
  const originalLabels = relabel(poisoned, indices, c.targetClass);
  return { poisoned, manifest: { attack: "wanet", config: c, indices, originalLabels, noiseIndices } };
}

export function wanetTrigger(ds: Dataset, config: WanetConfig = {}): Dataset {
  const c = parseConfig("wanet", WanetConfig, config);
  const out = copyDataset(ds, `${ds.name}+wanet-trigger`);
  const field = wanetField(c, ds.h, ds.w);
  for (let i = 0; i < ds.n; i++) warpImage(imageView(out, i), ds.c, ds.h, ds.w, field);
  return out;
}
