// The adaptive attacks of Qi et al. (ICLR 2023, "Revisiting the assumption of latent separability for
// backdoor defenses"), built to defeat defenses that separate poisons from clean examples in a model's
// latent space. Two devices, in both attacks:
// - "cover" (regularisation) examples carry the trigger but keep their true labels, so the trigger alone
//   does not make a tight cluster of target-labelled examples;
// - at poisoning time only part of the trigger is applied; at test time all of it.
// Adap-Blend: a blend pattern cut into a grid of pieces (default 4x4); each poison and cover image gets a
//   random half of the pieces at alpha 0.15; the test trigger is the whole pattern at alpha 0.2.
// Adap-Patch: k small patches (default 4, seeded colours, one per corner); each poison and cover image gets
//   one of them (the first quarter of poisons patch 0, and so on) at its own alpha; the test trigger is all
//   k patches at full opacity.
// Poisons are drawn as every dirty-label attack draws them; covers from the rest, any class.
import { z } from "zod";
import type { Dataset } from "../data/dataset.ts";
import { range } from "./badnets.ts";
import { BlendPattern, blendPattern } from "./blended.ts";
import {
  type AttackResult,
  clampByte,
  commonShape,
  copyDataset,
  imageView,
  parseConfig,
  relabel,
  SALT,
  sample,
  selectPoisoned,
  streamSeed,
  triggerSeedOf,
} from "./types.ts";
import { mulberry32 } from "../data/dataset.ts";

const coverShape = {
  /** Cover examples (trigger, true label) over the whole training set; default: the same as `rate`. */
  coverRate: z.number().min(0).max(1).optional(),
};

export const AdapBlendConfig = z.strictObject({
  ...commonShape,
  ...coverShape,
  alpha: z.number().gt(0).lt(1).default(0.15),
  testAlpha: z.number().gt(0).lte(1).default(0.2),
  /** Pieces of the pattern: a square number, the grid's cells. */
  pieces: z.number().int().min(1).default(16).refine((p) => Number.isInteger(Math.sqrt(p)), "a square number"),
  /** Fraction of the pieces left out of each poison and cover image. */
  maskRate: z.number().min(0).lt(1).default(0.5),
  pattern: BlendPattern.default({ kind: "noise" }),
});
export type AdapBlendConfig = z.input<typeof AdapBlendConfig>;
export type AdapBlendParsed = z.output<typeof AdapBlendConfig>;

export const AdapPatchConfig = z.strictObject({
  ...commonShape,
  ...coverShape,
  /** Each patch's opacity at poisoning time; their number is the number of patches (at most 4, one per corner). */
  alphas: z.array(z.number().gt(0).lte(1)).min(1).max(4).default([0.5, 0.2, 0.5, 0.3]),
  testAlpha: z.number().gt(0).lte(1).default(1),
  patchSize: z.number().int().min(1).default(4),
  margin: z.number().int().min(0).default(1),
});
export type AdapPatchConfig = z.input<typeof AdapPatchConfig>;
export type AdapPatchParsed = z.output<typeof AdapPatchConfig>;

/** Poisons (dirty label), then covers drawn from the other examples. */
function poisonsAndCovers(
  attack: "adap-blend" | "adap-patch",
  ds: Dataset,
  c: z.output<z.ZodObject<typeof commonShape & typeof coverShape>>,
): { indices: number[]; coverIndices: number[] } {
  const indices = selectPoisoned(attack, ds, c);
  const taken = new Set(indices);
  const rest = range(ds.n).filter((i) => !taken.has(i));
  const count = Math.round((c.coverRate ?? c.rate) * ds.n);
  if (count > rest.length) {
    throw new Error(`${attack}: coverRate asks for ${count} cover examples, only ${rest.length} are not poisoned`);
  }
  return { indices, coverIndices: sample(rest, count, streamSeed(c.seed, SALT.coverSelect)).sort((a, b) => a - b) };
}

/** Blend `pattern` into image i at alpha, on the grid cells whose `keep` is set (all cells without `keep`). */
function blendPieces(img: Uint8Array, ds: Dataset, pattern: Uint8Array, alpha: number, grid: number, keep?: boolean[]) {
  const { c, h, w } = ds;
  for (let y = 0; y < h; y++) {
    const gy = Math.floor((y * grid) / h);
    for (let x = 0; x < w; x++) {
      if (keep && !keep[gy * grid + Math.floor((x * grid) / w)]) continue;
      for (let ch = 0; ch < c; ch++) {
        const k = (ch * h + y) * w + x;
        img[k] = clampByte((1 - alpha) * img[k] + alpha * pattern[k]);
      }
    }
  }
}

