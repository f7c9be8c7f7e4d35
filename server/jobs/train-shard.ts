// What the trak and datamodels jobs share: the job's training set (rebuilt from its settings), train
// shards (a model trained by a volunteer: checkpoint + margins on all n, spot-checked on the host), the
// choice between the device and the host for finish, and the end of finish (the pipeline's one finish,
// src/detect/finish.ts, without removal and retraining, and the job's summary).
import { z } from "zod";
import { assembleBatchRef, type DeviceDataset, uploadDataset } from "../../kernels/batch.ts";
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
import { decodeSafetensors } from "../../src/checkpoint/safetensors.ts";
import { maskBits, maskIndices, maskSize } from "../../src/datamodels/masks.ts";
import { hostModelFromSafetensors, modelFromSafetensors, parameterCountOf, stateOf } from "../../src/nn/checkpoint.ts";
import { evaluate, Recipe, schedule } from "../../src/nn/train.ts";
import { type Model, releaseModel } from "../../src/nn/models.ts";
import { REPLAY_TOLERANCE, replaySegment, type SegmentReplay } from "../../src/nn/replay.ts";
import type { ArrayValue, CheckDepth, Inputs, ShardPlan } from "../../src/protocol/job-kind.ts";
import { STATES, TRAIN, TrainPayload } from "../../src/protocol/shards.ts";
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
  /** Each train shard's run is cut into segments of at most this many SGD steps, and the coordinator replays
   *  one of them to verify a sample of train results (server/README.md, "Threat model"): short segments
   *  keep an honest replay on another adapter close (rounding differences grow with every step). */
  segmentSteps: z.number().int().min(1).default(4),
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

/** A train shard: the model of `payload`, returned as checkpoint + margins on all n examples, and the
 *  training states after each of its segments but the last. */
export function trainShard(
  key: string,
  payload: Omit<TrainPayload, "segments">,
  n: number,
  s: Pick<JobData, "segmentSteps" | "maxCheckpointBytes">,
): ShardPlan {
  const examples = payload.mask ? maskSize({ n, alpha: payload.mask.alpha }) : n;
  const steps = schedule(Recipe.parse(payload.recipe), examples).totalSteps;
  const segments = Math.ceil(steps / s.segmentSteps);
  const bytes = (segments - 1) * 2 * 4 * parameterCountOf(payload.model);
  if (bytes > s.maxCheckpointBytes) {
    throw new Error(
      `the training states of ${key} (${segments} segments of ${s.segmentSteps} steps) take ${
        (bytes / 2 ** 20).toFixed(0)
      } MiB, over maxCheckpointBytes (${(s.maxCheckpointBytes / 2 ** 20).toFixed(0)} MiB): raise segmentSteps`,
    );
  }
  return {
    key,
    kind: TRAIN,
    payload: { ...payload, segments },
    deps: [],
    deterministic: false,
    maxBytes: s.maxCheckpointBytes,
    outputs: {
      checkpoint: { dtype: "u8", shape: [-1] },
      margins: { dtype: "f32", shape: [n] },
      ...(segments > 1 ? { [STATES]: { dtype: "u8", shape: [-1] } } : {}),
    },
  };
}

/** Results of nondeterministic shards are never compared in tolerance; a replay must be bitwise the same. */
export const bitwiseEqual = (a: Record<string, ArrayValue>, b: Record<string, ArrayValue>): boolean =>
  Object.keys(a).every((k) =>
    b[k] && a[k].data.length === b[k].data.length && a[k].data.every((v, i) => v === b[k].data[i])
  );

/** |device f32 margin - host float64 margin| allowed per spot-checked example, times (1 + |m|). */
export const SPOT_MARGIN_TOLERANCE = 1e-3;
const marginMatches = (got: number, ref: number) => Math.abs(got - ref) <= SPOT_MARGIN_TOLERANCE * (1 + Math.abs(ref));

/**
 * Membership thresholds on `membershipZ`. An honest model that learned nothing still has z ~ N(0, 1), so
 * z < -4 (fitting the other examples better than its own) is refused: at most 3e-5 honest refusals per
 * shard. Honest models of the default recipe measure z = 2.6-6.2 at n = 1,000 (server/README.md), and a
 * model of another random mask |z| < 1.5, so a result below 3 is suspect and gets a segment replayed.
 */
export const MEMBERSHIP = { refuseBelow: -4, replayBelow: 3 };

/**
 * Membership signal of a subset model: (mean margin in its mask - mean margin outside) / standard error.
 * An honest model fits what it trained on better (z well above 0); one trained on another mask is near 0.
 */
export function membershipZ(margins: ArrayLike<number>, inMask: Uint8Array): number {
  const acc = [[0, 0, 0], [0, 0, 0]]; // per side: count, sum, sum of squares
  for (let i = 0; i < inMask.length; i++) {
    const a = acc[inMask[i]], m = margins[i];
    a[0]++, a[1] += m, a[2] += m * m;
  }
  const [[n0, s0, q0], [n1, s1, q1]] = acc;
  if (n0 < 2 || n1 < 2) return Infinity; // nothing outside the mask to compare with
  const mean0 = s0 / n0, mean1 = s1 / n1;
  const var0 = (q0 - n0 * mean0 * mean0) / (n0 - 1), var1 = (q1 - n1 * mean1 * mean1) / (n1 - 1);
  return (mean1 - mean0) / Math.sqrt(var0 / n0 + var1 / n1 + 1e-30);
}

