import { describe, expect, it } from "vitest";
import { maskBits, maskIndices, maskSize, subsetSeed } from "../../src/datamodels/masks.ts";
import { testSeed } from "../support/rng.ts";

describe("datamodel masks", () => {
  it("reproduce from (seed, split, model) alone and have round(alpha n) distinct sorted members", () => {
    const seed = testSeed("datamodel masks");
    for (const [n, alpha] of [[101, 0.5], [1000, 0.3], [7, 1]] as const) {
      const spec = { n, alpha, seed };
      for (let m = 0; m < 20; m++) {
        const a = maskIndices(spec, "train", m);
        expect(Array.from(a)).toEqual(Array.from(maskIndices({ ...spec }, "train", m)));
        expect(a.length).toBe(maskSize(spec));
        expect(a.length).toBe(Math.round(alpha * n));
        for (let t = 1; t < a.length; t++) expect(a[t]).toBeGreaterThan(a[t - 1]);
        expect(a[a.length - 1]).toBeLessThan(n);
        const bits = maskBits(spec, "train", m);
        expect(bits.reduce((s, v) => s + v, 0)).toBe(a.length);
        for (const j of a) expect(bits[j]).toBe(1);
      }
    }
    expect(() => maskSize({ n: 10, alpha: 0 })).toThrow(/alpha/);
    expect(() => subsetSeed(1, "train", -1)).toThrow(/model index/);
  });

  it("differ between models, splits and seeds, and include each example about alpha of the time", () => {
    const seed = testSeed("datamodel mask statistics");
    const [n, alpha, M] = [200, 0.5, 400];
    const spec = { n, alpha, seed };
    const counts = new Float64Array(n);
    let overlap = 0;
    let prev = maskBits(spec, "train", M);
    for (let m = 0; m < M; m++) {
      const b = maskBits(spec, "train", m);
      for (let j = 0; j < n; j++) {
        counts[j] += b[j];
        overlap += b[j] & prev[j];
      }
      prev = b;
    }
    // Each count is Binomial-like with mean alpha M = 200 and sd <= sqrt(M alpha (1 - alpha)) = 10;
    // 6 sd is far outside what 200 honest counts reach (p < 1e-6), and far inside what a biased sampler gives.
    for (const c of counts) {
      expect(c).toBeGreaterThan(alpha * M - 60);
      expect(c).toBeLessThan(alpha * M + 60);
    }
    // Consecutive masks are independent: overlap alpha^2 n = 50 per pair on average (sd ~3.5 per pair, ~0.2 for the
    // mean of 400).
    expect(overlap / M).toBeGreaterThan(50 - 3);
    expect(overlap / M).toBeLessThan(50 + 3);
    const key = (s: number, split: "train" | "heldout", m: number) =>
      Array.from(maskIndices({ n, alpha, seed: s }, split, m)).join(",");
    expect(key(seed, "train", 0) === key(seed, "heldout", 0)).toBe(false);
    expect(key(seed, "train", 0) === key(seed + 1, "train", 0)).toBe(false);
    expect(key(seed, "train", 0) === key(seed, "train", 1)).toBe(false);
  });
});
