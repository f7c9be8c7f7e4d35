// The search kernels (wgsl/search.wgsl) through the device backends of the local search and the spectral
// score, against the float64 CPU twin (same seed, same swaps); factor totals against dense totals; and
// planted-block recovery on the factor path.
import { describe, expect, it } from "vitest";
import { Factors } from "../../src/detect/factors.ts";
import { denseCpuBackend, maxSumSearch, startSet, topK } from "../../src/detect/search.ts";
import { denseGpuBackend, factorBackend } from "../../src/detect/search-gpu.ts";
import { spectralDense, spectralFactors } from "../../src/detect/spectral.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { testSeed } from "../support/rng.ts";
import { planted, precision } from "../detect/fixtures.ts";

describe("max-sum submatrix search on the device", () => {
  it("factor-based totals equal dense totals (float64 twin), for chunked factors too", async () => {
    const rt = await testRuntime();
    const seed = testSeed("search factor totals");
    const p = planted(seed, 200, 12, 15);
    const cpu = denseCpuBackend(p.A, p.n);
    for (const chunk of [p.n, 64]) {
      const f = Factors.upload(rt, p.U, p.V, p.n, p.r, chunk);
      const b = factorBackend(rt, f);
      for (const s of [5, 20]) {
        b.setSize(s);
        cpu.setSize(s);
        const mask = startSet(p.n, s, seed, s);
        const got = await b.totals(mask);
        const want = await cpu.totals(mask);
        assertClose(got, want, { rtol: 1e-4, scale: 10 }, `factor totals (s = ${s}, chunk ${chunk})`);
        const dense = denseGpuBackend(rt, p.A, p.n);
        dense.setSize(s);
        assertClose(await dense.totals(mask), want, { rtol: 1e-4, scale: 10 }, `dense gpu totals (s = ${s})`);
        dense.dispose();
      }
      b.dispose();
      f.release();
    }
  });

  // Same seed -> same start sets; the device runs the twin's swap rule in f32. On this well-separated
  // planted matrix no two candidates tie within f32 rounding, so every selection must be identical and
  // objectives agree to 1e-4 relative.
  it(
    "dense and factor device backends take the CPU twin's decisions (same selections, objectives within " +
      "1e-4)",
    async () => {
      const rt = await testRuntime();
      const seed = testSeed("search gpu vs cpu");
      const p = planted(seed, 300, 16, 20);
      const opts = { sizes: [10, 20, 40], restarts: 4, seed };
      const want = await maxSumSearch(denseCpuBackend(p.A, p.n), opts);
      const f = Factors.upload(rt, p.U, p.V, p.n, p.r, 128);
      for (const backend of [denseGpuBackend(rt, p.A, p.n), factorBackend(rt, f)]) {
        const got = await maxSumSearch(backend, opts);
        let same = 0;
        got.solutions.forEach((sol, i) => {
          const w = want.solutions[i];
          if (sol.members.join() === w.members.join()) same++;
          expect(Math.abs(sol.objective - w.objective)).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(w.objective)));
        });
        console.log(`[${backend.name}] ${same}/${got.solutions.length} selections identical to the float64 twin`);
        expect(same).toBe(got.solutions.length);
        backend.dispose();
      }
      f.release();
    },
  );

  it(
    "factor backend ranks a planted block on top (n = 300, rank 16, block 20): score top-20 precision >= 0.95",
    async () => {
      const rt = await testRuntime();
      const seed = testSeed("search planted factor");
      const p = planted(seed);
      const f = Factors.upload(rt, p.U, p.V, p.n, p.r);
      const b = factorBackend(rt, f);
      const res = await maxSumSearch(b, { sizes: [10, 20, 40], restarts: 10, seed });
      // The scores' ranking (the CPU twin's planted test: 100 of 100 seeds at precision 1).
      const prec = precision(topK(res.scores, 20), p.block);
      console.log(`[planted factor] score top-20 precision = ${prec}`);
      expect(prec).toBeGreaterThanOrEqual(0.95);
      b.dispose();
      f.release();
    },
  );

  it("spectral score on the factors matches the dense twin and ranks the planted block on top", async () => {
    const rt = await testRuntime();
    const seed = testSeed("spectral factor");
    const p = planted(seed);
    const f = Factors.upload(rt, p.U, p.V, p.n, p.r, 100);
    const got = await spectralFactors(rt, f, { seed });
    const want = spectralDense(p.A, p.n, { seed });
    console.log(
      `[spectral factor] eigenvalue ${got.eigenvalue.toFixed(3)} (dense ${
        want.eigenvalue.toFixed(3)
      }), ${got.iterations} steps`,
    );
    expect(Math.abs(got.eigenvalue - want.eigenvalue)).toBeLessThan(1e-3 * Math.abs(want.eigenvalue));
    assertClose(got.vector, want.vector, { rtol: 1e-3, scale: 0.1 }, "eigenvector");
    expect(precision(topK(got.scores, 20), p.block)).toBeGreaterThanOrEqual(0.9);
    f.release();
  });
});
