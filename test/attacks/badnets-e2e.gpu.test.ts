// Deno only (GPU adapter + the shared CIFAR-10 copy): BadNets end to end on the CPU adapter. A small CNN
// trained on a poisoned CIFAR-10 subset learns the backdoor: its attack success rate is far above a
// clean model's, and its clean accuracy stays well above chance. Under Node this file registers a
// placeholder (the GPU imports are loaded lazily, inside the Deno branch).
import { describe, expect, it } from "vitest";
import { testSeed } from "../support/rng.ts";

const inDeno = "Deno" in globalThis;
const CIFAR = new URL("../../../shared/datasets/cifar-10-binary.tar.gz", import.meta.url).pathname;

describe("BadNets end to end on CIFAR-10 (CPU adapter)", () => {
  if (!inDeno) {
    it("runs under Deno only (npx deno test -A --no-check test/attacks/badnets-e2e.gpu.test.ts)", () => {});
    return;
  }
  it("a poisoned small CNN has a high ASR, a clean one a low ASR", async () => {
    const { testRuntime } = await import("../support/gpu.ts");
    const { uploadDataset } = await import("../../kernels/batch.ts");
    const { loadCifar10 } = await import("../../src/data/cifar.ts");
    const { seededSubset } = await import("../../src/data/dataset.ts");
    const { buildModel } = await import("../../src/nn/models.ts");
    const { trainModel } = await import("../../src/nn/train.ts");
    const { badnets } = await import("../../src/attacks/badnets.ts");
    const { evaluateAttack } = await import("../../src/attacks/evaluate.ts");

    const rt = await testRuntime();
    rt.poisonOutputs = false; // speed: kernel tests check every element
    const seed = testSeed("badnets e2e");
    const train = seededSubset(await loadCifar10(CIFAR, { split: "train" }), 2500, seed);
    const test = seededSubset(await loadCifar10(CIFAR, { split: "test" }), 1000, seed + 1);
    const config = { rate: 0.05, targetClass: 0, seed };
    const { poisoned, manifest } = badnets(train, config);
    expect(manifest.indices.length).toBe(125);
    // No crop/flip augmentation: with it a 3x3 corner patch moves and mirrors, and 4 short epochs on
    // 2500 images do not learn it reliably (ASR ~0.1 in a 3000-image trial); without it ASR ~0.9.
    const recipe = { epochs: 4, batchSize: 64, lr: 0.05, seed, cropPad: 0, flip: false };
    const results: Record<string, { cleanAccuracy: number; asr: number; seconds: number }> = {};
    for (const [name, ds] of [["clean", train], ["poisoned", poisoned]] as const) {
      const t0 = performance.now();
      const model = buildModel(rt, { kind: "small-cnn", input: [3, 32, 32], classes: 10, widths: [16, 32, 64] }, seed);
      const dev = uploadDataset(rt, ds);
      await trainModel(rt, model, dev, recipe);
      dev.pixels.release();
      dev.labels.release();
      const r = await evaluateAttack(rt, model, test, "badnets", config);
      results[name] = { cleanAccuracy: r.cleanAccuracy, asr: r.asr, seconds: (performance.now() - t0) / 1000 };
    }
    console.log(
      `badnets e2e (2500 train, 125 poisoned, 4 epochs, 1000 test): ` +
        Object.entries(results).map(([k, r]) =>
          `${k}: clean acc ${r.cleanAccuracy.toFixed(3)}, ASR ${r.asr.toFixed(3)} (${r.seconds.toFixed(0)} s)`
        ).join("; "),
    );
    expect(results.clean.asr).toBeLessThan(0.2);
    expect(results.poisoned.asr).toBeGreaterThan(0.5);
    expect(results.poisoned.cleanAccuracy).toBeGreaterThan(0.25);
    rt.poisonOutputs = true;
  });
});
