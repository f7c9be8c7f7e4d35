// Deno only (reads CIFAR-10, writes a store): datamodels end to end on the CPU adapter, through the detect
// pipeline: a few hundred tiny subset models on a poisoned CIFAR-10 subset, the regression, the LDS on
// held-out subset models, and the local search on the fitted matrix.
import { describe, expect, it } from "vitest";
import { fitDatamodels } from "../../src/datamodels/regression.ts";
import { DatamodelStore } from "../../src/datamodels/store.ts";
import { runDetect } from "../../src/detect/pipeline.ts";
import { testRuntime } from "../support/gpu.ts";
import { testSeed } from "../support/rng.ts";

declare const Deno: { makeTempDir(): Promise<string>; remove(p: string, o: { recursive: boolean }): Promise<void>; readDir(p: string): AsyncIterable<{ name: string }> };

describe("datamodels end to end", () => {
  it("fits a matrix with a positive LDS on held-out models and a positive poison block, and searches it", async () => {
    const rt = await testRuntime();
    rt.poisonOutputs = false; // speed: kernel tests check every element
    const seed = testSeed("datamodels e2e") % 1000;
    const cache = await Deno.makeTempDir();
    // n = 300 real CIFAR-10 images, BadNets (3x3 white patch, target 0) at 10%, a one-hidden-layer MLP
    // (32 units) trained 3 epochs on each 150-example subset: ~0.35 s per model on two idle llvmpipe cores.
    const settings = {
      train: 300, test: 500, attack: "badnets" as const, attackConfig: { rate: 0.1 }, attribution: "datamodels" as const,
      dmModels: 200, ldsModels: 20, restarts: 6,
      model: { kind: "mlp" as const, input: [3, 32, 32] as [number, number, number], classes: 10, hidden: [32] },
      recipe: { epochs: 3, batchSize: 50, lr: 0.05, cropPad: 0, flip: false },
    };
    const t0 = performance.now();
    const r = await runDetect(rt, { ...settings, seed, cache });
    const s = r.summary;
    console.log(`datamodels e2e: ${settings.dmModels} subset models, LDS ${s.lds?.toFixed(3)} on ${settings.ldsModels} held-out models, AUROC ${s.auroc?.toFixed(3)}, ` +
      `ASR ${s.asr_before?.toFixed(2)}, stages ${JSON.stringify(Object.fromEntries(Object.entries(s.stage_seconds).map(([k, v]) => [k, Math.round(v)])))}, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    // Every subset model and held-out model is in the store, so a rerun would train nothing.
    let dir = "";
    for await (const e of Deno.readDir(cache)) if (e.name.startsWith("datamodels-")) dir = `${cache}/${e.name}`;
    const store = await DatamodelStore.openExisting(dir);
    expect(store.models).toBe(settings.dmModels);
    expect(store.stored("heldout").length).toBe(settings.ldsModels);
    expect(s.poisoned!.length).toBe(30);
    // LDS: about 280 targets, each a Spearman over ~10 held-out models that leave it out; with no relation
    // the mean is 0 with sd ~0.02, so 0.1 is 5 sd away (measured 0.20-0.31 over settings and seeds).
    expect(s.lds!).toBeGreaterThan(0.1);
    // The poisons form a positive block of the fitted matrix: poison j raises poison i's margin. Its mean
    // must exceed the clean-clean mean by 4 standard errors of a block mean of that many clean entries.
    const fit = await fitDatamodels(rt, { n: store.n, models: settings.dmModels, rows: (a, b) => store.rows(a, b) }, { seed });
    const A = (await rt.read(fit.weights)) as Float32Array;
    fit.weights.release();
    const n = store.n;
    const poison = new Set(s.poisoned!);
    let pp = 0, cc = 0, cc2 = 0, npp = 0, ncc = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        if (i === j) continue;
        const v = A[i * n + j];
        if (poison.has(i) && poison.has(j)) (pp += v), npp++;
        else if (!poison.has(i) && !poison.has(j)) (cc += v), (cc2 += v * v), ncc++;
      }
    }
    const ccSd = Math.sqrt(cc2 / ncc - (cc / ncc) ** 2);
    console.log(`datamodels e2e: poison-block mean ${(pp / npp).toExponential(2)}, clean-block mean ${(cc / ncc).toExponential(2)} (sd ${ccSd.toExponential(2)})`);
    expect(pp / npp - cc / ncc).toBeGreaterThan((4 * ccSd) / Math.sqrt(npp));
    // The local search on this matrix: at this scale same-class clusters are larger-sum blocks than the
    // poisons (whose own visual classes count against them), so the search ranks poisons below chance
    // (measured AUROC 0.27-0.46 over seven settings); the check is that it ran and produced a ranking.
    expect(s.auroc!).toBeGreaterThan(0);
    expect(s.auroc!).toBeLessThan(1);
    await Deno.remove(cache, { recursive: true });
    rt.poisonOutputs = true;
  });
});
