// What the trak and datamodels jobs share: the job's training set (rebuilt from its settings), train
// shards (a model trained by a volunteer: checkpoint + margins on all n, spot-checked on the host), and the
// finish shard (the job's scores and report, computed by volunteers: src/detect/job-finish.ts): its plan, the
// agreement of two results, and the Deno coordinator's own computation of one for an audit.
import { z } from "zod";
import { assembleBatchRef, type DeviceDataset, uploadDataset } from "../../kernels/batch.ts";
import { marginRef } from "../../kernels/loss.ts";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import { seededIndices } from "../../src/data/dataset.ts";
import { keyOf } from "../../src/detect/cache.ts";
import { DetectConfig } from "../../src/detect/config.ts";
import { FINISH_SCORES, type FinishContext } from "../../src/detect/job-finish.ts";
import { reportFileNames } from "../../src/detect/report.ts";
import { buildTrainingSet, type TrainingSet, TrainingSetSpec } from "../../src/detect/training-set.ts";
import { detectRuntime } from "../../src/gpu/device.ts";
import { getRuntime, type Runtime } from "../../src/gpu/runtime.ts";
import { decodeSafetensors } from "../../src/checkpoint/safetensors.ts";
import { maskBits, maskIndices, maskSize } from "../../src/datamodels/masks.ts";
import { hostModelFromSafetensors, modelFromSafetensors, parameterCountOf, stateOf } from "../../src/nn/checkpoint.ts";
import { evaluate, Recipe, schedule } from "../../src/nn/train.ts";
import { releaseModel } from "../../src/nn/models.ts";
import { REPLAY_TOLERANCE, replaySegment, type SegmentReplay } from "../../src/nn/replay.ts";
import {
  type ArraySpec,
  type ArrayValue,
  type CheckDepth,
  FINISH,
  type Inputs,
  type ShardPlan,
} from "../../src/protocol/job-kind.ts";
import { STATES, TRAIN, TrainPayload } from "../../src/protocol/shards.ts";
import { datasetInfo, DEFAULT_DATASET, testSplit, trainSplit } from "./datasets.ts";

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

/** Most bytes of one report file of a finish shard (report.html carries the flagged images inline). */
const REPORT_FILE_MAX = 64 << 20;

/**
 * A job's finish shard: after every shard planned before it, executor `kind` with `payload`; its outputs are
 * the report's files (detection_info.csv when the attack gives a ground truth) and the n search scores.
 */
export function finishShard(s: JobData, kind: string, payload: unknown, before: ShardPlan[], n: number): ShardPlan {
  const file: ArraySpec = { dtype: "u8", shape: [-1] };
  return {
    key: FINISH,
    kind,
    payload,
    deps: before.map((x) => x.key),
    deterministic: true,
    outputs: {
      ...Object.fromEntries(reportFileNames(s.attack !== "none").map((name) => [name, file])),
      [FINISH_SCORES]: { dtype: "f32", shape: [n] },
    },
    maxBytes: REPORT_FILE_MAX,
  };
}

/** Scores of two finish results (search.ts rankScores): a different selection moves an example's frequency part
 *  by 1/size over the top frequency, above 1e-4 at the default sizes and restarts; the support part is a z-score,
 *  open to f32 rounding between adapters. On one adapter they are bitwise equal. */
export const FINISH_SCORE_TOLERANCE = 1e-5;

/**
 * Two finish results of the same accepted shards: the same search scores and the same flagged list. The
 * report's other figures (baselines, evaluation, timings) are those of the result accepted first.
 */
export function finishesAgree(a: Record<string, ArrayValue>, b: Record<string, ArrayValue>): boolean {
  const sa = a[FINISH_SCORES]?.data, sb = b[FINISH_SCORES]?.data;
  if (!sa || !sb || sa.length !== sb.length) return false;
  for (let i = 0; i < sa.length; i++) {
    if (!(Math.abs(sa[i] - sb[i]) <= FINISH_SCORE_TOLERANCE * (1 + Math.abs(sa[i])))) return false;
  }
  const flagged = (r: Record<string, ArrayValue>) => {
    try {
      return JSON.stringify(JSON.parse(new TextDecoder().decode(r["summary.json"]?.data)).flagged);
    } catch {
      return undefined;
    }
  };
  const fa = flagged(a);
  return fa !== undefined && fa === flagged(b);
}

/** A finish shard on the coordinator's device, for an audit; undefined without WebGPU (Node). */
export function recomputeFinish(
  s: JobData,
  inputs: Inputs,
  run: (c: FinishContext) => Promise<Record<string, ArrayValue>>,
): Promise<Record<string, ArrayValue> | undefined> {
  if (detectRuntime() === "node") return Promise.resolve(undefined);
  return onDevice(
    s,
    async (rt, device) => run({ rt, set: await trainingSet(s), device, testSplit: await testSplit(s.data), inputs }),
  );
}
