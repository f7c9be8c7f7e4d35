// npm run attribute: TRAK attribution from trained checkpoints, written as factors (and a dense block); or,
// with `lds`, an ensemble and subset models trained at CPU scale and the LDS as a function of M.
import { z } from "zod";
import { releaseDataset, uploadDataset } from "../../kernels/batch.ts";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import { type Features, featurize, type Projection } from "../attribution/featurize.ts";
import { exportDenseBlock, saveFactors } from "../attribution/io.ts";
import { ensembleFeatures, ldsBySize, subsetMargins, subsetMasks, trainEnsemble } from "../attribution/lds.ts";
import { syntheticDataset } from "../attribution/synthetic.ts";
import { buildAttribution } from "../attribution/trak.ts";
import { loadCifar10 } from "../data/cifar.ts";
import { type Dataset, seededSubset } from "../data/dataset.ts";
import { makeDir } from "../data/io.ts";
import { DetectConfig } from "../detect/config.ts";
import { getRuntime } from "../gpu/runtime.ts";
import { loadModel } from "../nn/checkpoint.ts";
import type { ModelConfig } from "../nn/models.ts";
import { type CommandSpec, type Parsed, UsageError } from "./command.ts";
import { note } from "./progress.ts";

export const AttributeFlags = z.object({
  checkpoints: z.array(z.string()).optional().describe(
    "the ensemble's checkpoints, comma-separated (required without lds)",
  ),
  data: DetectConfig.shape.data.describe(
    'the CIFAR-10 tarball or directory (lds: also "synthetic", 3-class 8x8 images)',
  ),
  train: z.number().int().min(2).optional().describe(
    "training examples (default: the checkpoint's own metadata, else 50000; lds: 100)",
  ),
  seed: z.number().int().optional().describe("the training subset's seed (default: the checkpoint's metadata, else 0)"),
  k: z.number().int().min(4).optional().describe("projection dimension per model (default 512; lds: 256)"),
  projection: z.enum(["dense", "factored", "both"]).default("dense").describe("TRAK projection (both: lds only)"),
  projSeed: z.number().int().default(0).describe("seed of the projection matrices"),
  lambdaScale: z.number().min(0).default(0.01).describe("ridge of the TRAK kernel, relative to its mean diagonal"),
  normalize: z.boolean().default(false).describe("divide each model's kernel by its mean absolute entry"),
  batchSize: z.number().int().positive().default(64).describe("examples per featurisation tile"),
  denseBlock: z.array(z.number().int().min(0)).length(4).optional().describe(
    "also write A[r0:r1, c0:c1] as r0,r1,c0,c1 to block.safetensors",
  ),
  out: z.string().default("attribution").describe("directory for factors.safetensors (and block.safetensors)"),
  targets: z.number().int().positive().default(40).describe("lds: test images whose margins are predicted"),
  models: z.number().int().positive().default(8).describe("lds: the largest ensemble"),
  subsets: z.number().int().min(3).default(32).describe("lds: subset models trained for the actual margins"),
  epochs: z.number().positive().default(20).describe("lds: epochs per model"),
});

export const command: CommandSpec<typeof AttributeFlags> = {
  name: "attribute",
  summary: "TRAK factors from trained checkpoints, or (lds) the LDS of TRAK as the ensemble grows",
  positionals: [{
    name: "lds",
    description: "measure the LDS instead of writing factors",
    choices: ["lds"],
    optional: true,
  }],
  flags: AttributeFlags,
  examples: [
    "npm run attribute -- --checkpoints a.safetensors,b.safetensors --k 512 --out attribution",
    "npm run attribute -- --checkpoints a.safetensors --dense-block 0,100,0,100",
    "npm run attribute -- lds --data synthetic --models 8 --projection both",
  ],
};

