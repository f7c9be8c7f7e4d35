// What the trak and datamodels jobs share: the job's training set (rebuilt from its settings), train
// shards (a model trained by a volunteer: checkpoint + margins on all n, spot-checked on the host), and
// the end of finish (baselines and model 0's evaluation where the coordinator has WebGPU, the summary,
// the report and scores.json).
import { z } from "zod";
import { assembleBatchRef, uploadDataset } from "../../kernels/batch.ts";
import { marginRef } from "../../kernels/loss.ts";
import { seededIndices } from "../../src/data/dataset.ts";
import { joinPath, makeDir, writeBytesAtomic } from "../../src/data/io.ts";
import { topK } from "../../src/detect/metrics.ts";
import {
  type BaselineResult, DetectConfig, evaluateOutcome, keyOf, loadTestSet, type Outcome, removalBudget, runBaselines, type Scored, type StageProgress, summarize,
} from "../../src/detect/pipeline.ts";
import { writeReport } from "../../src/detect/report.ts";
import { buildTrainingSet, type TrainingSet } from "../../src/detect/training-set.ts";
import type { Runtime } from "../../src/gpu/runtime.ts";
import { hostModelFromSafetensors, modelFromSafetensors } from "../../src/nn/checkpoint.ts";
import type { ModelConfig } from "../../src/nn/models.ts";
import { TRAIN, TrainPayload } from "../../src/volunteer/shards.ts";
import type { ArrayValue, Inputs, ShardPlan } from "../job-kind.ts";
import { datasetPath, DEFAULT_DATASET, trainSplit } from "./datasets.ts";

/** Spec fields of every job that trains on a served data set. */
export const JobDataFields = {
  /** A dataset the coordinator serves (server/jobs/datasets.ts). */
  data: z.string().default(DEFAULT_DATASET),
  train: z.number().int().positive().max(50000).default(4000),
  // label-consistent poisons with a surrogate model trained on the device: not reproducible on every worker.
  attack: z.enum(["none", "badnets", "blended", "sig", "wanet"]).default("badnets"),
  /** Margins re-evaluated on the host (float64 twin) per submitted checkpoint. */
  spotChecks: z.number().int().min(1).default(16),
  maxCheckpointBytes: z.number().int().positive().default(64 << 20),
};

export interface JobData {
  data: string;
  train: number;
  seed: number;
  attack: z.output<typeof JobDataFields.attack>;
  attackConfig: Record<string, unknown>;
  model: ModelConfig;
  spotChecks: number;
  maxCheckpointBytes: number;
}

/** The detect settings a job reproduces: its spec's DetectConfig fields (the rest are dropped), with the
 * data set's name resolved to the coordinator's local file. */
export function detectConfigOf(s: JobData, extra: Partial<z.input<typeof DetectConfig>> = {}): z.output<typeof DetectConfig> {
  return DetectConfig.parse({ ...s, ...extra, data: datasetPath(s.data) });
}

export const datasetRef = (s: JobData) => ({ data: s.data, train: s.train, seed: s.seed, attack: s.attack, attackConfig: s.attackConfig });

const sets = new Map<string, Promise<TrainingSet>>();
/** The job's poisoned training set, built once per process (the first spot check would otherwise block the
 * event loop for seconds, gunzip, while volunteers hold short leases: plan() starts it at job creation). */
export function trainingSet(s: JobData): Promise<TrainingSet> {
  const key = keyOf(datasetRef(s));
  let p = sets.get(key);
  if (!p) {
    p = trainSplit(s.data).then((full) => buildTrainingSet(full, datasetRef(s)));
    p.catch(() => sets.delete(key));
    sets.set(key, p);
  }
  return p;
}

/** A train shard: the model of `payload`, returned as checkpoint + margins on all n examples. */
export function trainShard(key: string, payload: TrainPayload, n: number, maxCheckpointBytes: number): ShardPlan {
  return {
    key, kind: TRAIN, payload, deps: [], deterministic: false, maxBytes: maxCheckpointBytes,
    outputs: { checkpoint: { dtype: "u8", shape: [-1] }, margins: { dtype: "f32", shape: [n] } },
  };
}

/** Results of nondeterministic shards are never compared in tolerance; a replay must be bitwise the same. */
export const bitwiseEqual = (a: Record<string, ArrayValue>, b: Record<string, ArrayValue>): boolean =>
  Object.keys(a).every((k) => b[k] && a[k].data.length === b[k].data.length && a[k].data.every((v, i) => v === b[k].data[i]));

/** |device f32 margin - host float64 margin| allowed per spot-checked example, times (1 + |m|). */
export const SPOT_MARGIN_TOLERANCE = 1e-3;

/**
 * A submitted checkpoint must be a model of the job's architecture, and the margins claimed for a random
 * sample of examples must be what that checkpoint gives: recomputed in float64 on the host (the layers'
 * CPU twins, eval mode, the shard's normalisation), within 1e-3 (1 + |m|) of the device's f32 value
 * (observed f32 vs f64 differences on these models: ~1e-6). It does not show the model was trained on
 * the shard's data: that is the trust model's replication and reputation (DESIGN.md section 4).
 */
