// Deno only: trains ~40 tiny models (about 30 s on two llvmpipe cores) and writes files.
import { describe, expect, it } from "vitest";
import { uploadDataset } from "../../kernels/batch.ts";
import { ensembleFeatures, ldsBySize, subsetMargins, subsetMasks, trainEnsemble } from "../../src/attribution/lds.ts";
import { ranks, spearman } from "../../src/math.ts";
import { syntheticDataset } from "../../src/attribution/synthetic.ts";
import { buildAttribution } from "../../src/attribution/trak.ts";
import { exportDenseBlock, loadFactors, saveFactors } from "../../src/attribution/io.ts";
import { decodeSafetensors } from "../../src/checkpoint/safetensors.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randomF32 } from "../support/rng.ts";
import { tempDir } from "../support/host.ts";
import { readFile, rm } from "node:fs/promises";

describe("LDS", () => {
  it("spearman and ranks", () => {
    expect(Array.from(ranks([3, 1, 2, 2]))).toEqual([3, 0, 1.5, 1.5]);
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 40])).toBe(1);
    expect(spearman([1, 2, 3, 4], [4, 3, 2, 1])).toBe(-1);
    const masks = subsetMasks(11, 3, 0.5, 1);
    expect(masks.map((m) => m.reduce((s, v) => s + v, 0))).toEqual([6, 6, 6]);
  });

  // Synthetic 3-class 3x8x8 data (10% flipped labels), an MLP, 100 training examples, 40 held-out
  // targets, 32 subset models (alpha 0.5, their own seeds), an ensemble of up to 8 models, k = 256.
  // Measured here: LDS 0.03 (M = 1), 0.07 (M = 2), 0.22 (M = 8) for the dense projection.
  it("is clearly positive on a small real setting and rises with the number of models", async () => {
    const rt = await testRuntime();
    rt.poisonOutputs = false;
    const n = 100;
    const common = {
      classes: 3,
      shape: [3, 8, 8] as [number, number, number],
      prototypeSeed: 7,
      signal: 25,
      noise: 60,
    };
    const train = syntheticDataset({ ...common, n, seed: 1 });
    const targets = syntheticDataset({ ...common, n: 40, seed: 2, labelNoise: 0 });
    const norm = { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
    const st = {
      config: { kind: "mlp" as const, input: [3, 8, 8] as [number, number, number], classes: 3, hidden: [32] },
      train: uploadDataset(rt, train),
      targets: uploadDataset(rt, targets),
      recipe: { epochs: 20, batchSize: 20, lr: 0.05, cropPad: 0, flip: false, labelSmoothing: 0, ...norm },
      ...norm,
    };
    const models = await trainEnsemble(rt, st, 8, 0);
    const masks = subsetMasks(n, 32, 0.5, 99);
    const actual = await subsetMargins(rt, st, masks, 5000);
    const feats = await ensembleFeatures(rt, models, st, { k: 256, projection: "dense", seed: 3 });
    const rows = await ldsBySize(rt, feats, masks, actual, [1, 8]);
    console.log(`[lds] ${JSON.stringify(rows)}`);
    expect(rows[1].lds).toBeGreaterThan(0.1);
    expect(rows[1].lds).toBeGreaterThan(rows[0].lds + 0.05);
    feats.train.forEach((f) => f.phi.release());
    feats.targets.forEach((t) => t.release());
  });
});

describe("attribution files", () => {
  it("factors and a dense block round-trip through safetensors", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(12345);
    const [n, k, M] = [29, 8, 2];
    const feats = Array.from({ length: M }, () => {
      const margins = randomF32(rand, n, -2, 2);
      return {
        phi: rt.upload(randomF32(rand, n * k), [n, k]),
        margins,
        q: Float32Array.from(margins, (v) => 1 - 1 / (1 + Math.exp(-v))),
        n,
        k,
      };
    });
    const { attribution: a } = await buildAttribution(rt, feats, {});
    const dir = tempDir("test");
    await exportDenseBlock(`${dir}/block.safetensors`, a, { r0: 2, r1: 27, c0: 5, c1: 29 }, 7); // 4 bands
    const f = decodeSafetensors(new Uint8Array(await readFile(`${dir}/block.safetensors`)));
    expect(f.tensors.A.shape).toEqual([25, 24]);
    expect(f.metadata.r0).toBe("2");
    assertClose(f.tensors.A.data as Float32Array, await a.readBlock(2, 27, 5, 29), { rtol: 0 }, "block file");
    await saveFactors(`${dir}/factors.safetensors`, a, feats, { seed: 3, k, method: "trak-dense", models: ["a", "b"] });
    const fac = await loadFactors(`${dir}/factors.safetensors`);
    expect(fac.tensors.U.shape).toEqual([n, M * k]);
    expect(fac.tensors.K.shape).toEqual([M, k, k]);
    expect(fac.metadata.method).toBe("trak-dense");
    await rm(dir, { recursive: true, force: true });
    a.release();
    feats.forEach((x) => x.phi.release());
  });
});
