// Deno only (reads the shared CIFAR-10 copy from disk): a short real training run on the CPU adapter.
import { describe, expect, it } from "vitest";
import { uploadDataset } from "../../kernels/batch.ts";
import { loadCifar10 } from "../../src/data/cifar.ts";
import { seededSubset } from "../../src/data/dataset.ts";
import { buildModel } from "../../src/nn/models.ts";
import { evaluate, trainModel } from "../../src/nn/train.ts";
import { testRuntime } from "../support/gpu.ts";
import { testSeed } from "../support/rng.ts";

const CIFAR = new URL("../../../shared/datasets/cifar-10-binary.tar.gz", import.meta.url).pathname;

describe("training on CIFAR-10 images", () => {
  it("a small CNN learns well above chance in a few epochs", async () => {
    const rt = await testRuntime();
    rt.poisonOutputs = false; // speed: this test checks learning, the kernel tests check every element
    const seed = testSeed("cifar training run");
    const train = seededSubset(await loadCifar10(CIFAR, { split: "train" }), 2560, seed);
    const test = seededSubset(await loadCifar10(CIFAR, { split: "test" }), 1000, seed + 1);
    const model = buildModel(rt, { kind: "small-cnn", input: [3, 32, 32], classes: 10, widths: [16, 32, 64] }, seed);
    const before = await evaluate(rt, model, uploadDataset(rt, test));
    const readsBefore = rt.stats.readbacks;
    const epochs = await trainModel(rt, model, uploadDataset(rt, train), {
      epochs: 4,
      batchSize: 64,
      lr: 0.05,
      seed,
    });
    expect(rt.stats.readbacks - readsBefore).toBe(epochs.length); // one readback per epoch
    const after = await evaluate(rt, model, uploadDataset(rt, test));
    console.log(
      `test accuracy ${before.accuracy.toFixed(3)} -> ${after.accuracy.toFixed(3)}; epochs ${
        JSON.stringify(epochs.map((e) => [e.loss.toFixed(3), e.accuracy.toFixed(3), e.imagesPerSecond.toFixed(0)]))
      }`,
    );
    expect(after.accuracy).toBeGreaterThan(0.3); // chance is 0.1
    expect(epochs[epochs.length - 1].loss).toBeLessThan(epochs[0].loss);
    rt.poisonOutputs = true;
  });
});
