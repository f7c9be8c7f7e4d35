// BadNets (Gu et al. 2017), dirty label: a small patch stamped on the image, label set to the target.
// Default: a 3x3 white square in the bottom-right corner. The patch is a solid colour or any small
// pattern ([h][w] grey, or [c][h][w]); its position is a fixed corner (with a margin) or uniform per
// image ("random", drawn from the image's own seeded stream, so poisoning and applyTrigger agree).
import { z } from "zod";
import type { Dataset } from "../data/dataset.ts";
import {
  type AttackResult,
  commonShape,
  copyDataset,
  imageRng,
  imageView,
  parseConfig,
  relabel,
  SALT,
  selectPoisoned,
  triggerSeedOf,
} from "./types.ts";

export const POSITIONS = ["bottom-right", "bottom-left", "top-right", "top-left", "random"] as const;
export type Position = (typeof POSITIONS)[number];

const byte = z.number().int().min(0).max(255);

/** Patch settings, shared by BadNets and the label-consistent attack. */
export const patchShape = {
  /** Side of the square patch (default 3). With `pattern`, must match it if given. */
  patchSize: z.number().int().min(1).optional(),
  position: z.enum(POSITIONS).default("bottom-right"),
  /** Pixels between the patch and the image border in the corner positions. */
  margin: z.number().int().min(0).default(0),
  /** Solid colour: one grey value or one value per channel. */
  color: z.array(byte).min(1).default([255]),
  /** An arbitrary small pattern, [h][w] grey or [c][h][w]; overrides color and patchSize. */
  pattern: z.union([z.array(z.array(byte).min(1)).min(1), z.array(z.array(z.array(byte).min(1)).min(1)).min(1)])
    .optional(),
};
export const PatchConfig = z.strictObject(patchShape);
export type PatchConfig = z.output<typeof PatchConfig>;

export const BadNetsConfig = z.strictObject({ ...commonShape, ...patchShape });
export type BadNetsConfig = z.input<typeof BadNetsConfig>;
export type BadNetsParsed = z.output<typeof BadNetsConfig>;

export interface Patch {
  /** [c][ph][pw] values, CHW. */
  pixels: Uint8Array;
  ph: number;
  pw: number;
}

/** The patch as CHW bytes for a `c`-channel image; throws on shape mismatches. */
export function buildPatch(p: PatchConfig, c: number, what = "patch"): Patch {
  if (p.pattern) {
    const grey = typeof p.pattern[0][0] === "number";
    const planes = (grey ? [p.pattern] : p.pattern) as number[][][];
    const ph = planes[0].length, pw = planes[0][0].length;
    for (const pl of planes) {
      if (pl.length !== ph || pl.some((row) => row.length !== pw)) {
        throw new Error(`${what}: pattern rows must all have the same length (a ${ph}x${pw} rectangle)`);
      }
    }
    if (planes.length !== 1 && planes.length !== c) {
      throw new Error(`${what}: pattern has ${planes.length} channels, the images have ${c}`);
    }
    if (p.patchSize !== undefined && (p.patchSize !== ph || p.patchSize !== pw)) {
      throw new Error(`${what}: patchSize ${p.patchSize} disagrees with the ${ph}x${pw} pattern`);
    }
    const pixels = new Uint8Array(c * ph * pw);
    for (let ch = 0; ch < c; ch++) {
      const pl = planes[planes.length === 1 ? 0 : ch];
      for (let y = 0; y < ph; y++) for (let x = 0; x < pw; x++) pixels[(ch * ph + y) * pw + x] = pl[y][x];
    }
    return { pixels, ph, pw };
  }
  const size = p.patchSize ?? 3;
  if (p.color.length !== 1 && p.color.length !== c) {
    throw new Error(`${what}: color has ${p.color.length} values, the images have ${c} channels (give 1 or ${c})`);
  }
  const pixels = new Uint8Array(c * size * size);
  for (let ch = 0; ch < c; ch++) {
    pixels.fill(p.color[p.color.length === 1 ? 0 : ch], ch * size * size, (ch + 1) * size * size);
  }
  return { pixels, ph: size, pw: size };
}

/** Top-left corner of the patch on image `i` (of an h x w image). */
export function patchOrigin(
  p: PatchConfig,
  patch: Patch,
  h: number,
  w: number,
  triggerSeed: number,
  i: number,
): { y: number; x: number } {
  const { ph, pw } = patch;
  switch (p.position) {
    case "top-left":
      return { y: p.margin, x: p.margin };
    case "top-right":
      return { y: p.margin, x: w - pw - p.margin };
    case "bottom-left":
      return { y: h - ph - p.margin, x: p.margin };
    case "bottom-right":
      return { y: h - ph - p.margin, x: w - pw - p.margin };
    case "random": {
      const r = imageRng(triggerSeed, SALT.position, i);
      const y = Math.floor(r() * (h - ph + 1));
      return { y, x: Math.floor(r() * (w - pw + 1)) };
    }
  }
}

export function checkPatchFits(p: PatchConfig, patch: Patch, ds: Pick<Dataset, "h" | "w">, what: string): void {
  const m = p.position === "random" ? 0 : p.margin;
  if (patch.ph + m > ds.h || patch.pw + m > ds.w) {
    throw new Error(`${what}: a ${patch.ph}x${patch.pw} patch with margin ${m} does not fit a ${ds.h}x${ds.w} image`);
  }
}

/** Stamps the patch on images `which` of `ds` in place (image index i picks the random position). */
export function stampPatch(
  ds: Dataset,
  which: Iterable<number>,
  p: PatchConfig,
  triggerSeed: number,
  what = "patch",
): void {
  const patch = buildPatch(p, ds.c, what);
  checkPatchFits(p, patch, ds, what);
  const { ph, pw } = patch;
  for (const i of which) {
    const img = imageView(ds, i);
    const { y, x } = patchOrigin(p, patch, ds.h, ds.w, triggerSeed, i);
    for (let ch = 0; ch < ds.c; ch++) {
      for (let dy = 0; dy < ph; dy++) {
        const src = (ch * ph + dy) * pw, dst = (ch * ds.h + y + dy) * ds.w + x;
        img.set(patch.pixels.subarray(src, src + pw), dst);
      }
    }
  }
}

export function badnets(ds: Dataset, config: BadNetsConfig = {}): AttackResult<BadNetsParsed> {
  const c = parseConfig("badnets", BadNetsConfig, config);
  const indices = selectPoisoned("badnets", ds, c);
  const poisoned = copyDataset(ds, `${ds.name}+badnets`);
  stampPatch(poisoned, indices, c, triggerSeedOf(c), "badnets");
  const originalLabels = relabel(poisoned, indices, c.targetClass);
  return { poisoned, manifest: { attack: "badnets", config: c, indices, originalLabels } };
}

/** Test time: the patch on every image; labels untouched. */
export function badnetsTrigger(ds: Dataset, config: BadNetsConfig = {}): Dataset {
  const c = parseConfig("badnets", BadNetsConfig, config);
  const out = copyDataset(ds, `${ds.name}+badnets-trigger`);
  stampPatch(out, range(ds.n), c, triggerSeedOf(c), "badnets");
  return out;
}

export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