export async function main({ flags, positionals }: Parsed<typeof AttributeFlags>): Promise<void> {
  const lds = positionals[0] === "lds";
  if (!lds && !flags.checkpoints?.length) throw new UsageError("--checkpoints a.safetensors,b.safetensors is required");
  if (!lds && flags.projection === "both") throw new UsageError("--projection both is for lds only");
  const log = note;
  const rt = await getRuntime();
  log(`adapter: ${rt.adapterName}`);
  await autotuneMatmul(rt);
  const ko = { lambdaScale: flags.lambdaScale, normalize: flags.normalize };
  if (!lds) {
    const paths = flags.checkpoints!.map(String);
    const projection = flags.projection as Projection;
    const k = flags.k ?? 512;
    const projSeed = flags.projSeed;
    let train: Dataset | undefined;
    const feats: Features[] = [];
    const t0 = performance.now();
    for (const [m, path] of paths.entries()) {
      const { model, metadata } = await loadModel(rt, path);
      if (!train) {
        const n = flags.train ?? Number(metadata.train ?? 50000);
        const seed = flags.seed ?? Number(metadata.seed ?? 0);
        const full = await loadCifar10(flags.data, { split: "train" });
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
          batchSize: flags.batchSize,
          onBatch: (d, n) =>
            d === n &&
            log(`model ${m + 1}/${paths.length}: featurised ${n} in ${((performance.now() - t0) / 1000).toFixed(1)} s`),
        }),
      );
      releaseDataset(ds);
    }
    const { attribution } = await buildAttribution(rt, feats, ko);
    await makeDir(flags.out);
    await saveFactors(`${flags.out}/factors.safetensors`, attribution, feats, {
      seed: projSeed,
      k,
      method: `trak-${projection}`,
      models: paths,
      train: train!.n,
      data_seed: flags.seed ?? "checkpoint",
    });
    if (flags.denseBlock) {
      const [r0, r1, c0, c1] = flags.denseBlock;
      await exportDenseBlock(`${flags.out}/block.safetensors`, attribution, { r0, r1, c0, c1 });
    }
    console.log(
      JSON.stringify({
        n: attribution.n,
        models: paths.length,
        k,
        projection,
        lambda: attribution.meta.lambdas,
        seconds: (performance.now() - t0) / 1000,
        out: flags.out,
      }),
    );
    return;
  }
  const n = flags.train ?? 100;
  const T = flags.targets;
  const seed = flags.seed ?? 0;
  let train: Dataset, targets: Dataset, config: ModelConfig, norm: { mean: number[]; std: number[] };
  if (flags.data === "synthetic") {
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
    train = seededSubset(await loadCifar10(flags.data, { split: "train" }), n, seed);
    targets = seededSubset(await loadCifar10(flags.data, { split: "test" }), T, seed);
    config = { kind: "small-cnn", input: [3, 32, 32], classes: 10, widths: [16, 32, 64] };
    norm = { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] };
  }
  const st = {
    config,
    train: uploadDataset(rt, train),
    targets: uploadDataset(rt, targets),
    recipe: {
      epochs: flags.epochs,
      batchSize: 20,
      lr: 0.05,
      cropPad: 0,
      flip: false,
      labelSmoothing: 0,
      ...norm,
    },
    ...norm,
  };
  const M = flags.models;
  const S = flags.subsets;
  const t0 = performance.now();
  const models = await trainEnsemble(rt, st, M, seed, log);
  const masks = subsetMasks(n, S, 0.5, seed + 99);
  const actual = await subsetMargins(rt, st, masks, seed + 5000, log);
  const sizes = [...new Set([1, 2, 4, 8, 16, 32, M].filter((x) => x <= M))];
  const k = flags.k ?? 256;
  const projections: Projection[] = flags.projection === "both" ? ["dense", "factored"] : [flags.projection];
  const rows = [];
  for (const projection of projections) {
    const feats = await ensembleFeatures(rt, models, st, { k, projection, seed: flags.projSeed });
    for (const r of await ldsBySize(rt, feats, masks, actual, sizes, ko)) rows.push({ projection, ...r });
    feats.train.forEach((f) => f.phi.release());
    feats.targets.forEach((t) => t.release());
  }
  for (const r of rows) log(`${r.projection} M=${r.M}: LDS ${r.lds.toFixed(3)}`);
  console.log(JSON.stringify({ n, targets: T, subsets: S, k, rows, seconds: (performance.now() - t0) / 1000 }));
}
