// The detection pipeline on one machine: data (+ attack) -> train the ensemble -> attribution (TRAK
// factors, or datamodels) -> scores -> the finish (./finish.ts: baselines, flag, remove and retrain,
// evaluate, summary). Every stage's output is cached (./cache.ts), so a rerun with one changed setting
// redoes only what that setting touches.
import { type DeviceDataset, uploadDataset } from "../../kernels/batch.ts";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import { type Features, featurize } from "../attribution/featurize.ts";
import { joinPath, makeDir } from "../data/io.ts";
import type { HeldOut } from "../attribution/lds.ts";
import { fitDatamodels } from "../datamodels/regression.ts";
import { DatamodelStore, storedHeldOut } from "../datamodels/store.ts";
import { trainSubsetModels } from "../datamodels/train.ts";
import type { Runtime } from "../gpu/runtime.ts";
import { buildModel, type Model } from "../nn/models.ts";
import { trainModel } from "../nn/train.ts";
import { cachedJson, cachedModel, keyOf } from "./cache.ts";
import { DetectConfig } from "./config.ts";
import { finishDetection } from "./finish.ts";
import { scoreDense, scoreFeatures } from "./scoring.ts";
import { type OnStage, stageClock } from "./stages.ts";
import type { DetectResult } from "./summary.ts";
import { ensembleSeed } from "./training-set.ts";
import { loadDetectData, resolveDefaults } from "./data.ts";

