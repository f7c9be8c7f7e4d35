// TRAK attribution from trained checkpoints (Deno):
//   attribute --checkpoints a.safetensors,b.safetensors [--data PATH] [--train N --seed S] [--k 512]
//             [--projection dense|factored] [--lambda-scale 0.01] [--normalize] [--batch 64]
//             [--dense-block r0,r1,c0,c1] --out DIR
// writes DIR/factors.safetensors (U, V, Qbar, Q, margins, K; format in src/attribution/README.md) and,
// with --dense-block, DIR/block.safetensors. The training set is the same seeded CIFAR-10 subset that
// `npm run train -- --train N --seed S` used (the checkpoint's own metadata supplies them by default).
//   attribute lds [--data PATH|synthetic] [--train N] [--targets T] [--models M] [--subsets S]
//             [--epochs E] [--k K] [--projection dense|factored|both]
// trains an ensemble and S subset models at CPU scale and prints LDS as a function of M.
import { parseArgs } from "node:util";
import { uploadDataset } from "../../kernels/batch.ts";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import { loadCifar10 } from "../data/cifar.ts";
import { type Dataset, seededSubset } from "../data/dataset.ts";
import { getRuntime } from "../gpu/runtime.ts";
import { loadModel } from "../nn/checkpoint.ts";
import type { ModelConfig } from "../nn/models.ts";
import { type Features, featurize, type Projection } from "../attribution/featurize.ts";
import { exportDenseBlock, saveFactors } from "../attribution/io.ts";
import { ensembleFeatures, ldsBySize, subsetMargins, subsetMasks, trainEnsemble } from "../attribution/lds.ts";
import { syntheticDataset } from "../attribution/synthetic.ts";
import { buildAttribution } from "../attribution/trak.ts";
import { args } from "../platform.ts";
import { makeDir } from "../data/io.ts";

const DEFAULT_DATA = new URL("../../../shared/datasets/cifar-10-binary.tar.gz", import.meta.url).pathname;
const argv = args();
const sub = argv[0] === "lds" ? "lds" : "attribute";
const { values: a } = parseArgs({
  args: sub === "lds" ? argv.slice(1) : argv,
  options: {
    checkpoints: { type: "string" },
    data: { type: "string", default: DEFAULT_DATA },
    train: { type: "string" },
    seed: { type: "string" },
    k: { type: "string" },
    projection: { type: "string", default: "dense" },
    "lambda-scale": { type: "string", default: "0.01" },
    normalize: { type: "boolean", default: false },
    batch: { type: "string", default: "64" },
    "dense-block": { type: "string" },
    out: { type: "string", default: "attribution" },
    // lds
    targets: { type: "string", default: "40" },
    models: { type: "string", default: "8" },
    subsets: { type: "string", default: "32" },
    epochs: { type: "string", default: "20" },
    "proj-seed": { type: "string", default: "0" },
  },
});
const num = (name: string, v: string | undefined, min = 0) => {
  const x = Number(v);
  if (!Number.isFinite(x) || x < min) throw new Error(`--${name} must be a number >= ${min}, got "${v}"`);
  return x;
};
const log = (s: string) => console.error(s);
const rt = await getRuntime();
log(`adapter: ${rt.adapterName}`);
await autotuneMatmul(rt);
const ko = { lambdaScale: num("lambda-scale", a["lambda-scale"]), normalize: a.normalize };

