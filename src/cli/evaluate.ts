// npm run evaluate: a checkpoint's accuracy on the clean test split (overall and per class) and, for an
// attack, its success rate: the share of non-target test images the model calls the target once the
// trigger is applied.
import { z } from "zod";
import { evaluateAttack } from "../attacks/evaluate.ts";
import type { AttackName } from "../attacks/index.ts";
import { loadData } from "../data/formats.ts";
import { seededSubset } from "../data/dataset.ts";
import { DetectConfig } from "../detect/config.ts";
import { getRuntime } from "../gpu/runtime.ts";
import { loadModel } from "../nn/checkpoint.ts";
import { type CommandSpec, intoSettings, type Parsed } from "./command.ts";
import { attackFlags, dataFlags, outputFlags } from "./flags.ts";
import { note, quietProgress } from "./progress.ts";

const { train: _train, ...data } = dataFlags();
const { attack: _attack, ...attack } = attackFlags();

export const EvaluateFlags = z.object({
  checkpoint: z.string().describe("the model to evaluate (a safetensors file from train, detect's cache or a job)"),
  ...data,
  ...attack,
  attack: DetectConfig.shape.attack.unwrap().default("none").describe("the attack whose success rate to measure"),
  testSize: DetectConfig.shape.testSize,
  ...outputFlags,
});

export const command: CommandSpec<typeof EvaluateFlags> = {
  name: "evaluate",
  summary: "a checkpoint's clean test accuracy (per class) and an attack's success rate on it",
  flags: EvaluateFlags,
  examples: [
    "npm run evaluate -- --checkpoint model.safetensors",
    "npm run evaluate -- --checkpoint model.safetensors --attack badnets --target 0 --json",
  ],
};

export async function main({ flags }: Parsed<typeof EvaluateFlags>): Promise<void> {
  if (flags.quiet || flags.json) quietProgress();
  const { attackConfig } = intoSettings(command, flags) as { attackConfig: Record<string, unknown> };
  const data = await loadData(flags.data);
  const full = data.test ?? data.train;
  const test = flags.testSize && flags.testSize < full.n ? seededSubset(full, flags.testSize, flags.seed + 1) : full;
  const rt = await getRuntime();
  note(`adapter: ${rt.adapterName}`);
  const { model } = await loadModel(rt, flags.checkpoint);
  const attack = (flags.attack === "none" ? "badnets" : flags.attack) as AttackName;
  const ev = await evaluateAttack(rt, model, test, attack, attackConfig as never);
  const out = {
    checkpoint: flags.checkpoint,
    test: test.n,
    clean_acc: ev.cleanAccuracy,
    per_class: ev.perClassAccuracy,
    ...(flags.attack === "none" ? {} : { attack: flags.attack, asr: ev.asr, asr_images: ev.asrCount }),
  };
  if (flags.json) return console.log(JSON.stringify(out));
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  console.log(
    `clean accuracy ${pct(ev.cleanAccuracy)} on ${test.n} test images; per class ${
      ev.perClassAccuracy.map(pct).join(" ")
    }`,
  );
  if (flags.attack !== "none") {
    console.log(`${flags.attack} success rate ${pct(ev.asr)} on ${ev.asrCount} non-target images`);
  }
}
