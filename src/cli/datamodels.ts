// npm run datamodels -- train|fit|lds: datamodels from the command line. A job lives in one directory:
//   train  trains subset models 0..N-1 (each on a seeded alpha-subset of the training set) and records their
//          margins on every training example; rerun to resume or extend. On an existing directory the stored
//          settings are used, and a flag that contradicts them is an error;
//   fit    regresses margins on masks (src/datamodels/regression.ts) and writes DIR/weights/ (row = target);
//   lds    trains held-out subset models if missing and prints the LDS of DIR/weights on them.
import { z } from "zod";
import { uploadDataset } from "../../kernels/batch.ts";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import { loadCifar10 } from "../data/cifar.ts";
import { joinPath, pathKind, readText, writeBytesAtomic } from "../data/io.ts";
import { heldOutLds } from "../attribution/lds.ts";
import { fitDatamodels } from "../datamodels/regression.ts";
import { loadDatamodelTiles, saveDatamodelTiles } from "../datamodels/tiles.ts";
import { DatamodelStore, storedHeldOut } from "../datamodels/store.ts";
import { trainSubsetModels } from "../datamodels/train.ts";
import { DetectConfig } from "../detect/config.ts";
import { loadTestSet } from "../detect/outcome.ts";
import { buildTrainingSet } from "../detect/training-set.ts";
import { getRuntime, type Runtime } from "../gpu/runtime.ts";
import { checkSettings, type CommandSpec, intoSettings, type Parsed, UsageError } from "./command.ts";
import { attackFlags, dataFlags, modelFlags, outputFlags, recipeFlags, unlessGiven } from "./flags.ts";
import { note, progressBar, quietProgress } from "./progress.ts";

/** What a job trains on and how: the detect pipeline's data, attack, model and recipe, plus the subset fraction. */
export const DatamodelJob = DetectConfig.pick({
  data: true,
  seed: true,
  attack: true,
  attackConfig: true,
  model: true,
  recipe: true,
}).extend({
  train: z.number().int().positive().default(1000),
  alpha: z.number().gt(0).lte(1).default(0.5),
  /** Seeded test images whose margins every model also records (0: none). */
  targets: z.number().int().min(0).default(0),
});
export type DatamodelJob = z.output<typeof DatamodelJob>;

const job = DatamodelJob.parse({});
const { train: _t, ...data } = dataFlags();

export const DatamodelsFlags = z.object({
  out: z.string().default("datamodels").describe("the job's directory (its settings, margins and fits live there)"),
  models: z.number().int().min(1).optional().describe(
    "train: subset models to have (required); fit: the first N stored (default all); lds: held-out models (default 20)",
  ),
  heldout: z.number().int().min(0).default(0).describe("train: also train this many held-out models, for the LDS"),
  ...unlessGiven({
    ...data,
    train: DatamodelJob.shape.train.describe("training examples drawn (seeded) from the training split"),
    ...attackFlags(),
    alpha: DatamodelJob.shape.alpha.describe("the fraction of the training set in each subset"),
    targets: DatamodelJob.shape.targets.describe("seeded test images whose margins every model also records (0: none)"),
  }),
  ...modelFlags(job.model),
  ...recipeFlags(job.recipe),
  penalty: z.enum(["l2", "l1"]).default("l2").describe("fit: ridge (l2) or lasso (l1)"),
  lambdas: z.array(z.number().positive()).optional().describe(
    "fit: the regularisation path (default: 8 log-spaced values)",
  ),
  iterations: z.number().int().min(1).optional().describe("fit: most solver iterations per lambda (default 100)"),
  lambdaModels: z.number().int().min(1).optional().describe(
    "fit: stored models held out to choose each target's lambda",
  ),
  ...outputFlags,
});

export const command: CommandSpec<typeof DatamodelsFlags> = {
  name: "datamodels",
  summary: "train subset models (resumable), fit the datamodels regression, measure its LDS",
  positionals: [{ name: "step", description: "what to do", choices: ["train", "fit", "lds"] }],
  flags: DatamodelsFlags,
  examples: [
    "npm run datamodels -- train --models 300 --heldout 20 --train 1000 --epochs 4 --out DIR",
    "npm run datamodels -- fit --out DIR --penalty l2",
    "npm run datamodels -- lds --out DIR --models 20",
  ],
};

/** The job: DIR's stored settings (if any), under the flags given. */
async function jobFromFlags(dir: string, flags: z.output<typeof DatamodelsFlags>): Promise<DatamodelJob> {
  const jobPath = joinPath(dir, "job.json");
  const stored = (await pathKind(jobPath)) === "file"
    ? (JSON.parse(await readText(jobPath)).job as DatamodelJob)
    : undefined;
  const base = stored ?? DatamodelJob.parse({});
  // Another architecture starts from its own defaults, keeping the data's shape.
  const model = flags.model && flags.model !== base.model.kind
    ? { kind: flags.model, input: base.model.input, classes: base.model.classes }
    : base.model;
  return checkSettings(command, DatamodelJob, intoSettings(command, flags, { ...base, model }), flags);
}

