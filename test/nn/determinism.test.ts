import { describe, expect, it } from "vitest";
import { uploadDataset } from "../../kernels/batch.ts";
import { buildModel } from "../../src/nn/models.ts";
import { trainModel } from "../../src/nn/train.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, testSeed } from "../support/rng.ts";

describe("training", () => {
  it("is deterministic for a seed on one adapter, and the seed matters", async () => {
    const rt = await testRuntime();
    const seed = testSeed("training determinism");
    const rand = mulberry32(seed);
    const n = 48;
    const images = Uint8Array.from({ length: n * 3 * 12 * 12 }, () => randInt(rand, 0, 255));
    const labels = Array.from({ length: n }, () => randInt(rand, 0, 3));
    const ds = uploadDataset(rt, { images, labels, n, c: 3, h: 12, w: 12 });
    const run = async (s: number) => {
      const model = buildModel(rt, { kind: "small-cnn", input: [3, 12, 12], classes: 4, widths: [4, 8] }, 7);
      const stats = await trainModel(rt, model, ds, { epochs: 2, batchSize: 16, lr: 0.05, seed: s });
      return { params: await rt.readMany(model.params.map((p) => p.value)), loss: stats[1].loss };
    };
    const a = await run(seed);
    const b = await run(seed);
    const c = await run(seed + 1);
    expect(b.loss).toBe(a.loss);
    a.params.forEach((p, i) => expect(Array.from(b.params[i])).toEqual(Array.from(p)));
    expect(a.params.some((p, i) => Array.from(p).some((v, j) => v !== c.params[i][j]))).toBe(true);
  });
});
