// The poisoned training set of a detect run as a pure function of its settings, so the single-machine
// pipeline, every volunteer (Deno or browser) and the coordinator build the same examples in the same
// order from the same CIFAR-10 training split.
import { z } from "zod";
import { ATTACKS, poison } from "../attacks/index.ts";
import { type Dataset, seededSubset } from "../data/dataset.ts";

export const TrainingSetSpec = z.object({
  train: z.number().int().positive().default(4000).describe("training examples drawn (seeded) from the training split"),
  seed: z.number().int().default(0).describe("the seed of the subset, the attack, the models and the search"),
  attack: z.enum(["none", ...ATTACKS]).default("badnets").describe("the attack planted in the training set"),
  attackConfig: z.record(z.string(), z.unknown()).default({ rate: 0.05 }).describe(
    'the attack\'s settings as JSON (src/attacks/types.ts), e.g. \'{"rate": 0.05, "targetClass": 0}\'',
  ),
});
export type TrainingSetSpec = z.input<typeof TrainingSetSpec>;

export interface TrainingSet {
  train: Dataset;
  /** Poisoned indices (the attack's manifest; evaluation only), or null without an attack. */
  poisoned: number[] | null;
}

/** Seeded subset of `full` (the CIFAR-10 training split), then the attack. */
export async function buildTrainingSet(full: Dataset, spec: TrainingSetSpec): Promise<TrainingSet> {
  const s = TrainingSetSpec.parse(spec);
  const clean = seededSubset(full, Math.min(s.train, full.n), s.seed);
  if (s.attack === "none") return { train: clean, poisoned: null };
  const r = await poison(s.attack, clean, s.attackConfig as never);
  return { train: r.poisoned, poisoned: r.manifest.indices };
}

/** Initialisation and shuffling seed of ensemble member m (the pipeline, the jobs and every cache key use it). */
export const ensembleSeed = (seed: number, m: number): number => seed * 1000 + m;
