// What the trak and datamodels jobs share: the job's training set (rebuilt from its settings), train
// shards (a model trained by a volunteer: checkpoint + margins on all n, spot-checked on the host), the
// choice between the device and the host for finish, and the end of finish (the pipeline's one finish,
// src/detect/finish.ts, without removal and retraining, and the job's summary).
import { z } from "zod";
import { assembleBatchRef } from "../../kernels/batch.ts";
import { marginRef } from "../../kernels/loss.ts";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import { seededIndices } from "../../src/data/dataset.ts";
import { keyOf } from "../../src/detect/cache.ts";
import { DetectConfig } from "../../src/detect/config.ts";
import { finishDetection } from "../../src/detect/finish.ts";
import type { Scored } from "../../src/detect/scoring.ts";
import type { OnStage, StageClock } from "../../src/detect/stages.ts";
import { buildTrainingSet, type TrainingSet, TrainingSetSpec } from "../../src/detect/training-set.ts";
import { detectRuntime } from "../../src/gpu/device.ts";
import { getRuntime, type Runtime } from "../../src/gpu/runtime.ts";
import { hostModelFromSafetensors, modelFromSafetensors } from "../../src/nn/checkpoint.ts";
import { type Model, releaseModel } from "../../src/nn/models.ts";
import type { ArrayValue, Inputs, ShardPlan } from "../../src/protocol/job-kind.ts";
import { TRAIN, TrainPayload } from "../../src/protocol/shards.ts";
import { datasetInfo, datasetPath, DEFAULT_DATASET, trainSplit } from "./datasets.ts";

/** The training-set fields of every job that trains on a served data set (src/detect/training-set.ts). */
export const JobData = TrainingSetSpec.extend({
  /** A dataset the coordinator serves (server/jobs/datasets.ts). */
  data: z.string().default(DEFAULT_DATASET),
  train: TrainingSetSpec.shape.train.unwrap().max(50000).default(4000),
  // label-consistent poisons with a surrogate model trained on the device: not reproducible on every worker.
  attack: z.enum(["none", "badnets", "blended", "sig", "wanet"]).default("badnets"),
  /** Margins re-evaluated on the host (float64 twin) per submitted checkpoint. */
  spotChecks: z.number().int().min(1).default(16),
  maxCheckpointBytes: z.number().int().positive().default(64 << 20),
});
export type JobData = z.output<typeof JobData> & { model: z.output<typeof DetectConfig>["model"] };

/** The detect settings a job reproduces: its spec's DetectConfig fields (the rest are dropped), with the
 * data set's name resolved to the coordinator's local file. */
export function detectConfigOf(
  s: JobData,
  extra: Partial<z.input<typeof DetectConfig>> = {},
): z.output<typeof DetectConfig> {
  return DetectConfig.parse({ ...s, ...extra, data: datasetPath(s.data) });
}

export const datasetRef = (s: Pick<JobData, "data" | "train" | "seed" | "attack" | "attackConfig">) => ({
  data: s.data,
  train: s.train,
  seed: s.seed,
  attack: s.attack,
  attackConfig: s.attackConfig,
});

/**
 * The number of training examples a job plans for (its `train`, at most the dataset's), after checking
 * that its model takes the dataset's images and classes: a mismatch is the spec's mistake, said at once.
 */
export function plannedExamples(s: JobData): number {
  const info = datasetInfo(s.data);
  const m = s.model as { input: number[]; classes: number };
  if (m.input.join("x") !== info.shape.join("x") || m.classes !== info.classes) {
    throw new Error(
      `model takes ${m.input.join("x")} images of ${m.classes} classes; dataset ${s.data} has ${
        info.shape.join("x")
      } images of ${info.classes} classes (set model.input and model.classes)`,
    );
  }
  return Math.min(s.train, info.train);
}

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
    key,
    kind: TRAIN,
    payload,
    deps: [],
    deterministic: false,
    maxBytes: maxCheckpointBytes,
    outputs: { checkpoint: { dtype: "u8", shape: [-1] }, margins: { dtype: "f32", shape: [n] } },
  };
}

/** Results of nondeterministic shards are never compared in tolerance; a replay must be bitwise the same. */
export const bitwiseEqual = (a: Record<string, ArrayValue>, b: Record<string, ArrayValue>): boolean =>
  Object.keys(a).every((k) =>
    b[k] && a[k].data.length === b[k].data.length && a[k].data.every((v, i) => v === b[k].data[i])
  );

/** |device f32 margin - host float64 margin| allowed per spot-checked example, times (1 + |m|). */
export const SPOT_MARGIN_TOLERANCE = 1e-3;

