// The baseline detectors (src/detect/baselines.ts) on synthetic penultimate features with a known answer:
// 6 classes of 200 Gaussian points (F = 16, unit noise, class means about 8 apart); in class 0 a tenth of the
// examples are shifted 6 units along a random direction, as poisons are in feature space (the shift's
// variance, 1 + 0.09 x 36, clears the sample noise's top eigenvalue, about 1.64 at 200 points). Every
// feature-space baseline must rank them on top and flag them; SCAn must flag class 0 alone.
import { describe, expect, it } from "vitest";
import { activationClustering, lossIsolation, scan, spectralSignatures, spectre } from "../../src/detect/baselines.ts";
import { symmetricEigen } from "../../src/math.ts";
import { auroc } from "../../src/detect/metrics.ts";
import { mulberry32, testSeed } from "../support/rng.ts";

function features(seed: number, shiftBy = 6, n = 1200, K = 6, F = 16) {
  const rand = mulberry32(seed);
  const g = () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
  const means = Array.from({ length: K }, () => Array.from({ length: F }, () => 4 * g() / Math.sqrt(F) * 2));
  const shift = Array.from({ length: F }, g);
  const norm = Math.hypot(...shift);
  const labels = Uint8Array.from({ length: n }, (_, i) => i % K);
  const poisoned = Array.from({ length: n }, (_, i) => labels[i] === 0 && (i / K) % 10 === 3);
  const rows = Array.from(
    { length: n },
    (_, i) =>
      Float64Array.from(
        { length: F },
        (_, f) => means[labels[i]][f] + g() + (poisoned[i] ? (shiftBy * shift[f]) / norm : 0),
      ),
  );
  return { rows, labels, poisoned };
}

describe("baseline detectors on features with a known answer", () => {
  it("spectral signatures, activation clustering, SPECTRE and SCAn rank and flag the shifted tenth of class 0", () => {
    const seed = testSeed("baselines known answer");
    const { rows, labels, poisoned } = features(seed);
    const truth = new Set(poisoned.flatMap((p, i) => (p ? [i] : [])));
    const rate = 0.1; // of the poisoned class: SS and SPECTRE flag 1.5 x rate of every class
    const results = {
      ss: spectralSignatures(rows, labels, rate, seed),
      ac: activationClustering(rows, labels, seed),
      spectre: spectre(rows, labels, rate, seed),
      scan: scan(rows, labels, seed),
    };
    for (const [name, r] of Object.entries(results)) {
      const area = auroc(r.scores, poisoned);
      const caught = r.flagged.filter((i) => truth.has(i)).length;
      console.log(`[baselines] ${name}: AUROC ${area.toFixed(3)}, flagged ${r.flagged.length}, ${caught} poisons`);
      expect(area).toBeGreaterThanOrEqual(0.95);
      expect(caught).toBeGreaterThanOrEqual(0.8 * truth.size);
    }
    expect(results.scan.flagged.every((i) => labels[i] === 0)).toBe(true);
  });

  it("clean features: SCAn flags no class", () => {
    const seed = testSeed("scan clean");
    const { rows, labels } = features(seed, 0);
    expect(scan(rows, labels, seed).flagged).toEqual([]);
  });

  it("loss isolation flags the lowest 1% of losses", () => {
    const losses = Float32Array.from({ length: 300 }, (_, i) => (i * 37) % 300);
    const r = lossIsolation(losses);
    expect(r.flagged.sort((a, b) => a - b)).toEqual([0, 73, 146]); // losses 0, 1, 2
    expect(r.scores[0]).toBe(-0);
  });

  it("symmetricEigen reconstructs a random symmetric matrix (1e-9)", () => {
    const seed = testSeed("symmetric eigen");
    const rand = mulberry32(seed);
    const d = 12;
    const S = new Float64Array(d * d);
    for (let i = 0; i < d; i++) for (let j = 0; j <= i; j++) S[i * d + j] = S[j * d + i] = rand() - 0.5;
    const { values, vectors } = symmetricEigen(S, d);
    for (let i = 1; i < d; i++) expect(values[i]).toBeGreaterThanOrEqual(values[i - 1]);
    for (let i = 0; i < d; i++) {
      for (let j = 0; j < d; j++) {
        const back = values.reduce((acc, l, k) => acc + l * vectors[k][i] * vectors[k][j], 0);
        expect(Math.abs(back - S[i * d + j])).toBeLessThan(1e-9);
      }
    }
  });
});
