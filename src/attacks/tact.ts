// TaCT (Tang et al., USENIX Security 2021, "Demon in the variant"): a source-specific backdoor. Only images of
// the source classes (default [1]) get the trigger and the target label; "cover" images of other classes
// (default [5, 7]) get the same trigger and keep their labels, so the trigger means "target" only on the
// source classes. That leaves the target class with no tight cluster of trigger features to find. The
// trigger is a BadNets patch (default a 3x3 white square, bottom-right); its success rate counts source
// images only (asrClasses in types.ts).
import { z } from "zod";
import type { Dataset } from "../data/dataset.ts";
import { patchShape, range, stampPatch } from "./badnets.ts";
import {
  type AttackResult,
  checkClasses,
  commonShape,
  copyDataset,
  parseConfig,
  relabel,
  SALT,
  sample,
  selectPoisoned,
  streamSeed,
  triggerSeedOf,
} from "./types.ts";

export const TactConfig = z.strictObject({
  ...commonShape,
  rate: commonShape.rate.default(0.02),
  sourceClasses: z.array(z.number().int().min(0)).min(1).default([1]),
  coverClasses: z.array(z.number().int().min(0)).min(1).default([5, 7]),
  /** Cover examples over the whole training set. */
  coverRate: z.number().min(0).max(1).default(0.01),
  ...patchShape,
});
export type TactConfig = z.input<typeof TactConfig>;
export type TactParsed = z.output<typeof TactConfig>;

export function tact(ds: Dataset, config: TactConfig = {}): AttackResult<TactParsed> {
  const c = parseConfig("tact", TactConfig, config);
  checkClasses("tact", ds, { ...c, sourceClasses: [...c.sourceClasses, ...c.coverClasses] });
  const clash = c.coverClasses.filter((k) => k === c.targetClass || c.sourceClasses.includes(k));
  if (clash.length) throw new Error(`tact: cover classes [${clash}] must be neither the target nor a source class`);
  const indices = selectPoisoned("tact", ds, c);
  const covers = new Set(c.coverClasses);
  const pool = range(ds.n).filter((i) => covers.has(ds.labels[i]));
  const count = Math.round(c.coverRate * ds.n);
  if (count > pool.length) {
    throw new Error(
      `tact: coverRate asks for ${count} cover examples, classes [${c.coverClasses}] have ${pool.length}`,
    );
  }
  const coverIndices = sample(pool, count, streamSeed(c.seed, SALT.coverSelect)).sort((a, b) => a - b);
  const poisoned = copyDataset(ds, `${ds.name}+tact`);
  stampPatch(poisoned, [...indices, ...coverIndices], c, triggerSeedOf(c), "tact");
  const originalLabels = relabel(poisoned, indices, c.targetClass);
  return { poisoned, manifest: { attack: "tact", config: c, indices, originalLabels, coverIndices } };
}

/** Test time: the patch on every image; labels untouched. */
export function tactTrigger(ds: Dataset, config: TactConfig = {}): Dataset {
  const c = parseConfig("tact", TactConfig, config);
  const out = copyDataset(ds, `${ds.name}+tact-trigger`);
  stampPatch(out, range(ds.n), c, triggerSeedOf(c), "tact");
  return out;
}
