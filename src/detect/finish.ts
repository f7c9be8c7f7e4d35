// The one finish of a detect run, from the scores on, for the single-machine pipeline and every volunteer
// job alike: the removal budget, the baselines and the "before" outcome on the first model, removal and
// retraining where the caller can retrain (the pipeline; a job's plan is fixed before its scores exist),
// the summary, and the report files.
import { type DeviceDataset, releaseDataset, uploadDataset } from "../../kernels/batch.ts";
import type { Dataset } from "../data/dataset.ts";
import type { Runtime } from "../gpu/runtime.ts";
import type { Model } from "../nn/models.ts";
import { type BaselineResults, runBaselines } from "./baselines.ts";
import type { Cfg } from "./config.ts";
import { standoutRemoval, topK } from "./metrics.ts";
import type { DetectData } from "./data.ts";
import { evaluateOutcome, loadTestSet, type Outcome, type Trigger } from "./outcome.ts";
import { writeReport } from "./report.ts";
import type { Scored } from "./scoring.ts";
import type { OnStage, StageClock } from "./stages.ts";
import { type Standout, STANDOUT_RATIO } from "./standout.ts";
import { type DetectResult, summarize } from "./summary.ts";

/**
 * The flagged examples. `--budget N`: the top N of the search's ranking. The auto budget removes nothing
 * unless the strongest block stands out from the classes' natural ones (standout.ts), and then only examples
 * of the class that stands out, since a backdoor's poisons all carry its label (metrics.ts standoutRemoval).
 */
export function flaggedExamples(
  cfg: Pick<Cfg, "budget">,
  scored: Pick<Scored, "search" | "standout">,
  labels: ArrayLike<number>,
): number[] {
  if (cfg.budget !== "auto") return topK(scored.search, Math.min(cfg.budget, labels.length));
  return standsOut(scored.standout) ? standoutRemoval(scored.search, labels, scored.standout.cls) : [];
}

/** The rule's decision at today's threshold (a cached ratio stays valid when the threshold moves). */
export const standsOut = (s: Standout): boolean => s.ratio >= STANDOUT_RATIO;

export interface FinishInput {
  cfg: Cfg;
  scored: Scored;
  train: Dataset;
  /** The attack's manifest (evaluation only), or null. */
  poisoned: number[] | null;
  /** The pipeline's data (test split, the attack to measure, files for the exports); jobs have their spec. */
  data?: DetectData;
  /** The device, or null where there is none (a coordinator on Node): no baselines and no evaluation then. */
  rt: Runtime | null;
  /** The first model, for the baselines and the "before" outcome. */
  model0: () => Promise<Model>;
  /** The dataset's whole test split when the caller has it (a volunteer's download); else read from cfg.data. */
  testSplit?: Dataset;
  /** The training set on the device when the caller has it; else it is uploaded here and released. */
  deviceTrain?: DeviceDataset;
  /** A model trained without `remove`. Absent: nothing is removed, and "after" stays empty. */
  retrain?: (remove: readonly number[], label: string) => Promise<Model>;
  clock: StageClock;
  onProgress: OnStage;
  /** Write summary.json, report.html and scores.json here. */
  outDir?: string;
}

export async function finishDetection(a: FinishInput): Promise<DetectResult> {
  const { cfg, scored, train, poisoned, rt, clock } = a;
  const scores = Float64Array.from(scored.search);
  const spectral = Float64Array.from(scored.spectral);
  const flagged = flaggedExamples(cfg, scored, train.labels);
  const trigger: Trigger = a.data
    ? a.data.trigger
    : cfg.attack && cfg.attack !== "none"
    ? { attack: cfg.attack, attackConfig: cfg.attackConfig }
    : null;
  const none: Outcome = { clean_acc: NaN, asr: trigger ? NaN : null };
  let baselines: BaselineResults = {};
  let before = none;
  let after = none;
  let floor: Outcome | null = null;
  const baselineAfter: Record<string, Outcome> = {};
  if (rt) {
    const model0 = await a.model0();
    const deviceTrain = a.deviceTrain ?? uploadDataset(rt, train);
    baselines = await runBaselines(rt, model0, deviceTrain, train, poisoned, cfg.seed);
    clock.stage("baselines");
    a.onProgress({ stage: "evaluate", done: 0, total: 1 });
    const test = a.data?.test ?? (await loadTestSet(cfg, a.testSplit));
    const deviceTest = uploadDataset(rt, test);
    const outcome = (m: Model) => evaluateOutcome(rt, m, deviceTest, test, trigger);
    before = await outcome(model0);
    clock.stage("evaluate");
    if (a.retrain) {
      // Nothing flagged: the model stays as it is.
      after = flagged.length ? await outcome(await a.retrain(flagged, "retrain without flagged")) : before;
      // The floor: the same recipe without the known poisons, what a perfect detector would leave.
      if (trigger && poisoned?.length) floor = await outcome(await a.retrain(poisoned, "retrain without the poisons"));
      if (cfg.retrainBaselines) {
        for (const [name, b] of Object.entries(baselines)) {
          baselineAfter[name] = await outcome(await a.retrain(b.flagged, `retrain without ${name}`));
        }
      }
      clock.stage("retrain");
    }
    releaseDataset(deviceTest);
    if (!a.deviceTrain) releaseDataset(deviceTrain);
  }
  const summary = summarize({
    cfg,
    scores,
    spectral,
    flagged,
    baselines,
    baselineAfter,
    poisoned,
    before,
    after,
    n: train.n,
    lds: scored.lds,
    adapter: rt?.adapterName ?? "host (float64; no WebGPU here)",
    seconds: clock.total(),
    stageSeconds: clock.seconds,
    notes: a.data?.notes ?? [],
    target: trigger ? ((trigger.attackConfig as { targetClass?: number }).targetClass ?? 0) : null,
    standout: { ...scored.standout, threshold: STANDOUT_RATIO, standsOut: standsOut(scored.standout) },
    asrFloor: floor?.asr ?? null,
  });
  const result: DetectResult = {
    summary,
    scores,
    spectral,
    backend: scored.backend,
    train,
    poisonedSet: poisoned ? new Set(poisoned) : null,
    data: a.data,
    baselineScores: Object.fromEntries(Object.entries(baselines).map(([k, b]) => [k, b.scores])),
  };
  if (a.outDir) await writeReport(result, a.outDir);
  return result;
}