export async function spotCheckTrain(s: JobData, shard: ShardPlan, result: Record<string, ArrayValue>, seed: number): Promise<string | null> {
  const p = TrainPayload.parse(shard.payload);
  let model;
  try {
    model = hostModelFromSafetensors(result.checkpoint.data as Uint8Array, shard.key, s.model).model;
  } catch (e) {
    return (e as Error).message;
  }
  const { train } = await trainingSet(s);
  const claimed = result.margins.data as Float32Array;
  if (claimed.length !== train.n) return `${shard.key}: ${claimed.length} margins for ${train.n} examples`;
  const count = Math.min(s.spotChecks, train.n);
  const idx = seededIndices(train.n, count, seed >>> 0);
  const { x, y } = assembleBatchRef(train.images, train.labels, train.c, train.h, train.w, idx, { start: 0, size: count, mean: p.recipe.mean, std: p.recipe.std, pad: 0, flip: false, seed: 0, stream: 0 });
  const logits = model.net.forwardRef({ shape: [train.c, count, train.h, train.w], data: x }, "eval");
  const ref = marginRef(logits.data, y, model.classes, count).value;
  for (let j = 0; j < count; j++) {
    const got = claimed[idx[j]];
    if (!(Math.abs(got - ref[j]) <= SPOT_MARGIN_TOLERANCE * (1 + Math.abs(ref[j])))) {
      return `${shard.key}: claimed margin ${got} of example ${idx[j]} is not the checkpoint's (${ref[j].toPrecision(6)})`;
    }
  }
  return null;
}

/** Seconds per stage, as the pipeline's summary reports them. */
export function stageClock() {
  const t0 = performance.now();
  let mark = t0;
  const seconds: Record<string, number> = {};
  return {
    seconds,
    stage(name: string) {
      const now = performance.now();
      seconds[name] = (seconds[name] ?? 0) + (now - mark) / 1000;
      mark = now;
    },
    total: () => (performance.now() - t0) / 1000,
  };
}

/** The search's progress as one line per new subset size. */
export function searchProgress(onProgress: (msg: string) => void): (p: StageProgress) => void {
  let last = "";
  return (p) => {
    if (p.detail && p.detail !== last) onProgress(`search ${(last = p.detail)}`);
  };
}

/**
 * The end of a job's finish, from its scores on: flag the budget, run the baselines and evaluate the model
 * of shard `model0` where there is a device (else they stay empty), write summary.json, report.html and
 * scores.json. Removal and retraining are not part of a job (the plan is fixed before the scores exist):
 * "after" figures stay empty and the flagged list is the output.
 */
export async function finishReport(a: {
  spec: JobData; cfg: z.output<typeof DetectConfig>; scored: Scored; rt: Runtime | null; inputs: Inputs; model0: string; outDir: string;
  clock: ReturnType<typeof stageClock>; onProgress: (msg: string) => void;
}): Promise<Record<string, unknown>> {
  const { cfg, scored, rt, clock } = a;
  const { train, poisoned } = await trainingSet(a.spec);
  const n = train.n;
  const scores = Float64Array.from(scored.search);
  const spectral = Float64Array.from(scored.spectral);
  const flagged = topK(scores, removalBudget(cfg, scores));

  let baselines: BaselineResult = {};
  let before: Outcome = { clean_acc: NaN, asr: cfg.attack === "none" ? null : NaN };
  if (rt) {
    a.onProgress("baselines and evaluation of model 0");
    const model0 = modelFromSafetensors(rt, (await a.inputs.get(a.model0, "checkpoint")).data as Uint8Array, a.model0).model;
    const deviceTrain = uploadDataset(rt, train.images, train.labels, n, train.c, train.h, train.w);
    baselines = await runBaselines(rt, model0, deviceTrain, train, poisoned, cfg.seed);
    clock.stage("baselines");
    const test = await loadTestSet(cfg);
    const deviceTest = uploadDataset(rt, test.images, test.labels, test.n, test.c, test.h, test.w);
    before = await evaluateOutcome(rt, model0, deviceTest, test, cfg);
    [deviceTrain.pixels, deviceTrain.labels, deviceTest.pixels, deviceTest.labels].forEach((t) => t.release());
    model0.params.forEach((p) => p.value.release());
    clock.stage("evaluate");
  }

  const adapter = rt?.adapterName ?? "host (float64; no WebGPU in this coordinator)";
  const summary = summarize({
    cfg, scores, spectral, flagged, baselines, poisoned, before, n, adapter, stageSeconds: clock.seconds,
    after: { clean_acc: NaN, asr: before.asr === null ? null : NaN }, // no retraining in a job
    seconds: clock.total(), lds: scored.lds,
  });
  await makeDir(a.outDir);
  await writeReport({ summary, scores, spectral, baselineScores: Object.fromEntries(Object.entries(baselines).map(([k, b]) => [k, b.scores])), train, poisonedSet: poisoned ? new Set(poisoned) : null }, a.outDir);
  await writeBytesAtomic(joinPath(a.outDir, "scores.json"), new TextEncoder().encode(JSON.stringify({ search: scored.search, spectral: scored.spectral, backend: scored.backend })));
  a.onProgress(`done: auroc ${summary.auroc?.toFixed(3) ?? "n/a"}, ${flagged.length} flagged`);
  return {
    auroc: summary.auroc, precision_at_budget: summary.precision_at_budget, recall_at_budget: summary.recall_at_budget, tpr_at_5fpr: summary.tpr_at_5fpr,
    flagged: summary.flagged, clean_acc_before: rt ? summary.clean_acc_before : null, asr_before: rt ? summary.asr_before : null, n, adapter,
    baselines: Object.fromEntries(Object.entries(summary.baselines).map(([k, b]) => [k, { auroc: b.auroc }])),
    spectral_auroc: summary.spectral_score?.auroc ?? null, lds: scored.lds ?? null, seconds: summary.seconds, files: ["summary.json", "report.html", "scores.json"],
  };
}
