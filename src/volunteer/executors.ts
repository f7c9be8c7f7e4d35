// The volunteer's executors for the trak and datamodels jobs: `train` (one ensemble member, or one
// datamodels subset model, on the job's poisoned training set: checkpoint + margins on all n),
// `featurize` (TRAK features of examples [start, end) under an accepted checkpoint), and `trak-finish` and
// `datamodels-finish` (a job's scores and report, src/detect/job-finish.ts). A train result also
// carries the training states after each segment but the last, for the coordinator to replay a segment. They
// call the same library code as `npm run detect` (buildTrainingSet, trainModel, evaluate, featurize) with
// the same seeds and tile sizes, so a volunteer's results equal a single-machine run's on the same adapter.
// Runs in Deno and in a browser Web Worker: no file system here; the host passes a loader for the CIFAR-10
// training split.
import { type DeviceDataset, uploadDataset } from "../../kernels/batch.ts";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import type { ArrayValue, Executor, ExecutorContext } from "../protocol/job-kind.ts";
import { featurizeRange } from "../attribution/featurize.ts";
import { maskIndices } from "../datamodels/masks.ts";
import { crc32 } from "../data/io.ts";
import type { Dataset } from "../data/dataset.ts";
import { keyOf } from "../detect/cache.ts";
import { buildTrainingSet, type TrainingSet } from "../detect/training-set.ts";
import type { Runtime } from "../gpu/runtime.ts";
import { encodeSafetensors, type Tensor as SafetensorsTensor } from "../checkpoint/safetensors.ts";
import { checkpointMetadata, modelFromSafetensors, modelToSafetensors, readParameters } from "../nn/checkpoint.ts";
import { buildModel, type Model, releaseModel } from "../nn/models.ts";
import { evaluate, trainModel } from "../nn/train.ts";
import {
  DATAMODELS_FINISH,
  DatamodelsFinishPayload,
  type DatasetRef,
  FEATURIZE,
  FeaturizePayload,
  STATES,
  TRAIN,
  TrainPayload,
  TRAK_FINISH,
  TrakFinishPayload,
} from "../protocol/shards.ts";
import { datamodelsFinish, type FinishContext, trakFinish } from "../detect/job-finish.ts";

export type { Executor };

export interface ExecutorEnv {
  rt: Runtime;
  /** The training split of the dataset the coordinator serves as `name`. */
  loadTrainSplit(name: string): Promise<Dataset>;
  /** Its test split (the finish shard's evaluation); a worker without it takes no finish shards. */
  loadTestSplit?(name: string): Promise<Dataset>;
  log?: (msg: string) => void;
  /** Autotune the matmul tiles first, as the pipeline does (default true). Browsers skip it: on a software
   * adapter it costs minutes, and there is no cache shared with a single-machine run to match anyway. */
  autotune?: boolean;
}

const f32 = (data: Float32Array, shape: number[]): ArrayValue => ({ dtype: "f32", shape, data });
const u8 = (data: Uint8Array): ArrayValue => ({ dtype: "u8", shape: [data.length], data });
const checkAbort = (signal?: AbortSignal) => {
  if (signal?.aborted) throw new Error("aborted");
};

