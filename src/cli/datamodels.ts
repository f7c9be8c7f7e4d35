// Datamodels from the command line (Deno). A job lives in one directory (default ./datamodels):
//   datamodels train --models N [--heldout H] [--out DIR] [--train 1000 --seed 0 --attack badnets --rate 0.05
//                    --model small-cnn|mlp --widths 16,32,64 --hidden 256 --epochs 4 --lr 0.05 --batch 64
//                    --alpha 0.5 --targets T --data PATH]
//       trains subset models 0..N-1 (each on a seeded alpha-subset of the training set) and records their
//       margins on every training example (and on T seeded test images); rerun to resume or extend. On an
//       existing DIR the stored settings are used, and a flag that contradicts them is an error.
//   datamodels fit [--out DIR] [--penalty l2|l1] [--models N] [--lambdas 10,1,0.1] [--iterations 100] [--held-out M]
//       regresses margins on masks (src/datamodels/regression.ts) and writes DIR/weights/ (n x n, row = target).
//   datamodels lds [--out DIR] [--models S]
//       trains S held-out subset models if missing and prints the LDS of DIR/weights on them.
import { parseArgs } from "node:util";
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
import { progressBar } from "./progress.ts";
import { args, exit } from "../platform.ts";

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

const USAGE = "usage: npm run datamodels -- train|fit|lds [--out DIR] ... (see the header of src/cli/datamodels.ts)";

function fail(msg: string): never {
  console.error(`datamodels: ${msg}`);
  exit(2);
}

const [cmd, ...rest] = args();
if (!["train", "fit", "lds"].includes(cmd)) fail(`unknown command "${cmd ?? ""}"\n${USAGE}`);
let parsed;
try {
  parsed = parseArgs({
    args: rest,
    options: {
      out: { type: "string", default: "datamodels" },
      models: { type: "string" },
      heldout: { type: "string" },
      train: { type: "string" },
      seed: { type: "string" },
      attack: { type: "string" },
      rate: { type: "string" },
      model: { type: "string" },
      widths: { type: "string" },
      hidden: { type: "string" },
      epochs: { type: "string" },
      lr: { type: "string" },
      batch: { type: "string" },
      alpha: { type: "string" },
      targets: { type: "string" },
      data: { type: "string" },
      penalty: { type: "string" },
      lambdas: { type: "string" },
      iterations: { type: "string" },
      "held-out": { type: "string" },
    },
  });
} catch (e) {
  fail(`${(e as Error).message}\n${USAGE}`);
}
const a = parsed.values;
const dir = a.out!;
const int = (name: string, v: string | undefined, min = 0): number | undefined => {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isInteger(x) || x < min) fail(`--${name} must be an integer >= ${min}, got "${v}"`);
  return x;
};
const list = (name: string, v: string | undefined) =>
  v?.split(",").map((
    x,
  ) => (Number.isFinite(Number(x)) && x !== ""
    ? Number(x)
    : fail(`--${name} must be numbers separated by commas, got "${v}"`))
  );

/** The job: stored settings of DIR (if any), overridden by the flags given. */
async function jobFromFlags(): Promise<DatamodelJob> {
  const jobPath = joinPath(dir, "job.json");
  const stored = (await pathKind(jobPath)) === "file"
    ? (JSON.parse(await readText(jobPath)).job as DatamodelJob)
    : undefined;
  const base = stored ?? DatamodelJob.parse({});
  const kind = (a.model ?? base.model.kind) as "mlp" | "small-cnn" | "resnet9";
  const model = kind === base.model.kind
    ? { ...base.model }
    : { kind, input: base.model.input, classes: base.model.classes } as DatamodelJob["model"];
  if (a.widths) (model as { widths?: number[] }).widths = list("widths", a.widths);
  if (a.hidden) (model as { hidden?: number[] }).hidden = list("hidden", a.hidden);
  const input = {
    ...base,
    ...(a.data && { data: a.data }),
    ...(a.train && { train: int("train", a.train, 1) }),
    ...(a.seed && { seed: int("seed", a.seed) }),
    ...(a.attack && { attack: a.attack }),
    ...(a.rate && { attackConfig: { ...base.attackConfig, rate: Number(a.rate) } }),
    ...(a.alpha && { alpha: Number(a.alpha) }),
    ...(a.targets && { targets: int("targets", a.targets) }),
    model,
    recipe: {
      ...base.recipe,
      ...(a.epochs && { epochs: Number(a.epochs) }),
      ...(a.lr && { lr: Number(a.lr) }),
      ...(a.batch && { batchSize: int("batch", a.batch, 2) }),
    },
  };
  const r = DatamodelJob.safeParse(input);
  if (!r.success) fail(`bad settings:\n${r.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`).join("\n")}`);
  return r.data;
}

async function openStore(job: DatamodelJob, n: number): Promise<DatamodelStore> {
  try {
    return await DatamodelStore.open(dir, { n, alpha: job.alpha, seed: job.seed, targets: job.targets, job });
  } catch (e) {
    fail((e as Error).message);
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
  const targets = job.targets ? await loadTestSet({ data: job.data, test: job.targets, seed: job.seed }) : undefined;
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

const rt = await getRuntime();
console.error(`adapter: ${rt.adapterName}`);

if (cmd === "train") {
  const models = int("models", a.models, 1) ?? fail("train needs --models N");
  const job = await jobFromFlags();
  const trainSet = await buildTrainingSet(await loadCifar10(job.data, { split: "train" }), job);
  const store = await openStore(job, trainSet.train.n);
  console.error(
    `${dir}: ${trainSet.train.n} training examples (${
      trainSet.poisoned?.length ?? 0
    } poisoned), ${job.model.kind}, alpha ${job.alpha}`,
  );
  await trainSplit(rt, store, job, "train", models, trainSet);
  const heldout = int("heldout", a.heldout, 0) ?? 0;
  if (heldout) await trainSplit(rt, store, job, "heldout", heldout, trainSet);
  if (trainSet.poisoned) {
    await writeBytesAtomic(joinPath(dir, "poisoned.json"), new TextEncoder().encode(JSON.stringify(trainSet.poisoned)));
  }
} else if (cmd === "fit") {
  const store = await DatamodelStore.openExisting(dir).catch((e) => fail((e as Error).message));
  const models = int("models", a.models, 4) ?? store.models;
  if (models > store.models) fail(`--models ${models}: only ${store.models} models are stored in ${dir}`);
  const penalty = (a.penalty ?? "l2") as "l2" | "l1";
  if (!["l2", "l1"].includes(penalty)) fail(`--penalty must be l2 or l1, got "${a.penalty}"`);
  await autotuneMatmul(rt);
  const t0 = performance.now();
  const fit = await fitDatamodels(rt, { n: store.n, models, rows: (s, c) => store.rows(s, c) }, {
    penalty,
    lambdas: list("lambdas", a.lambdas),
    iterations: int("iterations", a.iterations, 1),
    heldOut: int("held-out", a["held-out"], 1),
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
  const count = int("models", a.models, 3) ?? 20;
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
