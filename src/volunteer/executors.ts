// The volunteer's executors for the trak and datamodels jobs: `train` (one ensemble member, or one
// datamodels subset model, on the job's poisoned training set: checkpoint + margins on all n) and
// `featurize` (TRAK features of examples [start, end) under an accepted checkpoint). They call the same
// library code as `npm run detect` (buildTrainingSet, trainModel, evaluate, featurize) with the same seeds
// and tile sizes, so a volunteer's results equal a single-machine run's on the same adapter. Runs in Deno
// and in a browser Web Worker: no file system here; the host passes a loader for the CIFAR-10 training
// split.
import { type DeviceDataset, uploadDataset } from "../../kernels/batch.ts";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import type { ArrayValue, Executor } from "../protocol/job-kind.ts";
import { featurize } from "../attribution/featurize.ts";
import { maskIndices } from "../datamodels/masks.ts";
import { crc32 } from "../data/io.ts";
import type { Dataset } from "../data/dataset.ts";
import { keyOf } from "../detect/cache.ts";
import { buildTrainingSet, type TrainingSet } from "../detect/training-set.ts";
import type { Runtime } from "../gpu/runtime.ts";
import { modelFromSafetensors, modelToSafetensors } from "../nn/checkpoint.ts";
import { buildModel, type Model, releaseModel } from "../nn/models.ts";
import { evaluate, trainModel } from "../nn/train.ts";
import { type DatasetRef, FEATURIZE, FeaturizePayload, TRAIN, TrainPayload } from "../protocol/shards.ts";

export type { Executor };

export interface ExecutorEnv {
  rt: Runtime;
  /** The CIFAR-10 training split of the tarball the coordinator serves as `name`. */
  loadTrainSplit(name: string): Promise<Dataset>;
  log?: (msg: string) => void;
  /** Autotune the matmul tiles first, as the pipeline does (default true). Browsers skip it: on a software
   * adapter it costs minutes, and there is no cache shared with a single-machine run to match anyway. */
  autotune?: boolean;
}

const f32 = (data: Float32Array, shape: number[]): ArrayValue => ({ dtype: "f32", shape, data });

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
  const checkAbort = (signal?: AbortSignal) => {
    if (signal?.aborted) throw new Error("aborted");
  };

  const train: Executor = async (payload, _inputs, ctx) => {
    const p = TrainPayload.parse(payload);
    await ready();
    const { device } = await trainingSet(p.dataset);
    const model = buildModel(rt, p.model, p.seed);
    // A datamodels subset model: the same call as trainSubsetModels (src/datamodels/train.ts).
    const indices = p.mask &&
      maskIndices({ n: device.n, alpha: p.mask.alpha, seed: p.mask.seed }, p.mask.split, p.mask.model);
    try {
      await trainModel(rt, model, device, { ...p.recipe, seed: p.seed }, {
        indices,
        onProgress: (q) => {
          checkAbort(ctx.signal);
          ctx.onProgress((0.95 * (q.epoch * q.batches + q.batch)) / (q.epochs * q.batches));
        },
      });
      const ev = await evaluate(rt, model, device, { mean: p.recipe.mean, std: p.recipe.std });
      const checkpoint = await modelToSafetensors(rt, model, { m: p.m, seed: p.seed });
      ctx.onProgress(1);
      return {
        checkpoint: { dtype: "u8", shape: [checkpoint.length], data: checkpoint },
        margins: f32(ev.margins, [device.n]),
      };
    } finally {
      releaseModel(model);
    }
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
    const indices = Uint32Array.from({ length: p.end - p.start }, (_, i) => p.start + i);
    const f = await featurize(rt, model, device, {
      k: p.k,
      projection: p.projection,
      seed: p.seed,
      modelIndex: p.modelIndex,
      batchSize: p.batchSize,
      indices,
      onBatch: (done, total) => {
        checkAbort(ctx.signal);
        ctx.onProgress(done / total);
      },
    });
    const phi = (await rt.read(f.phi)) as Float32Array;
    f.phi.release();
    return { phi: f32(phi, [f.n, f.k]), margins: f32(f.margins, [f.n]), q: f32(f.q, [f.n]) };
  };

  return { [TRAIN]: train, [FEATURIZE]: featurizeShard };
}