const deviceSets = new Map<string, Promise<DeviceDataset>>();
/** The job's training set on the coordinator's device, for replays and audits; uploaded once per process. */
function deviceSet(rt: Runtime, s: JobData): Promise<DeviceDataset> {
  const key = keyOf(datasetRef(s));
  let p = deviceSets.get(key);
  if (!p) {
    p = trainingSet(s).then(({ train }) => uploadDataset(rt, train));
    p.catch(() => deviceSets.delete(key));
    deviceSets.set(key, p);
  }
  return p;
}

let deviceQueue: Promise<unknown> = Promise.resolve();
/** Run `f` on the coordinator's device (autotuned, with the job's training set), one call at a time. */
export function onDevice<T>(s: JobData, f: (rt: Runtime, ds: DeviceDataset) => Promise<T>): Promise<T> {
  const run = deviceQueue.then(async () => {
    const rt = await getRuntime();
    await autotuneMatmul(rt);
    return f(rt, await deviceSet(rt, s));
  });
  deviceQueue = run.catch(() => undefined);
  return run;
}

/** Replay segment `segment` of a train result from its submitted states, on the coordinator's device. */
export function replayTrainResult(
  s: JobData,
  p: TrainPayload,
  result: Record<string, ArrayValue>,
  segment: number,
): Promise<SegmentReplay> {
  const states = p.segments > 1 ? decodeSafetensors(result[STATES].data as Uint8Array, STATES) : undefined;
  const end = segment === p.segments - 1
    ? decodeSafetensors(result.checkpoint.data as Uint8Array, "checkpoint")
    : stateOf(states!, segment + 1);
  return onDevice(s, (rt, ds) => {
    const indices = p.mask &&
      maskIndices({ n: ds.n, alpha: p.mask.alpha, seed: p.mask.seed }, p.mask.split, p.mask.model);
    const run = { model: p.model, recipe: p.recipe, seed: p.seed, indices, segments: p.segments };
    return replaySegment(rt, ds, run, segment, segment === 0 ? null : stateOf(states!, segment), end);
  });
}

/**
 * On the coordinator's device: replay segment `seed mod segments` of a train result, and recompute every
 * claimed margin from its checkpoint. Returns why it is refused, or null; undefined on a coordinator
 * without WebGPU (Node), which can do neither.
 */
async function deviceCheck(s: JobData, key: string, p: TrainPayload, result: Record<string, ArrayValue>, seed: number) {
  if (detectRuntime() === "node") return undefined;
  const r = await replayTrainResult(s, p, result, (seed >>> 0) % p.segments);
  if (!(r.relative <= REPLAY_TOLERANCE)) {
    return `${key}: segment ${r.segment} replayed from the submitted state lands ${
      r.relative.toPrecision(3)
    } of its movement away from the claimed state (tolerance ${REPLAY_TOLERANCE})`;
  }
  const checkpoint = decodeSafetensors(result.checkpoint.data as Uint8Array, "checkpoint");
  return onDevice(s, async (rt, ds) => {
    const { model } = modelFromSafetensors(rt, checkpoint, key, p.model);
    try {
      const { margins } = await evaluate(rt, model, ds, { mean: p.recipe.mean, std: p.recipe.std });
      const claimed = result.margins.data;
      const bad = margins.findIndex((m, i) => !marginMatches(claimed[i], m));
      return bad < 0
        ? null
        : `${key}: claimed margin ${claimed[bad]} of example ${bad} is not the checkpoint's (${margins[bad]})`;
    } finally {
      releaseModel(model);
    }
  });
}

/**
 * The checks of a train result, cheapest first:
 * 1. the checkpoint is a model of the job's architecture, and the margins claimed for a random sample of
 *    examples are what it gives: recomputed in float64 on the host (the layers' CPU twins, eval mode, the
 *    shard's normalisation), within 1e-3 (1 + |m|) of the device's f32 value (observed f32 vs f64
 *    differences on these models: ~1e-6);
 * 2. a subset model fits its own mask better than the rest (`membershipZ`): one that does not is refused or,
 *    when the gap is merely small, replayed;
 * 3. with `depth.replay` (or a small membership gap), on a coordinator with WebGPU: one random segment of
 *    the run replayed from the submitted states lands where the result says (`REPLAY_TOLERANCE`), which a
 *    model trained on other examples, or in another order, does not; and every claimed margin is the
 *    checkpoint's on the device.
 * 1 and 2 do not show the model was trained on the shard's data; 3 does, for the replayed segment.
 */
export async function spotCheckTrain(
  s: JobData,
  shard: ShardPlan,
  result: Record<string, ArrayValue>,
  seed: number,
  depth?: CheckDepth,
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
    if (!marginMatches(got, ref[j])) {
      return `${shard.key}: claimed margin ${got} of example ${idx[j]} is not the checkpoint's (${
        ref[j].toPrecision(6)
      })`;
    }
  }
  let replay = depth?.replay ?? false;
  if (p.mask) {
    const { alpha, seed: maskSeed, split, model: m } = p.mask;
    const z = membershipZ(claimed, maskBits({ n: train.n, alpha, seed: maskSeed }, split, m));
    if (!(z >= MEMBERSHIP.refuseBelow)) {
      return `${shard.key}: the model fits the other examples better than its own subset (z = ${z.toFixed(2)})`;
    }
    replay ||= z < MEMBERSHIP.replayBelow;
  }
  if (replay) {
    try {
      const reason = await deviceCheck(s, shard.key, p, result, seed);
      if (reason) return reason;
    } catch (e) {
      return `${shard.key}: ${(e as Error).message}`;
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