export async function runDetect(
  rt: Runtime,
  config: DetectConfig,
  onProgress: OnStage = () => {},
): Promise<DetectResult> {
  const settings = resolveDefaults(DetectConfig.parse(config));
  const clock = stageClock();
  const stage = clock.stage;

  // 1. data (read and checked before anything is written, so a bad dataset leaves nothing behind)
  onProgress({ stage: "data", done: 0, total: 1 });
  const data = await loadDetectData(settings);
  const { train, poisoned, dataKey } = data;
  // The model's input shape and class count are the data's.
  const cfg = {
    ...settings,
    model: {
      ...settings.model,
      input: [train.c, train.h, train.w] as [number, number, number],
      classes: train.classes.length,
    },
  };
  await makeDir(cfg.cache);
  await autotuneMatmul(rt);
  const deviceTrain = uploadDataset(rt, train);
  onProgress({
    stage: "data",
    done: 1,
    total: 1,
    detail: `${train.n} training examples${poisoned ? `, ${poisoned.length} poisoned` : ""}`,
  });
  stage("data");

  // 2. the ensemble
  const trainOne = (
    ds: DeviceDataset,
    seed: number,
    indices: ArrayLike<number> | undefined,
    label: string,
    epochs = cfg.recipe.epochs,
  ) =>
  async () => {
    const model = buildModel(rt, cfg.model, seed);
    await trainModel(rt, model, ds, { ...cfg.recipe, epochs, seed }, {
      indices,
      onProgress: (p) =>
        onProgress({
          stage: label,
          done: p.epoch * p.batches + p.batch,
          total: p.epochs * p.batches,
          detail: `${p.imagesPerSecond.toFixed(0)} img/s`,
        }),
    });
    return model;
  };
  const models: Model[] = [];
  const ensemble = cfg.attribution === "trak" ? cfg.models : 1;
  for (let m = 0; m < ensemble; m++) {
    const key = keyOf({ dataKey, model: cfg.model, recipe: cfg.recipe, m });
    models.push(
      await cachedModel(
        rt,
        cfg.cache,
        `model-${key}`,
        trainOne(deviceTrain, ensembleSeed(cfg.seed, m), undefined, `train model ${m + 1}/${ensemble}`),
        { dataKey, m },
      ),
    );
  }
  stage("train");

  // Subset models (datamodels, and the held-out ones of the LDS): one resumable store per training set and
  // recipe, so the two attributions share held-out models and a larger dmModels extends a smaller run.
  const needStore = cfg.attribution === "datamodels" || cfg.ldsModels > 0;
  const store = needStore
    ? await DatamodelStore.open(
      joinPath(cfg.cache, `datamodels-${keyOf({ dataKey, model: cfg.model, recipe: cfg.recipe, alpha: cfg.dmAlpha })}`),
      {
        n: train.n,
        alpha: cfg.dmAlpha,
        seed: cfg.seed,
        targets: 0,
        job: { dataKey, model: cfg.model, recipe: cfg.recipe },
      },
    )
    : undefined;
  const trainSubsets = (split: "train" | "heldout", count: number, label: string) =>
    trainSubsetModels(
      rt,
      store!,
      split,
      count,
      { config: cfg.model, recipe: cfg.recipe, train: deviceTrain },
      (p) =>
        onProgress({
          stage: label,
          done: p.done,
          total: p.total,
          detail: p.trained ? `${p.secondsPerModel.toFixed(2)} s/model` : "",
        }),
    );
  let heldOut: HeldOut | undefined;
  if (cfg.ldsModels > 0) {
    await trainSubsets("heldout", cfg.ldsModels, "held-out subset models");
    heldOut = await storedHeldOut(store!, cfg.ldsModels);
    stage("lds models");
  }

  // 3. attribution (TRAK factors, or the datamodels matrix) and 4. scores
  const ldsKey = cfg.ldsModels ? { ldsModels: cfg.ldsModels, alpha: cfg.dmAlpha } : {};
  const scoreKey = cfg.attribution === "trak"
    ? keyOf({
      dataKey,
      model: cfg.model,
      recipe: cfg.recipe,
      M: cfg.models,
      k: cfg.k,
      projection: cfg.projection,
      restarts: cfg.restarts,
      qWeight: cfg.qWeight,
      search: cfg.searchBackend,
      rule: "class-blocks",
      ranking: "frequency+support",
      ...ldsKey,
    })
    : keyOf({
      dataKey,
      model: cfg.model,
      recipe: cfg.recipe,
      attribution: "datamodels",
      dmModels: cfg.dmModels,
      dmAlpha: cfg.dmAlpha,
      dmPenalty: cfg.dmPenalty,
      restarts: cfg.restarts,
      rule: "class-blocks",
      ranking: "frequency+support",
      ...ldsKey,
    });
  const { value: scored } = await cachedJson(cfg.cache, `scores-${scoreKey}`, async () => {
    if (cfg.attribution === "datamodels") {
      await trainSubsets("train", cfg.dmModels, "datamodel subset models");
      stage("datamodels train");
      // The first dmModels records: a store extended by a larger run still gives this run's fit.
      const data = {
        n: store!.n,
        models: cfg.dmModels,
        rows: (start: number, count: number) => store!.rows(start, count),
      };
      const fit = await fitDatamodels(rt, data, {
        penalty: cfg.dmPenalty,
        seed: cfg.seed,
        onProgress: (done, total, detail) => onProgress({ stage: "datamodels fit", done, total, detail }),
      });
      const A = (await rt.read(fit.weights)) as Float32Array; // row = target, diagonal zeroed by the fit
      fit.weights.release();
      stage("attribute");
      return scoreDense(A, train.n, { ...cfg, labels: train.labels }, onProgress, heldOut);
    }
    const feats: Features[] = [];
    for (let m = 0; m < models.length; m++) {
      feats.push(
        await featurize(rt, models[m], deviceTrain, {
          k: cfg.k,
          projection: cfg.projection,
          seed: cfg.seed,
          modelIndex: m,
          onBatch: (done, total) => onProgress({ stage: `attribute model ${m + 1}/${models.length}`, done, total }),
        }),
      );
    }
    const settings = { ...cfg, labels: train.labels };
    return scoreFeatures(rt, feats, settings, onProgress, () => stage("attribute"), heldOut);
  });
  stage("search");

  // 5. baselines, 6. flag, remove, retrain, evaluate
  const retrain = (remove: readonly number[], label: string) => {
    const drop = new Set(remove);
    const keep = Uint32Array.from({ length: train.n }, (_, i) => i).filter((i) => !drop.has(i));
    // Same number of SGD steps as the model it replaces: removal should cost data, not training time.
    const epochs = (cfg.recipe.epochs * train.n) / keep.length;
    const key = keyOf({
      dataKey,
      model: cfg.model,
      recipe: cfg.recipe,
      epochs,
      removed: [...drop].sort((a, b) => a - b),
    });
    return cachedModel(rt, cfg.cache, `retrain-${key}`, trainOne(deviceTrain, cfg.seed * 1000, keep, label, epochs), {
      dataKey,
      removed: drop.size,
    });
  };
  return finishDetection({
    cfg,
    scored,
    train,
    poisoned,
    data,
    rt,
    model0: async () => models[0],
    deviceTrain,
    retrain,
    clock,
    onProgress,
  });
}
