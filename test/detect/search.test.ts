// CPU tests of the local search's float64 twin (src/detect/search.ts): exhaustive optimum on tiny
// matrices, the exact swap gain, the ranking of a planted block (also by the reference transcription,
// search-reference.ts), and the dense spectral score.
import { describe, expect, it } from "vitest";
import {
  centredObjective,
  defaultSizes,
  denseCpuBackend,
  exhaustiveBest,
  localSearch,
  maxSumSearch,
  startSet,
  topK,
} from "../../src/detect/search.ts";
import { auroc } from "../../src/detect/metrics.ts";
import { plantedMatrix } from "../../src/detect/planted.ts";
import { referenceSearch } from "../../src/detect/search-reference.ts";
import { spectralDense } from "../../src/detect/spectral.ts";
import { mulberry32, testSeed } from "../support/rng.ts";
import { planted, precision, randomDense } from "./fixtures.ts";

const membersOf = (mask: Uint8Array) => Array.from(mask.keys()).filter((i) => mask[i]);

describe("max-sum submatrix search (float64 CPU twin)", () => {
  it(
    "each swap's gain t_a - t_r - A[r][a] - A[a][r] equals the brute-force change of the centred " +
      "objective",
    async () => {
      const seed = testSeed("search swap gain");
      const rand = mulberry32(seed);
      for (let trial = 0; trial < 10; trial++) {
        const n = 8 + Math.floor(rand() * 20);
        const A = randomDense(seed + trial, n);
        const s = 2 + Math.floor(rand() * (n / 2 - 2));
        const b = denseCpuBackend(A, n);
        b.setSize(s);
        const mask = startSet(n, s, seed, trial);
        const log = await b.epoch(mask, Math.min(s, n - s), 0);
        expect(Math.abs(log.objective - centredObjective(A, n, membersOf(mask)))).toBeLessThan(1e-9);
        let f = log.objective;
        for (let k = 0; k < log.gains.length; k++) {
          mask[log.removed[k]] = 0;
          mask[log.added[k]] = 1;
          const g = centredObjective(A, n, membersOf(mask));
          expect(Math.abs(g - f - log.gains[k])).toBeLessThan(1e-9);
          f = g;
        }
      }
    },
  );

  it("an epoch from a selection near the last one (P kept, differing rows applied) equals a fresh one", async () => {
    const seed = testSeed("search kept totals");
    const rand = mulberry32(seed);
    const n = 40;
    const s = 12;
    const A = randomDense(seed, n);
    const kept = denseCpuBackend(A, n);
    kept.setSize(s);
    const mask = startSet(n, s, seed, 0);
    for (let e = 0; e < 6; e++) {
      const log = await kept.epoch(mask, 5, 2);
      const fresh = denseCpuBackend(A, n);
      fresh.setSize(s);
      const want = await fresh.epoch(mask, 5, 2);
      expect(Math.abs(log.objective - want.objective)).toBeLessThan(1e-9);
      expect(Array.from(log.added)).toEqual(Array.from(want.added));
      expect(Array.from(log.removed)).toEqual(Array.from(want.removed));
      // The next selection keeps a random prefix of the swaps, as the driver does.
      for (let k = 0; k < Math.floor(rand() * 6); k++) {
        mask[log.removed[k]] = 0;
        mask[log.added[k]] = 1;
      }
    }
  });

  it("totals: members t = R + C - B[x][x], non-members R + C + B[x][x] (brute force)", async () => {
    const seed = testSeed("search totals");
    const n = 15;
    const s = 5;
    const A = randomDense(seed, n);
    const b = denseCpuBackend(A, n);
    b.setSize(s);
    const mask = startSet(n, s, seed, 0);
    const t = await b.totals(mask);
    for (let x = 0; x < n; x++) {
      let rs = 0;
      for (let j = 0; j < n; j++) if (j !== x) rs += A[x * n + j];
      const B = (i: number, j: number) => (i === j ? -(s / n) * (i === x ? rs : NaN) : A[i * n + j]);
      let R = 0;
      let C = 0;
      for (let j = 0; j < n; j++) {
        if (!mask[j]) continue;
        R += j === x ? B(x, x) : B(x, j);
        C += j === x ? B(x, x) : B(j, x);
      }
      const want = mask[x] ? R + C - B(x, x) : R + C + B(x, x);
      expect(Math.abs(t[x] - want)).toBeLessThan(1e-9);
    }
  });

  // Criterion: over 40 random matrices (n = 8..12, s = 2..n/2, uniform [-1, 1) entries), the best of 10
  // restarts reaches the exhaustive optimum (within 1e-9) on at least 90% of them, and never exceeds it.
  // This checks the optimiser, so it ranks additions by the exact gain (bonus 0): the default look-ahead
  // bonus trades some of that for ranking (17 of 40 at bonus 5 on one seed), which the planted tests check.
  it("best of 10 restarts reaches the exhaustive optimum on >= 90% of tiny random matrices", async () => {
    const seed = testSeed("search exhaustive");
    const rand = mulberry32(seed);
    let hits = 0;
    const trials = 40;
    for (let t = 0; t < trials; t++) {
      const n = 8 + Math.floor(rand() * 5);
      const s = 2 + Math.floor(rand() * (Math.floor(n / 2) - 1));
      const A = randomDense(seed + 1000 * t, n);
      const opt = exhaustiveBest(A, n, s);
      const res = await maxSumSearch(denseCpuBackend(A, n), { sizes: [s], restarts: 10, seed: seed + t, bonus: 0 });
      const best = Math.max(...res.solutions.map((x) => x.objective));
      for (const sol of res.solutions) {
        expect(Math.abs(sol.objective - centredObjective(A, n, sol.members))).toBeLessThan(1e-9);
      }
      expect(best).toBeLessThanOrEqual(opt.objective + 1e-9);
      if (best >= opt.objective - 1e-9) hits++;
    }
    console.log(`[exhaustive] optimum reached on ${hits}/${trials}`);
    expect(hits).toBeGreaterThanOrEqual(Math.ceil(0.9 * trials));
  });

  it("never ends below its start and stops within the epoch budget", async () => {
    const seed = testSeed("search monotone");
    const n = 60;
    const A = randomDense(seed, n);
    const b = denseCpuBackend(A, n);
    for (const s of [3, 10, 30]) {
      b.setSize(s);
      for (let r = 0; r < 5; r++) {
        const start = startSet(n, s, seed, r);
        const f0 = centredObjective(A, n, membersOf(start));
        const res = await localSearch(b, start.slice(), s, { maxEpochs: 100 });
        expect(res.objective).toBeGreaterThanOrEqual(f0 - 1e-9);
        expect(membersOf(res.mask).length).toBe(s);
        expect(res.epochs).toBeLessThanOrEqual(100);
      }
    }
  });

  // The scores' ranking, not only the best selection: with the look-ahead bonus, 100 of 100 seeds put the
  // whole block in the score's top 20 (AUROC 1); ranking by the exact gain (bonus 0) did not on 1 in 20
  // (top-20 precision down to 0.5, AUROC down to 0.968), and neither does the criterion below allow it.
  it(
    "ranks a planted block on top in a random rank-16 matrix (n = 300, block 20, sizes 10, 20, 40, 10 " +
      "restarts): top-20 precision >= 0.95, AUROC >= 0.999",
    async () => {
      const seed = testSeed("search planted cpu");
      const p = planted(seed);
      const res = await maxSumSearch(denseCpuBackend(p.A, p.n), { sizes: [10, 20, 40], restarts: 10, seed });
      const inBlock = Array.from({ length: p.n }, (_, i) => p.block.includes(i));
      const prec = precision(topK(res.scores, 20), p.block);
      const area = auroc(res.scores, inBlock);
      console.log(`[planted cpu] score top-20 precision = ${prec}, AUROC = ${area.toFixed(4)}`);
      expect(prec).toBeGreaterThanOrEqual(0.95);
      expect(area).toBeGreaterThanOrEqual(0.999);
    },
  );

  // Rows summing like everyone else's (plantedMatrix balanced): the restarts keep settling on a core of the
  // block, so frequency alone ranks the rest like noise (AUROC 0.58-0.95 over 31 seeds); with support the
  // ranking was above frequency on all 31 (0.63-1.00, mean 0.97).
  it("on balanced planted blocks the ranking (frequency + support) beats frequency alone", async () => {
    const seed = testSeed("search balanced ranking");
    const [n, b] = [1000, 30];
    const sizes = [5, 10, 20, 40, 80, 160];
    const area = { frequency: 0, ranking: 0 };
    const seeds = 8;
    for (let t = 0; t < seeds; t++) {
      const { A, block } = plantedMatrix({ n, rank: 10, block: b, strength: 2, balanced: true, seed: seed + t });
      const inBlock = Array.from({ length: n }, (_, i) => block.includes(i));
      const res = await maxSumSearch(denseCpuBackend(A, n), { sizes, restarts: 20, seed: seed + t });
      const top = Math.max(...res.frequency);
      const topSupport = Math.max(...res.support);
      const worst = Math.max(
        ...res.scores.map((v, i) => Math.abs(v - res.frequency[i] / top - res.support[i] / topSupport)),
      );
      expect(worst).toBeLessThan(1e-12);
      area.frequency += auroc(res.frequency, inBlock) / seeds;
      area.ranking += auroc(res.scores, inBlock) / seeds;
    }
    console.log(`[balanced] mean AUROC frequency ${area.frequency.toFixed(4)}, ranking ${area.ranking.toFixed(4)}`);
    expect(area.ranking).toBeGreaterThanOrEqual(0.85);
    expect(area.ranking).toBeGreaterThanOrEqual(area.frequency + 0.05);
  });

  // The transcription of the public reference (search-reference.ts) on the same kind of matrix: sizes as
  // asked, and the block ranked on top (100 of 100 seeds at top-20 precision 1).
  it("reference backend: selections of the asked sizes, the planted block ranked on top", () => {
    const seed = testSeed("search planted reference");
    const p = planted(seed);
    const A = Float32Array.from(p.A);
    for (let i = 0; i < p.n; i++) A[i * p.n + i] = 0;
    const res = referenceSearch(A, p.n, { sizes: [10, 20, 40], restarts: 10, seed });
    expect(res.solutions.map((x) => x.size)).toEqual([10, 20, 40].flatMap((s) => Array(10).fill(s)));
    for (const sol of res.solutions) expect(new Set(sol.members).size).toBe(sol.size);
    const prec = precision(topK(res.scores, 20), p.block);
    console.log(`[planted reference] score top-20 precision = ${prec}`);
    expect(prec).toBeGreaterThanOrEqual(0.95);
  });

  it("spectral score (dense, float64) ranks the planted block on top", () => {
    const seed = testSeed("spectral planted cpu");
    const p = planted(seed);
    const res = spectralDense(p.A, p.n);
    const prec = precision(topK(res.scores, 20), p.block);
    console.log(
      `[spectral cpu] precision@20 = ${prec}, eigenvalue ${res.eigenvalue.toFixed(2)}, ${res.iterations} steps`,
    );
    expect(prec).toBeGreaterThanOrEqual(0.9);
    expect(precision(topK(res.vector, 20), p.block)).toBeGreaterThanOrEqual(0.9);
  });

  // Lanczos against plain shifted power iteration run to convergence: the largest algebraic eigenvalue of the
  // double-centred symmetrised matrix, here with a stronger negative block beside the positive one.
  it("spectral score (dense): the largest algebraic eigenpair, as shifted power iteration finds it", () => {
    const seed = testSeed("spectral lanczos");
    const rand = mulberry32(seed);
    const n = 120;
    const A = randomDense(seed, n);
    for (let i = 0; i < 10; i++) for (let j = 0; j < 10; j++) A[i * n + j] += 2; // positive block 0..9
    for (let i = 20; i < 40; i++) for (let j = 20; j < 40; j++) A[i * n + j] -= 3; // stronger negative block
    const res = spectralDense(A, n, { seed: 1 + Math.floor(rand() * 100) });
    // Reference: x <- H S H x + 100 x until it stops moving (float64, thousands of steps).
    const S = Array.from({ length: n * n }, (_, k) => {
      const [i, j] = [Math.floor(k / n), k % n];
      return i === j ? 0 : 0.5 * (A[i * n + j] + A[j * n + i]);
    });
    const centre = (v: number[]) => {
      const m = v.reduce((a, b) => a + b, 0) / n;
      return v.map((x) => x - m);
    };
    let x = centre(Array.from({ length: n }, () => rand() - 0.5));
    let lambda = 0;
    for (let it = 0; it < 20000; it++) {
      const y = centre(x.map((_, i) => x.reduce((a, xj, j) => a + S[i * n + j] * xj, 0)));
      lambda = y.reduce((a, v, i) => a + v * x[i], 0) / x.reduce((a, v) => a + v * v, 0);
      const nrm = Math.hypot(...y.map((v, i) => v + 100 * x[i]));
      x = y.map((v, i) => (v + 100 * x[i]) / nrm);
    }
    const cos = Math.abs(x.reduce((a, v, i) => a + v * res.vector[i], 0));
    console.log(
      `[spectral lanczos] eigenvalue ${res.eigenvalue} (power ${lambda}), ${res.iterations} products, |cos| ${cos}`,
    );
    expect(res.eigenvalue).toBeGreaterThan(0);
    expect(Math.abs(res.eigenvalue - lambda)).toBeLessThan(1e-6 * lambda);
    expect(cos).toBeGreaterThan(1 - 1e-6);
    expect(precision(topK(res.vector, 10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])).toBe(1);
  });

  it("default sizes double from a small size to n/10", () => {
    expect(defaultSizes(300)).toEqual([3, 6, 12, 24, 30]);
    expect(defaultSizes(5000)).toEqual([50, 100, 200, 400, 500]);
  });
});
