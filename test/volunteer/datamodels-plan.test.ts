// The datamodels job's plan: one full-set model, then subset models whose payload masks are the
// pipeline's (src/datamodels/masks.ts), regenerated from (seed, split, model) alone. No device needed.
import { describe, expect, it } from "vitest";
import { datamodels, DatamodelsSpec } from "../../server/jobs/datamodels.ts";
import { DATAMODELS_FINISH, subsetKey, TrainPayload } from "../../src/protocol/shards.ts";
import { FINISH } from "../../src/protocol/job-kind.ts";
import { maskIndices, subsetSeed } from "../../src/datamodels/masks.ts";
import { mulberry32, randInt, testSeed } from "../support/rng.ts";

describe("datamodels plan", () => {
  it("a full-set model, dmModels subset models, ldsModels held-out ones with seeded masks, then the finish", () => {
    const rand = mulberry32(testSeed("datamodels plan"));
    for (let trial = 0; trial < 5; trial++) {
      const n = randInt(rand, 16, 3000), dmModels = randInt(rand, 4, 40), ldsModels = randInt(rand, 0, 6);
      const dmAlpha = [0.1, 0.25, 0.5, 0.75][randInt(rand, 0, 3)], seed = randInt(rand, 0, 1000);
      const spec = DatamodelsSpec.parse({ train: n, dmModels, ldsModels, dmAlpha, seed });
      const planned = datamodels.plan(spec);
      expect(planned.length).toBe(1 + dmModels + ldsModels + 1);
      expect(new Set(planned.map((s) => s.key)).size).toBe(planned.length);
      // last, the finish shard: it reads every model and returns the report's files and the scores
      const finish = planned.at(-1)!;
      const shards = planned.slice(0, -1);
      expect([finish.key, finish.kind, finish.deterministic]).toEqual([FINISH, DATAMODELS_FINISH, true]);
      expect(finish.deps).toEqual(shards.map((s) => s.key));
      expect(finish.outputs.scores.shape).toEqual([n]);
      expect(shards[0].key).toBe("train/0");
      expect(TrainPayload.parse(shards[0].payload).mask).toBe(undefined);
      for (const s of shards) {
        expect(s.kind).toBe("train");
        expect(s.deterministic).toBe(false);
        expect(s.deps).toEqual([]);
        expect(s.outputs.margins.shape).toEqual([n]);
      }
      for (const [split, count] of [["train", dmModels], ["heldout", ldsModels]] as const) {
        for (let m = 0; m < count; m++) {
          const s = shards.find((x) => x.key === subsetKey(split, m))!;
          const p = TrainPayload.parse(s.payload);
          expect(p.seed).toBe(subsetSeed(seed, split, m));
          const mask = maskIndices({ n, alpha: p.mask!.alpha, seed: p.mask!.seed }, p.mask!.split, p.mask!.model);
          expect(mask).toEqual(maskIndices({ n, alpha: dmAlpha, seed }, split, m));
          expect(mask.length).toBe(Math.max(1, Math.round(dmAlpha * n)));
        }
      }
    }
  });

  it("refuses settings the fit or a volunteer cannot work with, with the field named", () => {
    expect(() => DatamodelsSpec.parse({ dmModels: 2 })).toThrow(/dmModels/);
    expect(() => DatamodelsSpec.parse({ dmAlpha: 0 })).toThrow(/dmAlpha/);
    expect(() => DatamodelsSpec.parse({ dmPenalty: "l3" })).toThrow(/dmPenalty/);
    expect(() => DatamodelsSpec.parse({ attack: "label-consistent" })).toThrow(/attack/);
  });
});
