// npm run detect: poison (or not) a training set, find the poisoned examples, remove them, retrain. The
// flags come from the detect settings (src/detect/config.ts), plus shorthands for the nested ones.
import { z } from "zod";
import { DetectConfig } from "../detect/config.ts";
import { runDetect } from "../detect/pipeline.ts";
import { exportClean, type Resolved } from "../detect/data.ts";
import { decision, writeReport } from "../detect/report.ts";
import { getRuntime } from "../gpu/runtime.ts";
import { joinPath, writeBytesAtomic } from "../data/io.ts";
import { parseAttackConfig } from "../attacks/index.ts";
import { checkSettings, type CommandSpec, intoSettings, type Parsed, UsageError } from "./command.ts";
import { attackFlags, dataFlags, modelFlags, outputFlags, recipeFlags } from "./flags.ts";
import { note, progressBar, quietProgress } from "./progress.ts";

const defaults = DetectConfig.parse({});
const {
  model: _model,
  recipe: _recipe,
  data: _data,
  train: _train,
  seed: _seed,
  attack: _attack,
  attackConfig: _ac,
  ...rest
} = DetectConfig.shape;

export const DetectFlags = z.object({
  ...dataFlags(),
  ...attackFlags(),
  // Their defaults depend on the data (src/detect/data.ts resolveDefaults).
  train: DetectConfig.shape.train,
  attack: DetectConfig.shape.attack,
  ...rest,
  ...modelFlags(defaults.model),
  ...recipeFlags(defaults.recipe),
  ...outputFlags,
});

export const command: CommandSpec<typeof DetectFlags> = {
  name: "detect",
  summary: "find backdoor-poisoned training examples, remove them and retrain; writes a report",
  flags: DetectFlags,
  examples: [
    "npm run detect                                   # the default: BadNets at 5% on 4,000 CIFAR-10 images",
    'npm run detect -- --attack blended --attack-config \'{"rate": 0.1, "alpha": 0.2}\' --out report-blended',
    "npm run detect -- --attribution datamodels --dm-models 300 --lds-models 20 --json",
  ],
  check: (flags) => void settingsOf(flags),
};

/** The detect settings the flags stand for. */
export function settingsOf(flags: z.output<typeof DetectFlags>): z.output<typeof DetectConfig> {
  const cfg = checkSettings(command, DetectConfig, intoSettings(command, flags, defaults), flags);
  if (cfg.attack && cfg.attack !== "none") {
    try {
      parseAttackConfig(cfg.attack, cfg.attackConfig);
    } catch (e) {
      throw new UsageError(`--attack-config: ${(e as Error).message}`);
    }
  }
  return cfg;
}

export async function main({ flags }: Parsed<typeof DetectFlags>): Promise<void> {
  const cfg = settingsOf(flags);
  if (flags.quiet || flags.json) quietProgress();
  const rt = await getRuntime();
  note(`adapter: ${rt.adapterName}`);
  const result = await runDetect(rt, cfg, (p) => progressBar(p.stage.padEnd(28), p.done, p.total, p.detail ?? ""));
  const files = await writeReport(result, cfg.out);
  const clean = cfg.exportClean
    ? await exportClean(cfg.exportClean, result.data!, result.summary.flagged, result.summary.config as Resolved)
    : null;
  // Beside the report, every flag's value: `--config report/config.json` repeats the run exactly.
  await writeBytesAtomic(joinPath(cfg.out, "config.json"), new TextEncoder().encode(JSON.stringify(flags, null, 2)));
  const s = result.summary;
  const out = {
    attribution: cfg.attribution,
    auroc: s.auroc,
    lds: s.lds,
    precision_at_budget: s.precision_at_budget,
    recall_at_budget: s.recall_at_budget,
    flagged: s.flagged.length,
    asr_before: s.asr_before,
    asr_after: s.asr_after,
    asr_floor: s.asr_floor,
    stands_out: s.standout.standsOut,
    standout_ratio: s.standout.ratio,
    standout_class: s.standout.cls,
    warnings: s.warnings,
    clean_acc_before: s.clean_acc_before,
    clean_acc_after: s.clean_acc_after,
    seconds: Math.round(s.seconds),
    stage_seconds: Object.fromEntries(Object.entries(s.stage_seconds).map(([k, v]) => [k, Math.round(v * 10) / 10])),
    baselines: Object.fromEntries(Object.entries(s.baselines).map(([k, b]) => [k, { auroc: b.auroc }])),
    report: files.html,
    ...(clean ? { clean } : {}),
  };
  if (flags.json) return console.log(JSON.stringify(out));
  const pct = (v: number | null) => (v === null || Number.isNaN(v) ? "-" : `${(100 * v).toFixed(1)}%`);
  console.log([
    decision(s).replace(/<\/?code>/g, ""),
    `${s.flagged.length} of ${s.n} examples flagged${s.auroc === null ? "" : `; AUROC ${s.auroc.toFixed(3)}`}`,
    (s.asr_before === null
      ? ""
      : `attack success ${pct(s.asr_before)} -> ${pct(s.asr_after)}${
        s.asr_floor === null ? "" : ` (floor ${pct(s.asr_floor)})`
      }; `) + `clean accuracy ${pct(s.clean_acc_before)} -> ${pct(s.clean_acc_after)}`,
    ...s.warnings.map((w) => `warning: ${w}`),
    ...s.notes,
    `report: ${files.html} (exports: scores.csv, scores.npy, flagged.txt${s.poisoned ? ", detection_info.csv" : ""})`,
    ...(clean ? [`clean copy without the flagged examples: ${clean}`] : []),
  ].join("\n"));
}
