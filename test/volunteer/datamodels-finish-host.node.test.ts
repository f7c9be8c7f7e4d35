// Node only: a coordinator without WebGPU finishes a datamodels job on the host (the regression's float64
// twin + the dense search). Margins are synthetic: a subset model's margin on a poisoned example (from the
// attack manifest) rises with the other poisons in its mask, so the fit must put the poisons in a block;
// held-out models follow the same law, so the LDS must be clearly positive.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { ArrayValue } from "../../src/protocol/job-kind.ts";
import { datamodels, DatamodelsSpec, subsetKey } from "../../server/jobs/datamodels.ts";
import { trainSplit } from "../../server/jobs/datasets.ts";
import { maskBits } from "../../src/datamodels/masks.ts";
import { buildTrainingSet } from "../../src/detect/training-set.ts";
import { mulberry32, randomF32, testSeed } from "../support/rng.ts";
import { TINY } from "./fixtures.ts";
import { expectHostFinish } from "./host-finish.ts";

describe("datamodels finish on the host", () => {
  it("finds a planted group of poisons without a device", async () => {
    const seed = testSeed("datamodels finish host");
    const rand = mulberry32(seed);
    const spec = DatamodelsSpec.parse({ ...TINY, dmModels: 120, ldsModels: 24, seed: seed % 1000 });
    const { train, poisoned } = await buildTrainingSet(await trainSplit(spec.data), spec);
    const n = train.n;
    const bad = new Set(poisoned!);
    const base = randomF32(rand, n, -1, 1);
    const results = new Map<string, Record<string, ArrayValue>>();
    for (const [split, count] of [["train", spec.dmModels], ["heldout", spec.ldsModels]] as const) {
      for (let m = 0; m < count; m++) {
        const x = maskBits({ n, alpha: spec.dmAlpha, seed: spec.seed }, split, m);
        const inMask = poisoned!.filter((j) => x[j]).length;
        // Every example also leans on one neighbour, so every target (not only the poisons) has a law to learn.
        const margins = Float32Array.from(
          randomF32(rand, n, -0.3, 0.3),
          (e, i) => base[i] + e + x[(i + 1) % n] + (bad.has(i) ? 0.5 * (inMask - x[i]) : 0),
        );
        results.set(subsetKey(split, m), { margins: { dtype: "f32", shape: [n], data: margins } });
      }
    }
    const out = mkdtempSync(join(tmpdir(), "dm-finish-"));
    try {
      const summary = await datamodels.finish!(spec, { get: async (key, name) => results.get(key)![name] }, out);
      console.log(
        `host finish: auroc ${summary.auroc}, lds ${summary.lds}, ${(summary.flagged as number[]).length} flagged, ${
          (summary.seconds as number).toFixed(1)
        } s, ${summary.adapter}`,
      );
      expect(summary.auroc as number).toBeGreaterThan(0.9);
      expect(summary.lds as number).toBeGreaterThan(0.3);
      expectHostFinish(summary, out, n);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
