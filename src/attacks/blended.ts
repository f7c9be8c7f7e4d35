// Blended (Chen et al. 2017), dirty label: x' = (1 - alpha) x + alpha t with a fixed full-image pattern t,
// rounded to bytes, label set to the target. t is seeded uniform noise (0..255 per pixel and channel)
// or a user image (interleaved RGB, e.g. from decodePngRgb), resized nearest-neighbour to the images.
import { z } from "zod";
import type { Dataset } from "../data/dataset.ts";
import { range } from "./badnets.ts";
import {
  type AttackResult,
  clampByte,
  commonShape,
  copyDataset,
  imageView,
  parseConfig,
  relabel,
  SALT,
  selectPoisoned,
  streamSeed,
  triggerSeedOf,
} from "./types.ts";
import { mulberry32 } from "../data/dataset.ts";

export const BlendPattern = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("noise") }),
  z.strictObject({
    kind: z.literal("image"),
    /** Interleaved RGB (HWC), w*h*3 bytes. */
    rgb: z.union([
      z.custom<Uint8Array>((v) => v instanceof Uint8Array, "expected a Uint8Array"),
      z.array(z.number().int().min(0).max(255)),
    ]),
    w: z.number().int().positive(),
    h: z.number().int().positive(),
    /** Where it came from (a file name), for the manifest. */
    source: z.string().optional(),
  }),
]);

export const BlendedConfig = z.strictObject({
  ...commonShape,
  alpha: z.number().gt(0).lt(1).default(0.2),
  pattern: BlendPattern.default({ kind: "noise" }),
});
export type BlendedConfig = z.input<typeof BlendedConfig>;
export type BlendedParsed = z.output<typeof BlendedConfig>;

/** The pattern t as one CHW image of ds's shape. */
export function blendPattern(c: BlendedParsed, ds: Pick<Dataset, "c" | "h" | "w">): Uint8Array {
  const { h, w } = ds;
  const out = new Uint8Array(ds.c * h * w);
  const p = c.pattern;
  if (p.kind === "noise") {
    const rand = mulberry32(streamSeed(triggerSeedOf(c), SALT.pattern));
    for (let k = 0; k < out.length; k++) out[k] = Math.floor(rand() * 256);
    return out;
  }
  if (p.rgb.length !== p.w * p.h * 3) {
    throw new Error(`blended: pattern image has ${p.rgb.length} bytes, expected ${p.w}x${p.h}x3 RGB`);
  }
  for (let y = 0; y < h; y++) {
    const sy = Math.min(p.h - 1, Math.floor(((y + 0.5) * p.h) / h));
    for (let x = 0; x < w; x++) {
      const sx = Math.min(p.w - 1, Math.floor(((x + 0.5) * p.w) / w));
      const s = (sy * p.w + sx) * 3;
      if (ds.c === 3) { for (let ch = 0; ch < 3; ch++) out[(ch * h + y) * w + x] = p.rgb[s + ch]; }
      else if (ds.c === 1) out[y * w + x] = Math.round((p.rgb[s] + p.rgb[s + 1] + p.rgb[s + 2]) / 3);
      else throw new Error(`blended: an image pattern needs 1- or 3-channel images, got ${ds.c}`);
    }
  }
  return out;
}

function blendInPlace(ds: Dataset, which: Iterable<number>, pattern: Uint8Array, alpha: number): void {
  for (const i of which) {
    const img = imageView(ds, i);
    for (let k = 0; k < img.length; k++) img[k] = clampByte((1 - alpha) * img[k] + alpha * pattern[k]);
  }
}

export function blended(ds: Dataset, config: BlendedConfig = {}): AttackResult<BlendedParsed> {
  const c = parseConfig("blended", BlendedConfig, config);
  const indices = selectPoisoned("blended", ds, c);
  const poisoned = copyDataset(ds, `${ds.name}+blended`);
  blendInPlace(poisoned, indices, blendPattern(c, ds), c.alpha);
  const originalLabels = relabel(poisoned, indices, c.targetClass);
  return { poisoned, manifest: { attack: "blended", config: c, indices, originalLabels } };
}

export function blendedTrigger(ds: Dataset, config: BlendedConfig = {}): Dataset {
  const c = parseConfig("blended", BlendedConfig, config);
  const out = copyDataset(ds, `${ds.name}+blended-trigger`);
  blendInPlace(out, range(ds.n), blendPattern(c, ds), c.alpha);
  return out;
}
