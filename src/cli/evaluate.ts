// npm run evaluate: the detectors' evaluation matrix (--attacks, --detectors, --seeds: attacks x seeds detect
// runs, one row per detector; src/detect/evaluation.ts), or, with --checkpoint, one model's accuracy on the
// clean test split (overall and per class) and an attack's success rate on it.
import { z } from "zod";
import { evaluateAttack } from "../attacks/evaluate.ts";
import type { AttackName } from "../attacks/index.ts";
import { loadData } from "../data/formats.ts";
import { seededSubset } from "../data/dataset.ts";
import { DetectConfig } from "../detect/config.ts";
import { getRuntime } from "../gpu/runtime.ts";
import { loadModel } from "../nn/checkpoint.ts";
import { type CommandSpec, intoSettings, type Parsed, UsageError } from "./command.ts";
import { attackFlags, dataFlags, outputFlags } from "./flags.ts";
import { note, progressBar, quietProgress } from "./progress.ts";
import { joinPath, writeBytesAtomic } from "../data/io.ts";
import {
  type DetectorName,
  DETECTORS,
  EVAL_ATTACKS,
  type EvalAttack,
  jsonRow,
  resultsCsv,
  resultsHtml,
  runEvaluation,
} from "../detect/evaluation.ts";
import { TrainingSetSpec } from "../detect/training-set.ts";

const { train: _train, ...data } = dataFlags();
const DETECT_DEFAULTS = DetectConfig.parse({});
const { attack: _attack, ...attack } = attackFlags();

export const EvaluateFlags = z.object({
  attacks: z.array(z.enum(EVAL_ATTACKS)).min(1).optional().describe(
    "the matrix: attacks to plant, comma-separated (none: clean data)",
  ),
  detectors: z.array(z.enum(Object.keys(DETECTORS) as [DetectorName, ...DetectorName[]])).min(1).default([
    "ours",
    "ac",
    "ss",
    "spectre",
    "scan",
    "abl",
  ]).describe("the matrix: detectors to report"),
  seeds: z.number().int().positive().default(3).describe("the matrix: seeds per attack (0 .. N-1)"),
  train: TrainingSetSpec.shape.train.describe("the matrix: training examples per run"),
  retrainBaselines: DetectConfig.shape.retrainBaselines,
  restarts: DetectConfig.shape.restarts,
  models: DetectConfig.shape.models,
  k: DetectConfig.shape.k,
  epochs: z.number().positive().default(DETECT_DEFAULTS.recipe.epochs).describe("the matrix: epochs per model"),
  out: z.string().default("evaluation").describe("the matrix: results.csv, results.html and each cell's report"),
  checkpoint: z.string().optional().describe(
    "instead of the matrix: the model to evaluate (a safetensors file from train, detect's cache or a job)",
  ),
  ...data,
  ...attack,
  attack: DetectConfig.shape.attack.unwrap().default("none").describe(
    "--checkpoint: the attack whose success rate to measure",
  ),
  testSize: DetectConfig.shape.testSize,
  ...outputFlags,
});

export const command: CommandSpec<typeof EvaluateFlags> = {
  name: "evaluate",
  summary: "the detectors' evaluation matrix over attacks and seeds, or one checkpoint's accuracy and ASR",
  flags: EvaluateFlags,
  examples: [
    "npm run evaluate -- --attacks none,badnets,adap-blend --detectors ours,ac,ss --seeds 3 --out evaluation",
    "npm run evaluate -- --attacks badnets --seeds 1 --train 1000 --json",
    "npm run evaluate -- --checkpoint model.safetensors --attack badnets --target 0 --json",
  ],
  check: (flags) => {
    if (!flags.attacks === !flags.checkpoint) {
      throw new UsageError("give --attacks (the evaluation matrix) or --checkpoint (one model), not both or neither");
    }
  },
};

export async function main(parsed: Parsed<typeof EvaluateFlags>): Promise<void> {
  const { flags } = parsed;
  if (flags.quiet || flags.json) quietProgress();
  if (flags.attacks) return await matrix(flags, flags.attacks);
  const { attackConfig } = intoSettings(command, flags) as { attackConfig: Record<string, unknown> };
  const data = await loadData(flags.data);
  const full = data.test ?? data.train;
  const test = flags.testSize && flags.testSize < full.n ? seededSubset(full, flags.testSize, flags.seed + 1) : full;
  const rt = await getRuntime();
  note(`adapter: ${rt.adapterName}`);
  const { model } = await loadModel(rt, flags.checkpoint!);
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

async function matrix(flags: z.output<typeof EvaluateFlags>, attacks: EvalAttack[]): Promise<void> {
  const rt = await getRuntime();
  note(`adapter: ${rt.adapterName}`);
  const t0 = performance.now();
  const rows = await runEvaluation(rt, {
    attacks,
    detectors: flags.detectors,
    seeds: flags.seeds,
    base: {
      data: flags.data,
      train: flags.train,
      restarts: flags.restarts,
      models: flags.models,
      k: flags.k,
      recipe: { ...DETECT_DEFAULTS.recipe, epochs: flags.epochs },
      retrainBaselines: flags.retrainBaselines,
      ...(flags.testSize ? { testSize: flags.testSize } : {}),
    },
    out: flags.out,
    onCell: (done, total, label, cached) =>
      note(
        `cell ${done + 1}/${total}: ${label}${cached ? " (stored, skipped)" : ""} at ${
          ((performance.now() - t0) / 1000).toFixed(0)
        } s`,
      ),
    onProgress: (p) => progressBar(p.stage.padEnd(28), p.done, p.total, p.detail ?? ""),
  });
  const enc = new TextEncoder();
  await writeBytesAtomic(joinPath(flags.out, "results.csv"), enc.encode(resultsCsv(rows)));
  await writeBytesAtomic(joinPath(flags.out, "results.html"), enc.encode(resultsHtml(rows, flags.seeds)));
  if (flags.json) {
    return console.log(JSON.stringify({ rows: rows.map(jsonRow) }));
  }
  const num = (v: number | null, pct = false) => (v === null ? "-" : pct ? `${(100 * v).toFixed(1)}%` : v.toFixed(3));
  for (const r of rows) {
    console.log(
      `${r.attack} seed ${r.seed} ${r.detector}: AUROC ${num(r.auroc)}, TPR@5%FPR ${
        num(r.tpr_at_5fpr)
      }, flagged ${r.flagged}, ASR ${num(r.asr_before, true)} -> ${num(r.asr_after, true)} (floor ${
        num(r.asr_floor, true)
      }), clean ${num(r.clean_acc_before, true)} -> ${num(r.clean_acc_after, true)}`,
    );
  }
  console.log(`${flags.out}/results.csv, ${flags.out}/results.html`);
}
