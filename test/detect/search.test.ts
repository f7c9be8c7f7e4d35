// CPU tests of the local search's float64 reference (src/detect/search.ts): exhaustive optimum on tiny
// matrices, the exact swap gain, a planted block, and the dense spectral score.
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
        const log = await b.epoch(mask, Math.min(s, n - s));
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
      const res = await maxSumSearch(denseCpuBackend(A, n), { sizes: [s], restarts: 10, seed: seed + t });
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

  it(
    "recovers a planted block in a random rank-16 matrix (n = 300, block 20): " +
      "best size-20 selection precision >= 0.9 (sizes 10, 20, 40; 10 restarts)",
    async () => {
      const seed = testSeed("search planted cpu");
      const p = planted(seed);
      const res = await maxSumSearch(denseCpuBackend(p.A, p.n), { sizes: [10, 20, 40], restarts: 10, seed });
      // The search's best size-20 selection is the block (0/1000 seeds below 0.9). The score aggregates
      // every restart, and with 10 restarts from random starts a few seeds in a hundred leave a stuck
      // restart's members in its top 20 (worst seen: precision 0.5), so it is logged, not asserted.
      const best = res.solutions.filter((s) => s.size === 20).reduce((a, b) => (b.objective > a.objective ? b : a));
      const prec = precision(Array.from(best.members), p.block);
      console.log(
        `[planted cpu] best size-20 selection precision = ${prec}; score top-20 precision = ${
          precision(topK(res.scores, 20), p.block)
        }`,
      );
      expect(prec).toBeGreaterThanOrEqual(0.9);
    },
  );

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

  it("default sizes double from a small size to n/10", () => {
    expect(defaultSizes(300)).toEqual([3, 6, 12, 24, 30]);
    expect(defaultSizes(5000)).toEqual([50, 100, 200, 400, 500]);
  });
});
