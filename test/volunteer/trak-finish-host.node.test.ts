// Node only: a coordinator without WebGPU finishes a trak job on the host (float64 attribution twin +
// the dense search). Features are synthetic: the job's poisoned examples (from the attack manifest)
// share a direction in feature space, which the search must find.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { ArrayValue } from "../../src/protocol/job-kind.ts";
import { trainSplit } from "../../server/jobs/datasets.ts";
import { featurizeRanges, trak, TrakSpec } from "../../server/jobs/trak.ts";
import { buildTrainingSet } from "../../src/detect/training-set.ts";
import { mulberry32, randomF32, testSeed } from "../support/rng.ts";
import { TINY } from "./fixtures.ts";
import { expectHostFinish } from "./host-finish.ts";

describe("trak finish on the host", () => {
  it("finds a planted group of poisons without a device", async () => {
    const seed = testSeed("trak finish host");
    const rand = mulberry32(seed);
    const spec = TrakSpec.parse({ ...TINY, models: 2, seed: seed % 1000 });
    const { train, poisoned } = await buildTrainingSet(await trainSplit(spec.data), spec);
    const n = train.n, k = spec.k;
    const bad = new Set(poisoned!);
    const results = new Map<string, Record<string, ArrayValue>>();
    for (let m = 0; m < spec.models; m++) {
      const direction = randomF32(rand, k);
      for (const [a, b] of featurizeRanges(n, spec.shardSize)) {
        const phi = randomF32(rand, (b - a) * k, -0.3, 0.3);
        for (let i = a; i < b; i++) {
          if (bad.has(i)) {
            for (let c = 0; c < k; c++) phi[(i - a) * k + c] += direction[c];
          }
        }
        const margins = randomF32(rand, b - a, -3, 3);
        const q = Float32Array.from(margins, (v) => 1 - 1 / (1 + Math.exp(-v)));
        const f32 = (data: Float32Array, shape: number[]): ArrayValue => ({ dtype: "f32", shape, data });
        results.set(`featurize/${m}/${a}-${b}`, {
          phi: f32(phi, [b - a, k]),
          margins: f32(margins, [b - a]),
          q: f32(q, [b - a]),
        });
      }
    }
    const out = mkdtempSync(join(tmpdir(), "trak-finish-"));
    try {
      const summary = await trak.finish!(spec, { get: async (key, name) => results.get(key)![name] }, out);
      console.log(
        `host finish: auroc ${summary.auroc}, ${(summary.flagged as number[]).length} flagged, ${
          (summary.seconds as number).toFixed(1)
        } s, ${summary.adapter}`,
      );
      expect(summary.auroc as number).toBeGreaterThan(0.95);
      expectHostFinish(summary, out, n);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
