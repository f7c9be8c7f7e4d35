// Deno only (reads CIFAR-10, writes a store): datamodels end to end on the CPU adapter, through the detect
// pipeline: a few hundred tiny subset models on a poisoned CIFAR-10 subset, the regression, the LDS on
// held-out subset models, and the local search on the fitted matrix.
import { describe, expect, it } from "vitest";
import { fitDatamodels } from "../../src/datamodels/regression.ts";
import { DatamodelStore } from "../../src/datamodels/store.ts";
import { runDetect } from "../../src/detect/pipeline.ts";
import { testRuntime } from "../support/gpu.ts";
import { testSeed } from "../support/rng.ts";
import { tempDir } from "../support/host.ts";
import { readdir, rm } from "node:fs/promises";

describe("datamodels end to end", () => {
  it(
    "fits a matrix with a positive LDS on held-out models and a positive poison block, and the search ranks the " +
      "poisons above chance",
    async () => {
      const rt = await testRuntime();
      rt.poisonOutputs = false; // speed: kernel tests check every element
      const seed = testSeed("datamodels e2e") % 1000;
      const cache = tempDir("test");
      // n = 300 real CIFAR-10 images, BadNets (5x5 white patch, target 0) at 15%, a one-hidden-layer MLP
      // (32 units) trained 3 epochs on each 60-example (alpha 0.2) subset: ~0.27 s per model on two llvmpipe
      // cores. What makes the poisons findable at this scale (AUROC of the search, pipeline seeds 1-5):
      //   alpha 0.5, 3x3 patch, 10%, 200 models: 0.38 (seed 1; 0.27-0.48 over settings: same-class blocks win)
      //   alpha 0.5, 5x5, 10%, 200 models: 0.66 / 0.48 / 0.65 (seeds 1-3)
      //   alpha 0.2, 5x5, 15%, 200 models: 0.68 / 0.78 / 0.65 / 0.58 / 0.79
      //   alpha 0.2, 5x5, 15%, 300 models: 0.74 / 0.69 / 0.74 / 0.75 / 0.76 (400: no better); seeds 6-11 below
      //   alpha 0.5, 5x5, 15%, 300 models: 0.37 (seed 4; 0.52 with 200 models on seed 1)
      // The tiny MLP learns the larger patch reliably (ASR ~0.9 rather than ~0.7). Alpha 0.2 puts about 9
      // poisons in a subset instead of 22; presumably nearer the count where the backdoor starts to be learned,
      // so one poison more or less moves the poisons' margins, where at 0.5 it is learned whatever the subset
      // holds. The extra models cut the regression noise that the search otherwise takes for blocks.
      const settings = {
        train: 300,
        testSize: 500,
        attack: "badnets" as const,
        attackConfig: { rate: 0.15, patchSize: 5 },
        attribution: "datamodels" as const,
        dmModels: 300,
        dmAlpha: 0.2,
        ldsModels: 20,
        restarts: 6,
        model: { kind: "mlp" as const, input: [3, 32, 32] as [number, number, number], classes: 10, hidden: [32] },
        recipe: { epochs: 3, batchSize: 50, lr: 0.05, cropPad: 0, flip: false },
      };
      const t0 = performance.now();
      const r = await runDetect(rt, { ...settings, seed, cache });
      const s = r.summary;
      console.log(
        `datamodels e2e: ${settings.dmModels} subset models, LDS ${
          s.lds?.toFixed(3)
        } on ${settings.ldsModels} held-out models, AUROC ${s.auroc?.toFixed(3)}, ` +
          `ASR ${s.asr_before?.toFixed(2)}, stages ${
            JSON.stringify(Object.fromEntries(Object.entries(s.stage_seconds).map(([k, v]) => [k, Math.round(v)])))
          }, ${((performance.now() - t0) / 1000).toFixed(0)} s`,
      );
      // Every subset model and held-out model is in the store, so a rerun would train nothing.
      let dir = "";
      for (const name of await readdir(cache)) if (name.startsWith("datamodels-")) dir = `${cache}/${name}`;
      const store = await DatamodelStore.openExisting(dir);
      expect(store.models).toBe(settings.dmModels);
      expect(store.stored("heldout").length).toBe(settings.ldsModels);
      expect(s.poisoned!.length).toBe(45);
      // LDS: 300 targets, each a Spearman over the ~16 held-out models (alpha 0.2) that leave it out; with no
      // relation the mean is 0 with sd under 0.02, so 0.1 is 5 sd away (measured 0.26-0.33 over seeds 1-11).
      expect(s.lds!).toBeGreaterThan(0.1);
      // The poisons form a positive block of the fitted matrix: poison j raises poison i's margin. Its mean
      // must exceed the clean-clean mean by 4 standard errors of a block mean of that many clean entries.
      const fit = await fitDatamodels(rt, { n: store.n, models: settings.dmModels, rows: (a, b) => store.rows(a, b) }, {
        seed,
      });
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
      console.log(
        `datamodels e2e: poison-block mean ${(pp / npp).toExponential(2)}, clean-block mean ${
          (cc / ncc).toExponential(2)
        } (sd ${ccSd.toExponential(2)})`,
      );
      expect(pp / npp - cc / ncc).toBeGreaterThan((4 * ccSd) / Math.sqrt(npp));
      // The local search on this matrix ranks the poisons above chance. Measured over seeds 1-11 (TEST_SEED):
      // 0.74 0.69 0.74 0.75 0.76 0.63 0.66 0.70 0.76 0.56 0.74 (mean 0.70, sd 0.06). With 45 poisons among
      // 300 a random ranking has AUROC 0.5 with sd 0.047, so 0.55 is only 1 sd above chance, but 2.4 sd of
      // the measured spread below its mean (0.6 failed on seed 10): a thin margin both ways at this scale.
      expect(s.auroc!).toBeGreaterThan(0.55);
      await rm(cache, { recursive: true, force: true });
      rt.poisonOutputs = true;
    },
  );
});