/** The pieces image i keeps: all but round(maskRate * pieces), drawn from the image's own stream. */
function keptPieces(c: AdapBlendParsed, i: number): boolean[] {
  const masked = sample(range(c.pieces), Math.round(c.maskRate * c.pieces), streamSeed(triggerSeedOf(c), SALT.mask, i));
  const keep = new Array<boolean>(c.pieces).fill(true);
  for (const p of masked) keep[p] = false;
  return keep;
}

export function adapBlend(ds: Dataset, config: AdapBlendConfig = {}): AttackResult<AdapBlendParsed> {
  const c = parseConfig("adap-blend", AdapBlendConfig, config);
  const { indices, coverIndices } = poisonsAndCovers("adap-blend", ds, c);
  const poisoned = copyDataset(ds, `${ds.name}+adap-blend`);
  const pattern = blendPattern(c, ds);
  const grid = Math.round(Math.sqrt(c.pieces));
  for (const i of [...indices, ...coverIndices]) {
    blendPieces(imageView(poisoned, i), ds, pattern, c.alpha, grid, keptPieces(c, i));
  }
  const originalLabels = relabel(poisoned, indices, c.targetClass);
  return { poisoned, manifest: { attack: "adap-blend", config: c, indices, originalLabels, coverIndices } };
}

/** Test time: the whole pattern at testAlpha on every image; labels untouched. */
export function adapBlendTrigger(ds: Dataset, config: AdapBlendConfig = {}): Dataset {
  const c = parseConfig("adap-blend", AdapBlendConfig, config);
  const out = copyDataset(ds, `${ds.name}+adap-blend-trigger`);
  const pattern = blendPattern(c, ds);
  for (let i = 0; i < ds.n; i++) blendPieces(imageView(out, i), ds, pattern, c.testAlpha, 1);
  return out;
}

interface CornerPatch {
  y: number;
  x: number;
  pixels: Uint8Array; // CHW, patchSize^2 per channel
}

/** The k patches: seeded colours, patch j in corner j (top-left, top-right, bottom-left, bottom-right). */
function cornerPatches(c: AdapPatchParsed, ds: Pick<Dataset, "c" | "h" | "w">): CornerPatch[] {
  const p = c.patchSize, m = c.margin;
  if (p + m > ds.h || p + m > ds.w) {
    throw new Error(`adap-patch: a ${p}x${p} patch with margin ${m} does not fit a ${ds.h}x${ds.w} image`);
  }
  const rand = mulberry32(streamSeed(triggerSeedOf(c), SALT.pattern));
  return c.alphas.map((_, j) => ({
    y: j < 2 ? m : ds.h - p - m,
    x: j % 2 === 0 ? m : ds.w - p - m,
    pixels: Uint8Array.from({ length: ds.c * p * p }, () => Math.floor(rand() * 256)),
  }));
}

function stampCorner(img: Uint8Array, ds: Dataset, patch: CornerPatch, size: number, alpha: number): void {
  for (let ch = 0; ch < ds.c; ch++) {
    for (let dy = 0; dy < size; dy++) {
      for (let dx = 0; dx < size; dx++) {
        const k = (ch * ds.h + patch.y + dy) * ds.w + patch.x + dx;
        img[k] = clampByte((1 - alpha) * img[k] + alpha * patch.pixels[(ch * size + dy) * size + dx]);
      }
    }
  }
}

export function adapPatch(ds: Dataset, config: AdapPatchConfig = {}): AttackResult<AdapPatchParsed> {
  const c = parseConfig("adap-patch", AdapPatchConfig, config);
  const { indices, coverIndices } = poisonsAndCovers("adap-patch", ds, c);
  const poisoned = copyDataset(ds, `${ds.name}+adap-patch`);
  const patches = cornerPatches(c, ds);
  const k = patches.length;
  for (const group of [indices, coverIndices]) {
    group.forEach((i, order) => {
      const j = Math.min(k - 1, Math.floor((order * k) / group.length));
      stampCorner(imageView(poisoned, i), ds, patches[j], c.patchSize, c.alphas[j]);
    });
  }
  const originalLabels = relabel(poisoned, indices, c.targetClass);
  return { poisoned, manifest: { attack: "adap-patch", config: c, indices, originalLabels, coverIndices } };
}

/** Test time: every patch at testAlpha on every image; labels untouched. */
export function adapPatchTrigger(ds: Dataset, config: AdapPatchConfig = {}): Dataset {
  const c = parseConfig("adap-patch", AdapPatchConfig, config);
  const out = copyDataset(ds, `${ds.name}+adap-patch-trigger`);
  const patches = cornerPatches(c, ds);
  for (let i = 0; i < ds.n; i++) {
    for (const p of patches) stampCorner(imageView(out, i), ds, p, c.patchSize, c.testAlpha);
  }
  return out;
}
