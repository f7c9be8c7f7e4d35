// Shared pieces of the backdoor attack suite: the manifest, the settings every attack takes, seeded
// selection of the examples to poison, per-image random streams, and config validation with readable
// errors. Attacks are pure functions of (dataset, config): they copy the dataset and never mutate it.
import { z } from "zod";
import { type Dataset, mulberry32 } from "../data/dataset.ts";

export const ATTACKS = [
  "badnets",
  "blended",
  "sig",
  "wanet",
  "label-consistent",
  "adap-blend",
  "adap-patch",
  "tact",
] as const;
export type AttackName = (typeof ATTACKS)[number];

/** Dirty-label attacks relabel to the target class; clean-label ones poison target-class images only. */
export const CLEAN_LABEL: Readonly<Record<AttackName, boolean>> = {
  badnets: false,
  blended: false,
  sig: true,
  wanet: false,
  "label-consistent": true,
  "adap-blend": false,
  "adap-patch": false,
  tact: false,
};

export interface Manifest<C = unknown> {
  attack: AttackName;
  /** The parsed config, defaults filled in: enough to redo the attack and its test-time trigger. */
  config: C;
  /** Poisoned (trigger-bearing) examples, ascending. This is the detection ground truth. */
  indices: number[];
  /** Labels of `indices` before poisoning, aligned with them. */
  originalLabels: number[];
  /**
   * WaNet only: "noise mode" examples, warped by a random field but keeping their labels. They are
   * modified but carry no trigger; they are not in `indices` and not counted by the rate.
   */
  noiseIndices?: number[];
  /**
   * The adaptive attacks and TaCT: "cover" examples that carry the trigger (or part of it) but keep their
   * labels, so that the trigger alone is no sign of the target class. Not in `indices`, not counted by the rate.
   */
  coverIndices?: number[];
}

export interface AttackResult<C = unknown> {
  poisoned: Dataset;
  manifest: Manifest<C>;
}

/** Settings shared by every attack (spread into each attack's zod object). */
export const commonShape = {
  /** All-to-one target class. */
  targetClass: z.number().int().min(0).default(0),
  /** Poisoned examples over the whole training set: round(rate * n) examples are poisoned. */
  rate: z.number().min(0).max(1).default(0.05),
  /** Poison only examples of these classes. Default: every class but the target (dirty label), the target (clean
   * label). */
  sourceClasses: z.array(z.number().int().min(0)).min(1).optional(),
  /** Seed of the example selection (and of the trigger, unless triggerSeed is given). */
  seed: z.number().int().default(0),
  /** Seed of the trigger itself (noise pattern, warp field, random patch positions); default `seed`. */
  triggerSeed: z.number().int().optional(),
};

export type CommonConfig = z.output<z.ZodObject<typeof commonShape>>;

/** Parses a config, turning zod's issues into one readable error naming the attack and each field. */
export function parseConfig<S extends z.ZodType>(attack: string, schema: S, config: unknown): z.output<S> {
  const r = schema.safeParse(config ?? {});
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => `  ${i.path.length ? i.path.join(".") : "(config)"}: ${i.message}`);
  throw new Error(`${attack} config is invalid:\n${lines.join("\n")}`);
}

export const triggerSeedOf = (c: CommonConfig): number => c.triggerSeed ?? c.seed;

/** A copy of the dataset (pixels and labels), so attacks never touch their input. */
export function copyDataset(ds: Dataset, name: string): Dataset {
  return { ...ds, name, images: ds.images.slice(), labels: ds.labels.slice(), classes: [...ds.classes] };
}

/** Throws unless the target and source classes name classes of `ds`. */
export function checkClasses(attack: string, ds: Dataset, c: CommonConfig): void {
  const k = ds.classes.length;
  if (c.targetClass >= k) {
    throw new Error(`${attack}: targetClass ${c.targetClass} is out of range 0..${k - 1} for ${ds.name}`);
  }
  for (const s of c.sourceClasses ?? []) {
    if (s >= k) throw new Error(`${attack}: source class ${s} is out of range 0..${k - 1} for ${ds.name}`);
  }
}

/** The source classes in effect (see commonShape.sourceClasses). */
export function sourceClassesOf(attack: AttackName, ds: Dataset, c: CommonConfig): number[] {
  checkClasses(attack, ds, c);
  if (CLEAN_LABEL[attack]) {
    const src = c.sourceClasses ?? [c.targetClass];
    if (src.some((s) => s !== c.targetClass)) {
      throw new Error(
        `${attack} is a clean-label attack: it poisons target-class images only, ` +
          `so sourceClasses may only be [${c.targetClass}], got [${src}]`,
      );
    }
    return [c.targetClass];
  }
  return c.sourceClasses
    ? [...new Set(c.sourceClasses)]
    : ds.classes.map((_, i) => i).filter((i) => i !== c.targetClass);
}

/**
 * round(rate * n) examples drawn without replacement from those whose label is a source class, with
 * a seeded Fisher–Yates over that pool; returned ascending. Throws when the pool is too small.
 */
export function selectPoisoned(attack: AttackName, ds: Dataset, c: CommonConfig): number[] {
  const sources = new Set(sourceClassesOf(attack, ds, c));
  const pool: number[] = [];
  for (let i = 0; i < ds.n; i++) if (sources.has(ds.labels[i])) pool.push(i);
  const count = Math.round(c.rate * ds.n);
  if (count > pool.length) {
    throw new Error(
      `${attack}: rate ${c.rate} of ${ds.n} examples asks for ${count} poisoned examples, ` +
        `but only ${pool.length} have a source class [${[...sources]}]`,
    );
  }
  return sample(pool, count, streamSeed(c.seed, SALT.select)).sort((a, b) => a - b);
}

/** `count` distinct elements of `pool` (a prefix of a seeded Fisher–Yates shuffle). */
export function sample(pool: readonly number[], count: number, seed: number): number[] {
  const a = pool.slice();
  const rand = mulberry32(seed);
  for (let j = 0; j < count; j++) {
    const k = j + Math.floor(rand() * (a.length - j));
    [a[j], a[k]] = [a[k], a[j]];
  }
  return a.slice(0, count);
}

/** Salts separating the random streams an attack draws from one seed. */
export const SALT = {
  select: 1,
  pattern: 2,
  position: 3,
  warp: 4,
  noise: 5,
  noiseSelect: 6,
  pgd: 7,
  coverSelect: 8,
  mask: 9,
} as const;

/** A 32-bit seed mixed from a seed and stream numbers (murmur3's finaliser after each word). */
export function streamSeed(seed: number, ...stream: number[]): number {
  let h = 0x9e3779b9 ^ (seed >>> 0);
  for (const s of [...stream, stream.length]) {
    h = Math.imul(h ^ (s >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** The random stream of image `i`: the same image index gives the same draws at poison and test time. */
export const imageRng = (seed: number, salt: number, i: number): () => number => mulberry32(streamSeed(seed, salt, i));

export const clampByte = (v: number): number => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));

/** Labels of `indices` before poisoning, and the relabelling to the target class (dirty label). */
export function relabel(poisoned: Dataset, indices: readonly number[], target: number): number[] {
  const original = indices.map((i) => poisoned.labels[i]);
  for (const i of indices) poisoned.labels[i] = target;
  return original;
}

/** An image's pixels (a view into the dataset; CHW). */
export const imageView = (ds: Dataset, i: number): Uint8Array => {
  const size = ds.c * ds.h * ds.w;
  return ds.images.subarray(i * size, (i + 1) * size);
};