async function openStore(dir: string, job: DatamodelJob, n: number): Promise<DatamodelStore> {
  try {
    return await DatamodelStore.open(dir, { n, alpha: job.alpha, seed: job.seed, targets: job.targets, job });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Uploads the job's training set (and target images) and trains `count` models of `split` that are missing. */
async function trainSplit(
  rt: Runtime,
  store: DatamodelStore,
  job: DatamodelJob,
  split: "train" | "heldout",
  count: number,
  trainSet?: Awaited<ReturnType<typeof buildTrainingSet>>,
) {
  if (store.stored(split).filter((m) => m < count).length === count) return;
  const { train } = trainSet ?? (await buildTrainingSet(await loadCifar10(job.data, { split: "train" }), job));
  const targets = job.targets
    ? await loadTestSet({ data: job.data, testSize: job.targets, seed: job.seed })
    : undefined;
  await autotuneMatmul(rt);
  const label = split === "train" ? "subset models" : "held-out models";
  const p = await trainSubsetModels(
    rt,
    store,
    split,
    count,
    {
      config: job.model,
      recipe: job.recipe,
      train: uploadDataset(rt, train),
      targets: targets && uploadDataset(rt, targets),
    },
    (p) =>
      progressBar(
        label.padEnd(16),
        p.done,
        p.total,
        p.trained ? `${p.secondsPerModel.toFixed(2)} s/model, ${(3600 / p.secondsPerModel).toFixed(0)} models/h` : "",
      ),
  );
  console.error(
    `${label}: ${p.done}/${p.total} stored (${p.trained} trained now${
      p.trained ? `, ${p.secondsPerModel.toFixed(2)} s each` : ""
    })`,
  );
}

export async function main({ flags, positionals }: Parsed<typeof DatamodelsFlags>): Promise<void> {
  const [cmd] = positionals;
  const dir = flags.out;
  if (flags.quiet || flags.json) quietProgress();
  const rt = await getRuntime();
  note(`adapter: ${rt.adapterName}`);

  if (cmd === "train") {
    if (flags.models === undefined) throw new UsageError("train needs --models N");
    const models = flags.models;
    const job = await jobFromFlags(dir, flags);
    const trainSet = await buildTrainingSet(await loadCifar10(job.data, { split: "train" }), job);
    const store = await openStore(dir, job, trainSet.train.n);
    note(
      `${dir}: ${trainSet.train.n} training examples (${
        trainSet.poisoned?.length ?? 0
      } poisoned), ${job.model.kind}, alpha ${job.alpha}`,
    );
    await trainSplit(rt, store, job, "train", models, trainSet);
    const heldout = flags.heldout;
    if (heldout) await trainSplit(rt, store, job, "heldout", heldout, trainSet);
    if (trainSet.poisoned) {
      await writeBytesAtomic(
        joinPath(dir, "poisoned.json"),
        new TextEncoder().encode(JSON.stringify(trainSet.poisoned)),
      );
    }
    const result = {
      out: dir,
      n: store.n,
      models: store.stored("train").length,
      heldout: store.stored("heldout").length,
    };
    console.log(
      flags.json ? JSON.stringify(result) : `${dir}: ${result.models} subset models, ${result.heldout} held out`,
    );
  } else if (cmd === "fit") {
    const store = await DatamodelStore.openExisting(dir).catch((e) => fail((e as Error).message));
    const models = flags.models ?? store.models;
    if (models > store.models) fail(`--models ${models}: only ${store.models} models are stored in ${dir}`);
    if (models < 4) fail(`--models ${models}: the fit needs at least 4`);
    const penalty = flags.penalty;
    await autotuneMatmul(rt);
    const t0 = performance.now();
    const fit = await fitDatamodels(rt, { n: store.n, models, rows: (s, c) => store.rows(s, c) }, {
      penalty,
      lambdas: flags.lambdas,
      iterations: flags.iterations,
      heldOut: flags.lambdaModels,
      seed: store.spec.seed,
      onProgress: (done, total, detail) => progressBar("fit".padEnd(16), done, total, detail ?? ""),
    });
    const seconds = (performance.now() - t0) / 1000;
    await saveDatamodelTiles(rt, fit, joinPath(dir, "weights"));
    fit.weights.release();
    const mean = (x: Float32Array) => x.reduce((s, v) => s + v, 0) / x.length;
    const summary = {
      n: store.n,
      models,
      penalty,
      seconds,
      mean_held_out_mse: mean(fit.heldOutMse),
      median_lambda: [...fit.lambda].sort((x, y) => x - y)[fit.lambda.length >> 1],
      adapter: rt.adapterName,
    };
    await writeBytesAtomic(joinPath(dir, "fit.json"), new TextEncoder().encode(JSON.stringify(summary, null, 1)));
    console.log(JSON.stringify(summary));
  } else {
    const store = await DatamodelStore.openExisting(dir).catch((e) => fail((e as Error).message));
    const count = flags.models ?? 20;
    if (count < 3) fail(`--models ${count}: the LDS needs at least 3 held-out models`);
    const weights = joinPath(dir, "weights");
    if ((await pathKind(joinPath(weights, "index.json"))) !== "file") {
      fail(`${weights}: no fitted weights; run "datamodels fit --out ${dir}" first`);
    }
    await trainSplit(rt, store, store.spec.job as DatamodelJob, "heldout", count);
    const tiles = await loadDatamodelTiles(weights);
    if (tiles.n !== store.n) fail(`${weights} is for ${tiles.n} examples, the store for ${store.n}`);
    const r = await heldOutLds(
      (r0, r1) => tiles.readBlock(r0, r1, 0, tiles.n),
      tiles.n,
      await storedHeldOut(store, count),
    );
    console.log(
      JSON.stringify({
        lds: r.lds,
        targets: r.targets,
        heldout_models: count,
        fitted_models: store.models,
        adapter: rt.adapterName,
      }),
    );
  }
}

function fail(msg: string): never {
  throw new UsageError(msg);
}