/**
 * A submitted checkpoint must be a model of the job's architecture, and the margins claimed for a random
 * sample of examples must be what that checkpoint gives: recomputed in float64 on the host (the layers'
 * CPU twins, eval mode, the shard's normalisation), within 1e-3 (1 + |m|) of the device's f32 value
 * (observed f32 vs f64 differences on these models: ~1e-6). It does not show the model was trained on
 * the shard's data: that is the trust model's replication and reputation (DESIGN.md section 4).
 */
export async function spotCheckTrain(
  s: JobData,
  shard: ShardPlan,
  result: Record<string, ArrayValue>,
  seed: number,
): Promise<string | null> {
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
  const { x, y } = assembleBatchRef(train.images, train.labels, train.c, train.h, train.w, idx, {
    start: 0,
    size: count,
    mean: p.recipe.mean,
    std: p.recipe.std,
    pad: 0,
    flip: false,
    seed: 0,
    stream: 0,
  });
  const logits = model.net.forwardRef({ shape: [train.c, count, train.h, train.w], data: x }, "eval");
  const ref = marginRef(logits.data, y, model.classes, count).value;
  for (let j = 0; j < count; j++) {
    const got = claimed[idx[j]];
    if (!(Math.abs(got - ref[j]) <= SPOT_MARGIN_TOLERANCE * (1 + Math.abs(ref[j])))) {
      return `${shard.key}: claimed margin ${got} of example ${idx[j]} is not the checkpoint's (${
        ref[j].toPrecision(6)
      })`;
    }
  }
  return null;
}

/**
 * The device for a job's finish, autotuned as the pipeline is (the same tiles, so the same rounding); or
 * null on a coordinator without WebGPU (Node, where Dawn is unreliable), which does `what` on the host in
 * float64 up to `hostMax` examples.
 */
export async function finishRuntime(n: number, hostMax: number, what: string): Promise<Runtime | null> {
  if (detectRuntime() === "node") {
    if (n > hostMax) {
      throw new Error(
        `this coordinator runs on Node, without WebGPU, where ${what} runs on the host in float64 up to ` +
          `n = ${hostMax} examples; this job has ${n}: run the coordinator under Deno (npm run serve)`,
      );
    }
    return null;
  }
  const rt = await getRuntime();
  await autotuneMatmul(rt);
  return rt;
}

/** The search's progress as one line per new subset size. */
export function searchProgress(onProgress: (msg: string) => void): OnStage {
  let last = "";
  return (p) => {
    if (p.detail && p.detail !== last) onProgress(`search ${(last = p.detail)}`);
  };
}

/**
 * The end of a job's finish, from its scores on: the pipeline's finish (src/detect/finish.ts) with the
 * model of shard `model0` for the baselines and the "before" evaluation, and no removal or retraining (the
 * plan is fixed before the scores exist: the flagged list is the output). Writes summary.json,
 * report.html and scores.json; returns the job's summary.
 */
export async function finishJob(a: {
  spec: JobData;
  cfg: z.output<typeof DetectConfig>;
  scored: Scored;
  rt: Runtime | null;
  inputs: Inputs;
  model0: string;
  outDir: string;
  clock: StageClock;
  onProgress: (msg: string) => void;
}): Promise<Record<string, unknown>> {
  const { rt } = a;
  const { train, poisoned } = await trainingSet(a.spec);
  let model: Model | undefined;
  const model0 = async () => {
    a.onProgress("baselines and evaluation of model 0");
    return (model =
      modelFromSafetensors(rt!, (await a.inputs.get(a.model0, "checkpoint")).data as Uint8Array, a.model0).model);
  };
  const { summary } = await finishDetection({
    cfg: a.cfg,
    scored: a.scored,
    train,
    poisoned,
    rt,
    model0,
    clock: a.clock,
    onProgress: () => {},
    outDir: a.outDir,
  });
  if (model) releaseModel(model);
  a.onProgress(`done: auroc ${summary.auroc?.toFixed(3) ?? "n/a"}, ${summary.flagged.length} flagged`);
  return {
    auroc: summary.auroc,
    precision_at_budget: summary.precision_at_budget,
    recall_at_budget: summary.recall_at_budget,
    tpr_at_5fpr: summary.tpr_at_5fpr,
    flagged: summary.flagged,
    clean_acc_before: rt ? summary.clean_acc_before : null,
    asr_before: rt ? summary.asr_before : null,
    n: train.n,
    adapter: summary.adapter,
    baselines: Object.fromEntries(Object.entries(summary.baselines).map(([k, b]) => [k, { auroc: b.auroc }])),
    spectral_auroc: summary.spectral_score?.auroc ?? null,
    lds: summary.lds,
    seconds: summary.seconds,
    files: ["summary.json", "report.html", "scores.json"],
  };
}
