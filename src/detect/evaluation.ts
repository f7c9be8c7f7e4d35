// The evaluation matrix: attacks x seeds, one detect run per cell (every detector runs on the same models
// and data in it), one row per (attack, detector, seed). Each cell's rows are stored in the output folder as
// they finish, so a rerun resumes; the detect stage cache makes a changed setting redo only what it touches.
import { ATTACKS } from "../attacks/types.ts";
import { joinPath, makeDir, pathKind, readText, writeBytesAtomic } from "../data/io.ts";
import type { Runtime } from "../gpu/runtime.ts";
import type { DetectConfig } from "./config.ts";
import { detectionInfoCsv } from "./exports.ts";
import { runDetect } from "./pipeline.ts";
import { writeReport } from "./report.ts";
import type { OnStage } from "./stages.ts";
import { STANDOUT_RATIO } from "./standout.ts";
import type { Summary } from "./summary.ts";

/** Detector names on the command line, and their names in a detect summary. */
export const DETECTORS = {
  ours: "max-sum submatrix (ours)",
  ac: "activation clustering",
  ss: "spectral signatures",
  spectre: "spectre",
  scan: "scan",
  abl: "loss isolation (ABL)",
} as const;
export type DetectorName = keyof typeof DETECTORS;
export const EVAL_ATTACKS = ["none", ...ATTACKS] as const;
export type EvalAttack = (typeof EVAL_ATTACKS)[number];

export interface EvalRow {
  attack: EvalAttack;
  detector: DetectorName;
  seed: number;
  auroc: number | null;
  tpr_at_5fpr: number | null;
  precision_at_budget: number | null;
  recall_at_budget: number | null;
  flagged: number;
  asr_before: number | null;
  asr_after: number | null;
  asr_floor: number | null;
  clean_acc_before: number;
  clean_acc_after: number | null;
  /** BackdoorBench's counts at the detector's budget (null without ground truth). */
  tn: number | null;
  fp: number | null;
  fn: number | null;
  tp: number | null;
}

export interface EvalOptions {
  attacks: EvalAttack[];
  detectors: DetectorName[];
  seeds: number;
  /** Settings every cell shares (train size, model, restarts, ...); attack and seed are the cell's. */
  base: DetectConfig;
  out: string;
  onCell?: (done: number, total: number, label: string, cached: boolean) => void;
  onProgress?: OnStage;
}

const nanToNull = (v: number | null | undefined): number | null =>
  v === null || v === undefined || Number.isNaN(v) ? null : v;

/** Every detector's row of one cell's summary. */
export function cellRows(s: Summary, attack: EvalAttack, seed: number): EvalRow[] {
  const n = s.n;
  const positives = s.poisoned?.length ?? null;
  const counts = (precision: number | null, flagged: number) => {
    if (positives === null) return { tn: null, fp: null, fn: null, tp: null };
    const tp = flagged ? Math.round((precision ?? 0) * flagged) : 0;
    return { tp, fp: flagged - tp, fn: positives - tp, tn: n - positives - (flagged - tp) };
  };
  const common = {
    attack,
    seed,
    asr_before: nanToNull(s.asr_before),
    asr_floor: nanToNull(s.asr_floor),
    clean_acc_before: s.clean_acc_before,
  };
  const rows: EvalRow[] = [{
    ...common,
    detector: "ours",
    auroc: nanToNull(s.auroc),
    tpr_at_5fpr: nanToNull(s.tpr_at_5fpr),
    precision_at_budget: nanToNull(s.precision_at_budget),
    recall_at_budget: nanToNull(s.recall_at_budget),
    flagged: s.flagged.length,
    asr_after: nanToNull(s.asr_after),
    clean_acc_after: nanToNull(s.clean_acc_after),
    ...counts(nanToNull(s.precision_at_budget), s.flagged.length),
  }];
  for (const [name, key] of Object.entries(DETECTORS) as [DetectorName, string][]) {
    const b = s.baselines[key];
    if (name === "ours" || !b) continue;
    rows.push({
      ...common,
      detector: name,
      auroc: nanToNull(b.auroc),
      tpr_at_5fpr: nanToNull(b.tpr_at_5fpr),
      precision_at_budget: nanToNull(b.precision_at_budget),
      recall_at_budget: nanToNull(b.recall_at_budget),
      flagged: b.flagged,
      asr_after: nanToNull(b.after?.asr),
      clean_acc_after: nanToNull(b.after?.clean_acc),
      ...counts(nanToNull(b.precision_at_budget), b.flagged),
    });
  }
  return rows;
}

