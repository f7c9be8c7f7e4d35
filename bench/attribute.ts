// TRAK featurisation throughput (training examples per second, margin gradients + projection to k) for
// the small CNN on CIFAR-sized input: dense projection with R regenerated on the fly, factored projection,
// and the baseline that materialises per-example gradients and multiplies by a stored R. Then LDS of dense
// against factored at equal M on a small synthetic setting (MLP, 100 examples, 32 subset models).
import { uploadDataset } from "../kernels/batch.ts";
import { autotuneMatmul } from "../kernels/matmul.ts";
import { Featurizer, type Projection } from "../src/attribution/featurize.ts";
import { ensembleFeatures, ldsBySize, subsetMargins, subsetMasks, trainEnsemble } from "../src/attribution/lds.ts";
import { syntheticDataset } from "../src/attribution/synthetic.ts";
import { getRuntime } from "../src/gpu/runtime.ts";
import { buildModel, parameterCount } from "../src/nn/models.ts";
import { BENCH_MODELS, type BenchReport, timeMs, torchPeer } from "./harness.ts";

export async function run(
  args: { sizes?: number[]; log?: (s: string) => void; lds?: boolean; model?: string },
): Promise<BenchReport> {
  const rt = await getRuntime();
  await autotuneMatmul(rt, { log: args.log });
  const k = args.sizes?.[0] ?? 512;
  const batch = 64;
  const n = 128;
  const name = (args.model ?? "small-cnn") as keyof typeof BENCH_MODELS;
  const model = buildModel(rt, BENCH_MODELS[name], 0);
  const data = syntheticDataset({ n, classes: 10, shape: [3, 32, 32], seed: 1 });
  const ds = uploadDataset(rt, data);
  const rows: Record<string, number | string>[] = [];
  const notes = [
    `featurisation: ${n} examples in tiles of ${batch}; LDS: 32 subset models (alpha 0.5), 40 held-out targets`,
  ];
  for (const projection of ["dense", "factored", "baseline"] as Projection[]) {
    let f: Featurizer;
    try {
      f = new Featurizer(rt, model, { k, projection, seed: 0, modelIndex: 0, batchSize: batch });
      await rt.sync();
    } catch (e) {
      rows.push({ model: name, projection, k, error: (e as Error).message.slice(0, 80) });
      continue;
    }
    const ms = await timeMs(async (reps) => {
      for (let r = 0; r < reps; r++) (await f.run(ds)).phi.release();
    }, { samples: 3, minMs: 1000 });
    f.release();
    const perSec = n / (ms / 1000);
    args.log?.(`${name} ${projection} k=${k}: ${perSec.toFixed(1)} examples/s`);
    rows.push({
      model: name,
      projection,
      k,
      params: parameterCount(model),
      examples_per_s: perSec,
      ms_per_64: (ms * batch) / n,
    });
  }
  // The peer featurises with a stored dense projection, as trak's CPU projector does; ours is the default one.
  const ours = rows.find((r) => r.projection === "factored")?.examples_per_s;
  const torch = torchPeer("featurize", BENCH_MODELS[name], { batch, k, log: args.log });
  if (typeof torch === "string") notes.push(torch);
  else if (typeof ours === "number") {
    args.log?.(`pytorch ${torch.device} (${torch.threads} threads): ${torch.ex_per_s!.toFixed(1)} examples/s`);
    rows.push({
      model: name,
      k,
      ours_ex_per_s: ours,
      peer: `pytorch-${torch.device}`,
      peer_ex_per_s: torch.ex_per_s!,
      ratio: ours / torch.ex_per_s!,
    });
  }
  if (args.lds ?? true) {
    const common = {
      classes: 3,
      shape: [3, 8, 8] as [number, number, number],
      prototypeSeed: 7,
      signal: 25,
      noise: 60,
    };
    const train = syntheticDataset({ ...common, n: 100, seed: 1 });
    const targets = syntheticDataset({ ...common, n: 40, seed: 2, labelNoise: 0 });
    const norm = { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
    const st = {
      config: { kind: "mlp" as const, input: [3, 8, 8] as [number, number, number], classes: 3, hidden: [32] },
      train: uploadDataset(rt, train),
      targets: uploadDataset(rt, targets),
      recipe: { epochs: 20, batchSize: 20, lr: 0.05, cropPad: 0, flip: false, labelSmoothing: 0, ...norm },
      ...norm,
    };
    const M = 8;
    const models = await trainEnsemble(rt, st, M, 0, args.log);
    const masks = subsetMasks(100, 32, 0.5, 99);
    const actual = await subsetMargins(rt, st, masks, 5000);
    for (const projection of ["dense", "factored"] as Projection[]) {
      for (const normalize of [false, true]) {
        const feats = await ensembleFeatures(rt, models, st, { k: 256, projection, seed: 3 });
        for (const r of await ldsBySize(rt, feats, masks, actual, [1, 2, 4, 8], { normalize })) {
          rows.push({
            model: "mlp synthetic n=100",
            projection: `${projection}${normalize ? " +normK" : ""}`,
            k: 256,
            M: r.M,
            lds: r.lds,
          });
        }
        feats.train.forEach((f) => f.phi.release());
        feats.targets.forEach((t) => t.release());
      }
    }
  }
  return { adapter: rt.adapterName, rows, notes };
}
