// The outcome of a model on the clean test set: clean accuracy, and the attack success rate (ASR), the
// fraction of test images not of the target class that the model classifies as the target once the
// trigger is applied.
import { type DeviceDataset, uploadDataset } from "../../kernels/batch.ts";
import { applyTrigger, type AttackName } from "../attacks/index.ts";
import { loadCifar10 } from "../data/cifar.ts";
import { type Dataset, seededSubset, subset } from "../data/dataset.ts";
import type { Runtime } from "../gpu/runtime.ts";
import type { Model } from "../nn/models.ts";
import { evaluate } from "../nn/train.ts";
import type { Cfg } from "./config.ts";

export interface Outcome {
  clean_acc: number;
  asr: number | null;
}

/** The evaluation test set: a seeded subset when `test` is set, else the whole test split. */
export async function loadTestSet(cfg: Pick<Cfg, "data" | "test" | "seed">): Promise<Dataset> {
  const fullTest = await loadCifar10(cfg.data, { split: "test" });
  return cfg.test && cfg.test < fullTest.n ? seededSubset(fullTest, cfg.test, cfg.seed + 1) : fullTest;
}

export async function evaluateOutcome(
  rt: Runtime,
  model: Model,
  deviceTest: DeviceDataset,
  test: Dataset,
  cfg: Pick<Cfg, "attack" | "attackConfig">,
): Promise<Outcome> {
  const ev = await evaluate(rt, model, deviceTest);
  return { clean_acc: ev.accuracy, asr: cfg.attack === "none" ? null : await attackSuccess(rt, model, test, cfg) };
}

export async function attackSuccess(
  rt: Runtime,
  model: Model,
  test: Dataset,
  cfg: Pick<Cfg, "attack" | "attackConfig">,
): Promise<number> {
  const target = (cfg.attackConfig as { targetClass?: number }).targetClass ?? 0;
  const others = Array.from({ length: test.n }, (_, i) => i).filter((i) => test.labels[i] !== target);
  const triggered = applyTrigger(cfg.attack as AttackName, cfg.attackConfig as never, subset(test, others));
  triggered.labels.fill(target); // "correct" now means "classified as the target"
  const ev = await evaluate(rt, model, uploadDataset(rt, triggered));
  return ev.accuracy;
}
