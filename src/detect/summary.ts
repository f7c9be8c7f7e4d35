// What a detect run reports: the summary (detection metrics against the attack's manifest, when there is
// one; outcomes before and after removal; the baselines; timings) and the arrays the report draws.
import type { Dataset } from "../data/dataset.ts";
import type { BaselineResults } from "./baselines.ts";
import type { Cfg } from "./config.ts";
import type { DetectData } from "./data.ts";
import { type DetectionMetrics, detectionMetrics, topK } from "./metrics.ts";
import type { Outcome } from "./outcome.ts";
import type { Standout } from "./standout.ts";

export interface DetectorRow extends DetectionMetrics {
  name: string;
  after?: Outcome;
}

export interface Summary {
  auroc: number | null;
  precision_at_budget: number | null;
  recall_at_budget: number | null;
  tpr_at_5fpr: number | null;
  flagged: number[];
  asr_before: number | null;
  asr_after: number | null;
  clean_acc_before: number;
  clean_acc_after: number;
  seconds: number;
  baselines: Record<string, Omit<DetectorRow, "name">>;
  spectral_score: DetectionMetrics | null;
  stage_seconds: Record<string, number>;
  /** LDS of A on `ldsModels` held-out subset models (heldOutLds, src/attribution/lds.ts), when asked for. */
  lds: number | null;
  config: Cfg;
  adapter: string;
  n: number;
  poisoned: number[] | null;
  /** The attack's target class, when the attack is known. */
  target: number | null;
  /** What the reader should know about the data (held-out test split, unscanned manifest entries). */
  notes: string[];
  /** The decision rule (standout.ts): whether the strongest block stands out, and by how much. */
  standout: Standout;
  /** ASR of the same recipe trained without the known poisons: the best "after" a detector can reach. */
  asr_floor: number | null;
  /** What went wrong for the user's model: removal lowered clean accuracy, or raised the ASR. */
  warnings: string[];
}

export interface DetectResult {
  summary: Summary;
  /** For the report and scores.json. */
  scores: Float64Array;
  spectral: Float64Array;
  /** Where the search ran (scoring.ts Scored.backend). */
  backend: string;
  baselineScores: Record<string, Float64Array>;
  train: Dataset;
  poisonedSet: Set<number> | null;
  /** The pipeline's data: each example's index in the dataset and its file, for the exports. */
  data?: DetectData;
}

/** The summary from the scores and outcomes (after = NaN where no retraining was done). */
export function summarize(a: {
  cfg: Cfg;
  scores: Float64Array;
  spectral: Float64Array;
  flagged: number[];
  baselines: BaselineResults;
  baselineAfter?: Record<string, Outcome>;
  poisoned: number[] | null;
  before: Outcome;
  after: Outcome;
  n: number;
  adapter: string;
  seconds: number;
  stageSeconds: Record<string, number>;
  lds?: number;
  notes?: string[];
  target?: number | null;
  standout: Standout;
  asrFloor?: number | null;
}): Summary {
  const { poisoned, n, flagged } = a;
  const truth = poisoned
    ? (() => {
      const s = new Set(poisoned);
      return Array.from({ length: n }, (_, i) => s.has(i));
    })()
    : null;
  const baselineRows: Record<string, Omit<DetectorRow, "name">> = {};
  for (const [name, b] of Object.entries(a.baselines)) {
    const metrics = truth
      ? detectionMetrics(b.scores, truth, b.flagged)
      : { auroc: NaN, precision_at_budget: NaN, recall_at_budget: NaN, tpr_at_5fpr: NaN, flagged: b.flagged.length };
    baselineRows[name] = { ...metrics, ...(a.baselineAfter?.[name] ? { after: a.baselineAfter[name] } : {}) };
  }
  const ours = truth ? detectionMetrics(a.scores, truth, flagged) : null;
  return {
    auroc: ours?.auroc ?? null,
    precision_at_budget: ours?.precision_at_budget ?? null,
    recall_at_budget: ours?.recall_at_budget ?? null,
    tpr_at_5fpr: ours?.tpr_at_5fpr ?? null,
    flagged,
    asr_before: a.before.asr,
    asr_after: a.after.asr,
    clean_acc_before: a.before.clean_acc,
    clean_acc_after: a.after.clean_acc,
    seconds: a.seconds,
    baselines: baselineRows,
    spectral_score: truth ? detectionMetrics(a.spectral, truth, topK(a.spectral, flagged.length)) : null,
    stage_seconds: a.stageSeconds,
    lds: a.lds ?? null,
    config: a.cfg,
    adapter: a.adapter,
    n,
    poisoned,
    target: a.target ?? null,
    notes: a.notes ?? [],
    standout: a.standout,
    asr_floor: a.asrFloor ?? null,
    warnings: harm(a.before, a.after, flagged.length),
  };
}

/** Warnings when removing the flagged examples made the model worse on the held-out test split. */
export function harm(before: Outcome, after: Outcome, removed: number): string[] {
  if (!removed || !Number.isFinite(after.clean_acc)) return [];
  const out: string[] = [];
  const drop = before.clean_acc - after.clean_acc;
  if (drop > 0) {
    out.push(
      `removing the ${removed} flagged examples lowered clean accuracy by ${(100 * drop).toFixed(1)} points ` +
        `(${(100 * before.clean_acc).toFixed(1)}% -> ${(100 * after.clean_acc).toFixed(1)}%)`,
    );
  }
  if (before.asr !== null && after.asr !== null && after.asr > before.asr) {
    out.push(
      `the attack success rate rose after removal (${(100 * before.asr).toFixed(1)}% -> ${
        (100 * after.asr).toFixed(1)
      }%)`,
    );
  }
  return out;
}
