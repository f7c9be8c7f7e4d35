// SIG (Barni et al. 2019), clean label: a horizontal sinusoidal signal v(i, j) = delta * sin(2 pi j f / W)
// (it varies along the columns j, so it draws vertical stripes), added to every channel of target-class
// images, rounded and clipped to 0..255. Labels are never changed.
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
  selectPoisoned,
} from "./types.ts";

export const SigConfig = z.strictObject({
  ...commonShape,
  /** Amplitude in pixel levels (of 255); the benchmarks use 20 to 40. */
  delta: z.number().gt(0).max(255).default(20),
  /** Periods across the image width. */
  frequency: z.number().positive().default(6),
});
export type SigConfig = z.input<typeof SigConfig>;
export type SigParsed = z.output<typeof SigConfig>;

/** The signal of one row, v[j] for j in 0..w-1. */
export function sigSignal(c: Pick<SigParsed, "delta" | "frequency">, w: number): Float64Array {
  return Float64Array.from({ length: w }, (_, j) => c.delta * Math.sin((2 * Math.PI * j * c.frequency) / w));
}

function addSignal(ds: Dataset, which: Iterable<number>, c: SigParsed): void {
  const v = sigSignal(c, ds.w);
  for (const i of which) {
    const img = imageView(ds, i);
    for (let row = 0; row < ds.c * ds.h; row++) {
      for (let j = 0; j < ds.w; j++) img[row * ds.w + j] = clampByte(img[row * ds.w + j] + v[j]);
    }
  }
}

export function sig(ds: Dataset, config: SigConfig = {}): AttackResult<SigParsed> {
  const c = parseConfig("sig", SigConfig, config);
  const indices = selectPoisoned("sig", ds, c);
  const poisoned = copyDataset(ds, `${ds.name}+sig`);
  addSignal(poisoned, indices, c);
  return {
    poisoned,
    manifest: { attack: "sig", config: c, indices, originalLabels: indices.map((i) => ds.labels[i]) },
  };
}

export function sigTrigger(ds: Dataset, config: SigConfig = {}): Dataset {
  const c = parseConfig("sig", SigConfig, config);
  const out = copyDataset(ds, `${ds.name}+sig-trigger`);
  addSignal(out, range(ds.n), c);
  return out;
}
