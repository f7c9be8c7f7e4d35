// Datamodel subset masks: model r of a job trains on about alpha*n of the n training examples. The subset
// is a pure function of (job seed, split, model index), so a mask is never stored or sent: the trainer,
// the regression and every volunteer regenerate it from those three numbers alone.
import { rngBits } from "../../kernels/random.ts";
import { seededIndices } from "../data/dataset.ts";

/**
 * Mask streams: the models the regression fits ("train") and the fresh models that score it ("heldout",
 * for LDS). Different streams never share a subset seed.
 */
export const SPLITS = ["train", "heldout"] as const;
export type Split = (typeof SPLITS)[number];

export interface MaskSpec {
  n: number;
  /** Fraction of the examples in each subset (0.5 in the datamodels paper). */
  alpha: number;
  seed: number;
}

/** Subset size: round(alpha n), at least 1 and at most n. */
export function maskSize(spec: Pick<MaskSpec, "n" | "alpha">): number {
  if (!(spec.alpha > 0 && spec.alpha <= 1)) throw new Error(`datamodels: alpha must be in (0, 1], got ${spec.alpha}`);
  return Math.min(spec.n, Math.max(1, Math.round(spec.alpha * spec.n)));
}

/** Seed of model `model`'s subset (and of its initialisation and shuffles): the counter-based hash of all three. */
export function subsetSeed(seed: number, split: Split, model: number): number {
  if (!Number.isInteger(model) || model < 0) {
    throw new Error(`datamodels: model index must be a non-negative integer, got ${model}`);
  }
  return rngBits(seed, 0x444d0000 + SPLITS.indexOf(split), model);
}

/** Sorted indices of the examples in the subset of model `model`. */
export function maskIndices(spec: MaskSpec, split: Split, model: number): Uint32Array {
  return seededIndices(spec.n, maskSize(spec), subsetSeed(spec.seed, split, model)).sort();
}

/** The subset as n bytes, 1 = in the subset. */
export function maskBits(spec: MaskSpec, split: Split, model: number, out = new Uint8Array(spec.n)): Uint8Array {
  out.fill(0);
  for (const j of maskIndices(spec, split, model)) out[j] = 1;
  return out;
}
