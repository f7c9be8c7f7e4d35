// Datamodels subset training throughput (models per hour) of the detect pipeline's small CNN on this
// adapter, against peers in the same process: the TRAK ensemble's work per model (one model trained on
// the whole set, then featurised at k = 256, factored). Subset models run exactly as the pipeline runs them
// (src/datamodels/train.ts: train on the alpha-subset, margins on all n, append to the store).
// Random 32x32x3 images (throughput does not depend on the pixels). --sizes sets n (default 1000);
// DM_BENCH_MODELS sets the subset models timed (default 8).
import { uploadDataset } from "../kernels/batch.ts";
import { autotuneMatmul } from "../kernels/matmul.ts";
import { featurize } from "../src/attribution/featurize.ts";
import { makeDir, removePath } from "../src/data/io.ts";
import { DatamodelStore } from "../src/datamodels/store.ts";
import { trainSubsetModels } from "../src/datamodels/train.ts";
import { DetectConfig } from "../src/detect/config.ts";
import { getRuntime } from "../src/gpu/runtime.ts";
import { buildModel, releaseModel } from "../src/nn/models.ts";
import { trainModel } from "../src/nn/train.ts";
import type { BenchReport } from "./harness.ts";
import { env } from "../src/platform.ts";

export async function run(args: { sizes?: number[]; log?: (s: string) => void }): Promise<BenchReport> {
  const rt = await getRuntime();
  await autotuneMatmul(rt, { log: args.log });
  const count = Number(env("DM_BENCH_MODELS") ?? 8);
  const { model: config, recipe } = DetectConfig.parse({});
  const alpha = 0.5;
  const rows: Record<string, number | string>[] = [];
  for (const n of args.sizes ?? [1000]) {
    const images = Uint8Array.from({ length: n * 3 * 32 * 32 }, () => Math.floor(Math.random() * 256));
    const labels = Uint32Array.from({ length: n }, () => Math.floor(Math.random() * 10));
    const ds = uploadDataset(rt, { images, labels, n, c: 3, h: 32, w: 32 });
    const imagesPerModel = (m: number) => recipe.epochs * m + n; // training passes + margins on all n
    const row = (what: string, seconds: number, models: number, images: number) => {
      rows.push({
        n,
        what,
        models,
        seconds,
        s_per_model: seconds / models,
        models_per_hour: (3600 * models) / seconds,
        img_per_s: images / seconds,
      });
      args.log?.(JSON.stringify(rows[rows.length - 1]));
    };

    // warm-up: compile every pipeline once (one subset model, not timed)
    const dir = `/tmp/bench-datamodels-${Date.now().toString(36)}`;
    await makeDir(dir);
    const store = await DatamodelStore.open(dir, { n, alpha, seed: 1, targets: 0, job: "bench" });
    const setting = { config, recipe, train: ds };
    await trainSubsetModels(rt, store, "heldout", 1, setting);
    let t0 = performance.now();
    await trainSubsetModels(
      rt,
      store,
      "train",
      count,
      setting,
      (p) => p.trained && args.log?.(`subset model ${p.done}/${p.total}: ${p.secondsPerModel.toFixed(2)} s each`),
    );
    row(
      `datamodel subset models (alpha ${alpha})`,
      (performance.now() - t0) / 1000,
      count,
      count * imagesPerModel(Math.round(alpha * n)),
    );
    await removePath(dir);

    t0 = performance.now();
    const full = buildModel(rt, config, 7);
    await trainModel(rt, full, ds, { ...recipe, seed: 7 }); // ends with a readback
    const trainS = (performance.now() - t0) / 1000;
    row("peer: full-set model (TRAK ensemble member)", trainS, 1, recipe.epochs * n);
    t0 = performance.now();
    const f = await featurize(rt, full, ds, { k: 256, projection: "factored", seed: 0, modelIndex: 0 });
    f.phi.release();
    const featS = (performance.now() - t0) / 1000;
    row("peer: featurise it (k 256, factored)", featS, 1, n);
    row("peer: TRAK per ensemble member (both)", trainS + featS, 1, recipe.epochs * n + n);
    releaseModel(full);
  }
  return {
    adapter: rt.adapterName,
    rows,
    notes: [
      `small CNN ${JSON.stringify(config)}; recipe epochs ${recipe.epochs}, batch ${recipe.batchSize}; ` +
      "img_per_s counts training images plus the margin pass over all n.",
      "TRAK needs a few ensemble members; datamodels needs thousands of subset models (each costs about alpha + " +
      "1/epochs of a full-set model).",
    ],
  };
}