if (sub === "attribute") {
  if (!a.checkpoints) throw new Error("--checkpoints a.safetensors,b.safetensors is required");
  const paths = a.checkpoints.split(",").filter(Boolean);
  const projection = a.projection as Projection;
  if (!["dense", "factored"].includes(projection)) throw new Error("--projection must be dense or factored");
  const k = num("k", a.k ?? "512", 4);
  const projSeed = num("proj-seed", a["proj-seed"]);
  let train: Dataset | undefined;
  const feats: Features[] = [];
  const t0 = performance.now();
  for (const [m, path] of paths.entries()) {
    const { model, metadata } = await loadModel(rt, path);
    if (!train) {
      const n = num("train", a.train ?? metadata.train ?? "50000", 1);
      const seed = num("seed", a.seed ?? metadata.seed ?? "0");
      const full = await loadCifar10(a.data!, { split: "train" });
      train = n >= full.n ? full : seededSubset(full, n, seed);
      log(`${train.n} training examples`);
    }
    const ds = uploadDataset(rt, train);
    feats.push(
      await featurize(rt, model, ds, {
        k,
        projection,
        seed: projSeed,
        modelIndex: m,
        batchSize: num("batch", a.batch, 1),
        onBatch: (d, n) =>
          d === n &&
          log(`model ${m + 1}/${paths.length}: featurised ${n} in ${((performance.now() - t0) / 1000).toFixed(1)} s`),
      }),
    );
    ds.pixels.release();
    ds.labels.release();
  }
  const { attribution } = await buildAttribution(rt, feats, ko);
  await makeDir(a.out!);
  await saveFactors(`${a.out}/factors.safetensors`, attribution, feats, {
    seed: projSeed,
    k,
    method: `trak-${projection}`,
    models: paths,
    train: train!.n,
    data_seed: a.seed ?? "checkpoint",
  });
  if (a["dense-block"]) {
    const [r0, r1, c0, c1] = a["dense-block"].split(",").map(Number);
    await exportDenseBlock(`${a.out}/block.safetensors`, attribution, { r0, r1, c0, c1 });
  }
  console.log(
    JSON.stringify({
      n: attribution.n,
      models: paths.length,
      k,
      projection,
      lambda: attribution.meta.lambdas,
      seconds: (performance.now() - t0) / 1000,
      out: a.out,
    }),
  );
} else {
  const n = num("train", a.train ?? "100", 2);
  const T = num("targets", a.targets, 1);
  const seed = num("seed", a.seed ?? "0");
  let train: Dataset, targets: Dataset, config: ModelConfig, norm: { mean: number[]; std: number[] };
  if (a.data === "synthetic") {
    const common = {
      classes: 3,
      shape: [3, 8, 8] as [number, number, number],
      prototypeSeed: seed + 7,
      signal: 25,
      noise: 60,
    };
    train = syntheticDataset({ ...common, n, seed: seed + 1 });
    targets = syntheticDataset({ ...common, n: T, seed: seed + 2, labelNoise: 0 });
    config = { kind: "mlp", input: [3, 8, 8], classes: 3, hidden: [32] };
    norm = { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
  } else {
    train = seededSubset(await loadCifar10(a.data!, { split: "train" }), n, seed);
    targets = seededSubset(await loadCifar10(a.data!, { split: "test" }), T, seed);
    config = { kind: "small-cnn", input: [3, 32, 32], classes: 10, widths: [16, 32, 64] };
    norm = { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] };
  }
  const st = {
    config,
    train: uploadDataset(rt, train),
    targets: uploadDataset(rt, targets),
    recipe: {
      epochs: num("epochs", a.epochs),
      batchSize: 20,
      lr: 0.05,
      cropPad: 0,
      flip: false,
      labelSmoothing: 0,
      ...norm,
    },
    ...norm,
  };
  const M = num("models", a.models, 1);
  const S = num("subsets", a.subsets, 3);
  const t0 = performance.now();
  const models = await trainEnsemble(rt, st, M, seed, log);
  const masks = subsetMasks(n, S, 0.5, seed + 99);
  const actual = await subsetMargins(rt, st, masks, seed + 5000, log);
  const sizes = [...new Set([1, 2, 4, 8, 16, 32, M].filter((x) => x <= M))];
  const k = num("k", a.k ?? "256", 4);
  const projections: Projection[] = a.projection === "both" ? ["dense", "factored"] : [a.projection as Projection];
  const rows = [];
  for (const projection of projections) {
    const feats = await ensembleFeatures(rt, models, st, { k, projection, seed: num("proj-seed", a["proj-seed"]) });
    for (const r of await ldsBySize(rt, feats, masks, actual, sizes, ko)) rows.push({ projection, ...r });
    feats.train.forEach((f) => f.phi.release());
    feats.targets.forEach((t) => t.release());
  }
  for (const r of rows) log(`${r.projection} M=${r.M}: LDS ${r.lds.toFixed(3)}`);
  console.log(JSON.stringify({ n, targets: T, subsets: S, k, rows, seconds: (performance.now() - t0) / 1000 }));
}
