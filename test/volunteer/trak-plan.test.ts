// The trak job's plan, spec validation and agreement rule (no device needed).
import { describe, expect, it } from "vitest";
import { featurizeRanges, TOLERANCE, trak, TrakSpec } from "../../server/jobs/trak.ts";
import { type ArrayValue, FINISH } from "../../src/protocol/job-kind.ts";
import { FeaturizePayload, STATES, TrainPayload, TRAK_FINISH } from "../../src/protocol/shards.ts";
import { Recipe, schedule } from "../../src/nn/train.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

describe("trak plan", () => {
  it("train shards, then featurize shards covering every example once, on 64-example tiles", () => {
    const rand = mulberry32(testSeed("trak plan"));
    for (let trial = 0; trial < 5; trial++) {
      const n = randInt(rand, 1, 3000);
      const models = randInt(rand, 1, 4);
      const shardSize = 64 * randInt(rand, 1, 10);
      const spec = TrakSpec.parse({ train: n, models, shardSize, k: 32 });
      const shards = trak.plan(spec);
      const train = shards.filter((s) => s.kind === "train");
      expect(train.length).toBe(models);
      for (const s of train) {
        expect(s.deterministic).toBe(false);
        expect(s.outputs.margins.shape).toEqual([n]);
        // Segments of at most 4 steps, each but the last leaving its state in the `states` output.
        const { segments, recipe } = TrainPayload.parse(s.payload);
        const steps = schedule(Recipe.parse(recipe), n).totalSteps;
        expect(segments).toBe(Math.ceil(steps / 4));
        expect(Object.hasOwn(s.outputs, STATES)).toBe(segments > 1);
      }
      for (let m = 0; m < models; m++) {
        const feats = shards.filter((s) => s.key.startsWith(`featurize/${m}/`));
        const covered = new Uint8Array(n);
        for (const s of feats) {
          const p = FeaturizePayload.parse(s.payload);
          expect(s.deps).toEqual([`train/${m}`]);
          expect(s.deterministic).toBe(true);
          expect(p.start % 64).toBe(0);
          expect(s.outputs.phi.shape).toEqual([p.end - p.start, 32]);
          for (let i = p.start; i < p.end; i++) covered[i]++;
        }
        expect(covered.every((c) => c === 1)).toBe(true);
      }
      // last, the finish shard: it reads every other shard and returns the report's files and the scores
      const finish = shards.at(-1)!;
      expect([finish.key, finish.kind, finish.deterministic]).toEqual([FINISH, TRAK_FINISH, true]);
      expect(finish.deps).toEqual(shards.slice(0, -1).map((s) => s.key));
      expect(finish.outputs.scores.shape).toEqual([n]);
      expect(Object.hasOwn(finish.outputs, "summary.json")).toBe(true);
      expect(new Set(shards.map((s) => s.key)).size).toBe(shards.length);
      expect(featurizeRanges(n, shardSize).length).toBe(Math.ceil(n / shardSize));
    }
  });

  it("refuses settings a volunteer cannot reproduce, with the field named", () => {
    expect(() => TrakSpec.parse({ attack: "label-consistent" })).toThrow(/attack/);
    expect(() => TrakSpec.parse({ shardSize: 100 })).toThrow(/multiple of 64/);
    expect(() => TrakSpec.parse({ train: 60000 })).toThrow(/train/);
    // States that would not fit the upload limit: refused at planning, naming the setting to change.
    expect(() => trak.plan(TrakSpec.parse({ train: 2000, maxCheckpointBytes: 1 << 20 }))).toThrow(
      /states of train\/0 .* over maxCheckpointBytes .*: raise segmentSteps/,
    );
  });

  it("agrees within the stated tolerance and not beyond", () => {
    const rand = mulberry32(testSeed("trak agree"));
    const spec = TrakSpec.parse({ train: 128, shardSize: 128, k: 64, models: 1 });
    const shard = trak.plan(spec).find((s) => s.kind === "featurize")!;
    const rows = 128, k = 64;
    const value = (data: Float32Array, shape: number[]): ArrayValue => ({ dtype: "f32", shape, data });
    const phi = randomF32(rand, rows * k);
    const margins = randomF32(rand, rows, -5, 5);
    const q = Float32Array.from(margins, (m) => 1 - 1 / (1 + Math.exp(-m)));
    const a = { phi: value(phi, [rows, k]), margins: value(margins, [rows]), q: value(q, [rows]) };
    // Rounding-sized noise (1e-6 relative) passes.
    const jitter = (x: Float32Array, rel: number) => x.map((v) => v * (1 + rel * (2 * rand() - 1)));
    expect(
      trak.agree(shard, a, {
        ...a,
        phi: value(jitter(phi, 1e-6), [rows, k]),
        margins: value(jitter(margins, 1e-6), [rows]),
      }),
    ).toBe(true);
    // One row off by 10x the tolerance fails; so does one margin or one Q.
    const row = randInt(rand, 0, rows - 1);
    const badPhi = Float32Array.from(phi);
    for (let c = 0; c < k; c++) badPhi[row * k + c] *= 1 + 10 * TOLERANCE.phiRow;
    expect(trak.agree(shard, a, { ...a, phi: value(badPhi, [rows, k]) })).toBe(false);
    const badM = Float32Array.from(margins);
    badM[row] += 0.05;
    expect(trak.agree(shard, a, { ...a, margins: value(badM, [rows]) })).toBe(false);
    const badQ = Float32Array.from(q);
    badQ[row] += 0.01;
    expect(trak.agree(shard, a, { ...a, q: value(badQ, [rows]) })).toBe(false);
    // A NaN never agrees.
    const nan = Float32Array.from(phi);
    nan[randInt(rand, 0, rows * k - 1)] = NaN;
    expect(trak.agree(shard, a, { ...a, phi: value(nan, [rows, k]) })).toBe(false);
  });
});