/** The TRAK executors, keyed by executor name. Keeps the last training set and model on the device. */
export function trakExecutors(env: ExecutorEnv): Record<string, Executor> {
  const { rt } = env;
  let data: { key: string; set: TrainingSet; device: DeviceDataset } | undefined;
  let loaded: { key: string; model: Model } | undefined;
  let tuned: Promise<unknown> | undefined;

  const trainingSet = async (ref: DatasetRef) => {
    const key = keyOf(ref);
    if (data?.key !== key) {
      if (data) [data.device.pixels, data.device.labels].forEach((t) => t.release());
      data = undefined;
      const set = await buildTrainingSet(await env.loadTrainSplit(ref.data), ref);
      const t = set.train;
      data = { key, set, device: uploadDataset(rt, t) };
      env.log?.(`training set ${ref.data} n=${t.n} attack=${ref.attack}: ${set.poisoned?.length ?? 0} poisoned`);
    }
    return data;
  };
  // The pipeline autotunes before training; the tiles are cached per adapter, so every process on one
  // machine picks the same ones (and rounds the same way).
  const ready = () => (tuned ??= env.autotune === false ? Promise.resolve() : autotuneMatmul(rt));

  const train: Executor = async (payload, _inputs, ctx) => {
    const p = TrainPayload.parse(payload);
    await ready();
    const { device } = await trainingSet(p.dataset);
    // A datamodels subset model: the same call as trainSubsetModels (src/datamodels/train.ts).
    const indices = p.mask &&
      maskIndices({ n: device.n, alpha: p.mask.alpha, seed: p.mask.seed }, p.mask.split, p.mask.model);
    return trainResult(rt, device, p, indices, ctx);
  };

  const modelOf = (bytes: Uint8Array, label: string): Model => {
    const key = `${bytes.length}:${crc32(bytes)}`;
    if (loaded?.key !== key) {
      if (loaded) releaseModel(loaded.model);
      loaded = undefined;
      loaded = { key, model: modelFromSafetensors(rt, bytes, label).model };
    }
    return loaded.model;
  };

  const featurizeShard: Executor = async (payload, inputs, ctx) => {
    const p = FeaturizePayload.parse(payload);
    await ready();
    const { device } = await trainingSet(p.dataset);
    if (!(p.start < p.end && p.end <= device.n)) {
      throw new Error(`featurize: range [${p.start}, ${p.end}) is outside the ${device.n} training examples`);
    }
    const ck = await inputs.get(p.checkpoint, "checkpoint");
    if (ck.dtype !== "u8") throw new Error(`featurize: checkpoint of ${p.checkpoint} is ${ck.dtype}, expected u8`);
    const model = modelOf(ck.data as Uint8Array, p.checkpoint);
    return featurizeRange(rt, model, device, {
      k: p.k,
      projection: p.projection,
      seed: p.seed,
      modelIndex: p.modelIndex,
      batchSize: p.batchSize,
      start: p.start,
      end: p.end,
      onBatch: (done, total) => {
        checkAbort(ctx.signal);
        ctx.onProgress(done / total);
      },
    });
  };

  /** A job's finish shard (src/detect/job-finish.ts). */
  const finish = <P extends { dataset: DatasetRef }>(
    parse: (payload: unknown) => P,
    run: (p: P, c: FinishContext) => Promise<Record<string, ArrayValue>>,
  ): Executor =>
  async (payload, inputs, ctx) => {
    const p = parse(payload);
    await ready();
    const { set, device } = await trainingSet(p.dataset);
    const testSplit = await env.loadTestSplit!(p.dataset.data);
    return run(p, { rt, set, device, testSplit, inputs, onProgress: ctx.onProgress });
  };

  return {
    [TRAIN]: train,
    [FEATURIZE]: featurizeShard,
    ...(env.loadTestSplit
      ? {
        [TRAK_FINISH]: finish((x) => TrakFinishPayload.parse(x), trakFinish),
        [DATAMODELS_FINISH]: finish((x) => DatamodelsFinishPayload.parse(x), datamodelsFinish),
      }
      : {}),
  };
}

/**
 * The result of a train shard: the model of payload `p` trained on `indices` of the device dataset (all
 * when undefined), as checkpoint + margins on every example + the state after each segment but the last.
 */
export async function trainResult(
  rt: Runtime,
  device: DeviceDataset,
  p: TrainPayload,
  indices: ArrayLike<number> | undefined,
  ctx: ExecutorContext,
): Promise<Record<string, ArrayValue>> {
  const model = buildModel(rt, p.model, p.seed);
  const states: Record<string, SafetensorsTensor> = {};
  try {
    await trainModel(rt, model, device, { ...p.recipe, seed: p.seed }, {
      indices,
      segments: p.segments,
      onSegment: async (i) => {
        for (const [name, t] of Object.entries(await readParameters(rt, model, { velocities: true }))) {
          states[`${i}/${name}`] = t;
        }
      },
      onProgress: (q) => {
        checkAbort(ctx.signal);
        ctx.onProgress((0.95 * (q.epoch * q.batches + q.batch)) / (q.epochs * q.batches));
      },
    });
    const ev = await evaluate(rt, model, device, { mean: p.recipe.mean, std: p.recipe.std });
    const checkpoint = await modelToSafetensors(rt, model, { m: p.m, seed: p.seed });
    ctx.onProgress(1);
    return {
      checkpoint: u8(checkpoint),
      margins: f32(ev.margins, [device.n]),
      ...(p.segments > 1 ? { [STATES]: u8(encodeSafetensors(states, checkpointMetadata(model))) } : {}),
    };
  } finally {
    releaseModel(model);
  }
}