/** Runs (or reads back) every cell; returns the rows of the asked detectors, cell by cell. */
export async function runEvaluation(rt: Runtime, o: EvalOptions): Promise<EvalRow[]> {
  await makeDir(joinPath(o.out, "cells"));
  const cells = o.attacks.flatMap((attack) => Array.from({ length: o.seeds }, (_, seed) => ({ attack, seed })));
  const rows: EvalRow[] = [];
  for (const [k, { attack, seed }] of cells.entries()) {
    const label = `${attack}-seed${seed}`;
    const dir = joinPath(joinPath(o.out, "cells"), label);
    const config: DetectConfig = {
      ...o.base,
      attack,
      seed,
      attackConfig: { ...(o.base.attackConfig ?? {}), seed },
      out: dir,
      cache: o.base.cache ?? joinPath(o.out, "cache"),
    };
    const stored = joinPath(joinPath(o.out, "cells"), `${label}.json`);
    // The rule's threshold decides what a cell flags: a cell stored under another threshold is finished again
    // (its models and scores come back from the stage cache).
    const key = JSON.stringify({ config, threshold: STANDOUT_RATIO });
    let cell: { key: string; rows: EvalRow[] } | null = null;
    if ((await pathKind(stored)) === "file") {
      const saved = JSON.parse(await readText(stored)) as { key: string; rows: EvalRow[] };
      if (saved.key === key) cell = saved;
    }
    o.onCell?.(k, cells.length, label, cell !== null);
    if (!cell) {
      const result = await runDetect(rt, config, o.onProgress);
      await writeReport(result, dir);
      cell = { key, rows: cellRows(result.summary, attack, seed) };
      for (const r of cell.rows) {
        if (r.tp === null) continue;
        const info = detectionInfoCsv(r, result.summary.target);
        await writeBytesAtomic(joinPath(dir, `detection_info_${r.detector}.csv`), new TextEncoder().encode(info));
      }
      await writeBytesAtomic(stored, new TextEncoder().encode(JSON.stringify(cell)));
    }
    rows.push(...cell.rows.filter((r) => o.detectors.includes(r.detector)));
  }
  return rows;
}

const COLUMNS: (keyof EvalRow)[] = [
  "attack",
  "detector",
  "seed",
  "auroc",
  "tpr_at_5fpr",
  "precision_at_budget",
  "recall_at_budget",
  "flagged",
  "asr_before",
  "asr_after",
  "asr_floor",
  "clean_acc_before",
  "clean_acc_after",
  "tn",
  "fp",
  "fn",
  "tp",
];

/** The row as `evaluate --json` prints it: the issue's fields, in the CSV's order. */
export function jsonRow(r: EvalRow): Partial<EvalRow> {
  const budget = ["precision_at_budget", "recall_at_budget", "tn", "fp", "fn", "tp"];
  return Object.fromEntries(COLUMNS.filter((c) => !budget.includes(c)).map((k) => [k, r[k]]));
}

export function resultsCsv(rows: EvalRow[]): string {
  const cell = (v: unknown) => (v === null || v === undefined ? "" : String(v));
  return [COLUMNS.join(","), ...rows.map((r) => COLUMNS.map((c) => cell(r[c])).join(","))].join("\n") + "\n";
}

/** Mean and sample standard deviation of the non-null values (null when there are none). */
export function meanStd(values: (number | null)[]): { mean: number; std: number; count: number } | null {
  const xs = values.filter((v): v is number => v !== null && Number.isFinite(v));
  if (!xs.length) return null;
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, std, count: xs.length };
}

/** The means ± std table, one row per (attack, detector), as an HTML page. */
export function resultsHtml(rows: EvalRow[], seeds: number): string {
  const metrics: [keyof EvalRow, string, boolean][] = [
    ["auroc", "AUROC", false],
    ["tpr_at_5fpr", "TPR@5%FPR", true],
    ["precision_at_budget", "precision", true],
    ["recall_at_budget", "recall", true],
    ["flagged", "flagged", false],
    ["asr_before", "ASR before", true],
    ["asr_after", "ASR after", true],
    ["asr_floor", "ASR floor", true],
    ["clean_acc_before", "clean acc before", true],
    ["clean_acc_after", "clean acc after", true],
  ];
  const groups = new Map<string, EvalRow[]>();
  for (const r of rows) {
    const k = `${r.attack}\u0000${r.detector}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k)!.push(r);
  }
  const fmt = (m: ReturnType<typeof meanStd>, pct: boolean) =>
    m === null
      ? "—"
      : pct
      ? `${(100 * m.mean).toFixed(1)} ± ${(100 * m.std).toFixed(1)}`
      : `${m.mean.toFixed(m.mean >= 10 ? 0 : 3)} ± ${m.std.toFixed(m.mean >= 10 ? 0 : 3)}`;
  const body = [...groups.values()].map((g) =>
    `<tr><td>${g[0].attack}</td><td>${g[0].detector}</td>${
      metrics.map(([k, , pct]) => `<td>${fmt(meanStd(g.map((r) => r[k] as number | null)), pct)}</td>`).join("")
    }</tr>`
  ).join("\n");
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Detector evaluation</title>
<style>body{font:14px system-ui,sans-serif;margin:24px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:nth-child(-n+2){text-align:left}th{background:#f4f4f4}
</style></head><body><h1>Detector evaluation</h1>
<p>Mean ± standard deviation over ${seeds} seed${seeds > 1 ? "s" : ""} per attack; percentages for rates.
"After": retrained without the detector's flagged examples (baselines only with --retrain-baselines). "Floor": the
same recipe without the poisons the manifest names.</p>
<table><tr><th>attack</th><th>detector</th>${metrics.map(([, h]) => `<th>${h}</th>`).join("")}</tr>
${body}</table></body></html>
`;
}
