// Subset training for datamodels: model r of a split trains on its mask (masks.ts) with the job's recipe,
// then records its margins on every training example (and on the job's target images) in the store.
// The dataset stays uploaded once; per model only the parameters are built and freed.
import type { DeviceDataset } from "../../kernels/batch.ts";
import type { Runtime } from "../gpu/runtime.ts";
import { buildModel, type ModelConfig, releaseModel } from "../nn/models.ts";
import { evaluate, Recipe, trainModel } from "../nn/train.ts";
import { maskIndices, type Split, subsetSeed } from "./masks.ts";
import type { DatamodelStore } from "./store.ts";

export interface SubsetTraining {
  config: ModelConfig;
  recipe: Recipe;
  train: DeviceDataset;
  /** Target images (the store's `targets` of them), if the job names any. */
  targets?: DeviceDataset;
}

export interface SubsetProgress {
  done: number;
  total: number;
  /** Models trained by this call (the rest were in the store already) and their mean seconds. */
  trained: number;
  secondsPerModel: number;
}

/** Trains every model 0..count-1 of `split` that the store lacks, appending each as it finishes. */
export async function trainSubsetModels(
  rt: Runtime,
  store: DatamodelStore,
  split: Split,
  count: number,
  s: SubsetTraining,
  onProgress?: (p: SubsetProgress) => void,
): Promise<SubsetProgress> {
  const r = Recipe.parse(s.recipe);
  if (s.train.n !== store.n) {
    throw new Error(`datamodels: the store is for ${store.n} training examples, the dataset has ${s.train.n}`);
  }
  if ((s.targets?.n ?? 0) !== store.spec.targets) {
    throw new Error(
      `datamodels: the store records ${store.spec.targets} target margins, ${
        s.targets?.n ?? 0
      } target images were given`,
    );
  }
  const todo = Array.from({ length: count }, (_, m) => m).filter((m) => !store.has(split, m));
  const t0 = performance.now();
  const progress = (trained: number): SubsetProgress => ({
    done: count - todo.length + trained,
    total: count,
    trained,
    secondsPerModel: trained ? (performance.now() - t0) / 1000 / trained : 0,
  });
  onProgress?.(progress(0));
  for (const [t, m] of todo.entries()) {
    const seed = subsetSeed(store.spec.seed, split, m);
    const model = buildModel(rt, s.config, seed);
    await trainModel(rt, model, s.train, { ...r, seed }, { indices: maskIndices(store.spec, split, m) });
    const norm = { mean: r.mean, std: r.std };
    const margins = (await evaluate(rt, model, s.train, norm)).margins;
    const targetMargins = s.targets ? (await evaluate(rt, model, s.targets, norm)).margins : undefined;
    releaseModel(model);
    await store.append(split, m, margins, targetMargins);
    onProgress?.(progress(t + 1));
  }
  return progress(todo.length);
}
