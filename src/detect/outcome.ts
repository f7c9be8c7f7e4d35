// The outcome of a model on the clean test set: clean accuracy, and the attack success rate (ASR), the
// fraction of test images of the attacked classes (asrClasses) that the model classifies as the target once
// the trigger is applied.
import { type DeviceDataset, releaseDataset, uploadDataset } from "../../kernels/batch.ts";
import { applyTrigger, asrClasses, type AttackName } from "../attacks/index.ts";
import { loadCifar10 } from "../data/cifar.ts";
import { detectFormat, loadData } from "../data/formats.ts";
import { type Dataset, seededSubset, subset } from "../data/dataset.ts";
import type { Runtime } from "../gpu/runtime.ts";
import type { Model } from "../nn/models.ts";
import { evaluate } from "../nn/train.ts";
import type { Cfg } from "./config.ts";

export interface Outcome {
  clean_acc: number;
  asr: number | null;
}

/** The attack whose success rate is measured (null: none known). */
export type Trigger = { attack: AttackName; attackConfig: Record<string, unknown> } | null;

/** The test split of a volunteer job's dataset: a seeded subset when `testSize` is set (as data.ts draws it). */
/** The held-out split the outcome is measured on: `cfg.data`'s test split (or `split`, already loaded: a
 *  volunteer's download), seeded down to `cfg.testSize`. */
export async function loadTestSet(cfg: Pick<Cfg, "data" | "testSize" | "seed">, split?: Dataset): Promise<Dataset> {
  // CIFAR-10: the test batch alone (loadData would decode the 50,000 training images too).
  const fullTest = split ??
    ((await detectFormat(cfg.data)) === "cifar"
      ? await loadCifar10(cfg.data, { split: "test", recordsPerFile: null })
      : (await loadData(cfg.data)).test);
  if (!fullTest) throw new Error(`${cfg.data}: the dataset has no test split`);
  return cfg.testSize && cfg.testSize < fullTest.n ? seededSubset(fullTest, cfg.testSize, cfg.seed + 1) : fullTest;
}

export async function evaluateOutcome(
  rt: Runtime,
  model: Model,
  deviceTest: DeviceDataset,
  test: Dataset,
  trigger: Trigger,
): Promise<Outcome> {
  const ev = await evaluate(rt, model, deviceTest);
  return { clean_acc: ev.accuracy, asr: trigger ? await attackSuccess(rt, model, test, trigger) : null };
}

export async function attackSuccess(
  rt: Runtime,
  model: Model,
  test: Dataset,
  trigger: NonNullable<Trigger>,
): Promise<number> {
  const target = (trigger.attackConfig as { targetClass?: number }).targetClass ?? 0;
  const attacked = new Set(asrClasses(trigger.attack, trigger.attackConfig as never, test.classes.length));
  const others = Array.from({ length: test.n }, (_, i) => i).filter((i) => attacked.has(test.labels[i]));
  const triggered = applyTrigger(trigger.attack, trigger.attackConfig as never, subset(test, others));
  triggered.labels.fill(target); // "correct" now means "classified as the target"
  const device = uploadDataset(rt, triggered);
  try {
    return (await evaluate(rt, model, device)).accuracy;
  } finally {
    releaseDataset(device);
  }
}
