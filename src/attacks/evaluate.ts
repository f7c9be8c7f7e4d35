// Attack evaluation on the device: clean accuracy and per-class accuracy on the clean test set, and the
// attack success rate, the fraction of test images of the attacked classes (asrClasses: every class but the
// target, or TaCT's sources) that the model classifies as the target once the trigger is applied.
import { uploadDataset } from "../../kernels/batch.ts";
import { type Dataset, subset } from "../data/dataset.ts";
import type { Runtime } from "../gpu/runtime.ts";
import type { Model } from "../nn/models.ts";
import { evaluate } from "../nn/train.ts";
import { applyTrigger, asrClasses, type AttackConfigs, parseAttackConfig } from "./index.ts";
import type { AttackName } from "./types.ts";

export interface AttackEvaluation {
  cleanAccuracy: number;
  /** Attack success rate over the `asrCount` test images of the attacked classes. */
  asr: number;
  asrCount: number;
  /** Accuracy per true class on the clean test set (NaN for a class with no test images). */
  perClassAccuracy: number[];
}

export async function evaluateAttack<A extends AttackName>(
  rt: Runtime,
  model: Model,
  cleanTest: Dataset,
  attack: A,
  config: AttackConfigs[A],
  opts: { mean?: number[]; std?: number[]; batchSize?: number } = {},
): Promise<AttackEvaluation> {
  const c = parseAttackConfig(attack, config) as { targetClass: number };
  const K = cleanTest.classes.length;
  const ev = await evalOn(rt, model, cleanTest, opts);
  const hits = new Array<number>(K).fill(0), counts = new Array<number>(K).fill(0);
  for (let i = 0; i < cleanTest.n; i++) {
    counts[cleanTest.labels[i]]++;
    hits[cleanTest.labels[i]] += ev[i];
  }
  const attacked = new Set(asrClasses(attack, config, K));
  const others: number[] = [];
  for (let i = 0; i < cleanTest.n; i++) if (attacked.has(cleanTest.labels[i])) others.push(i);
  let asr = NaN;
  if (others.length) {
    const triggered = applyTrigger(attack, config, subset(cleanTest, others));
    triggered.labels.fill(c.targetClass); // "correct" now means "classified as the target"
    const t = await evalOn(rt, model, triggered, opts);
    asr = t.reduce((s, v) => s + v, 0) / others.length;
  }
  return {
    cleanAccuracy: ev.reduce((s, v) => s + v, 0) / cleanTest.n,
    asr,
    asrCount: others.length,
    perClassAccuracy: hits.map((h, k) => (counts[k] ? h / counts[k] : NaN)),
  };
}

async function evalOn(
  rt: Runtime,
  model: Model,
  ds: Dataset,
  opts: { mean?: number[]; std?: number[]; batchSize?: number },
): Promise<Float32Array> {
  const dev = uploadDataset(rt, ds);
  try {
    return (await evaluate(rt, model, dev, opts)).correct;
  } finally {
    dev.pixels.release();
    dev.labels.release();
  }
}
