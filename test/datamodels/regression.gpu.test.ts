import { describe, expect, it } from "vitest";
import { fitDatamodels, planFit, type RegressionData } from "../../src/datamodels/regression.ts";
import { fitDatamodelsRef, gramRef, solveLassoRef, solveRidgeRef } from "../../src/datamodels/regression-ref.ts";
import { syntheticRegression } from "./synthetic.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { testSeed } from "../support/rng.ts";

/** Pearson correlation of the off-diagonal entries (the diagonal is zeroed in both). */
function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let [sa, sb, saa, sbb, sab] = [0, 0, 0, 0, 0];
  const len = a.length;
  for (let i = 0; i < len; i++) {
    sa += a[i];
    sb += b[i];
    saa += a[i] * a[i];
    sbb += b[i] * b[i];
    sab += a[i] * b[i];
  }
  const cov = sab - (sa * sb) / len;
  return cov / Math.sqrt((saa - (sa * sa) / len) * (sbb - (sb * sb) / len));
}

/** Counts calls and the largest batch, so the test sees that the solver streams. */
function watched(data: RegressionData) {
  const seen = { calls: 0, maxCount: 0 };
  return {
    seen,
    data: {
      n: data.n,
      models: data.models,
      rows: (s: number, c: number) => (seen.calls++, (seen.maxCount = Math.max(seen.maxCount, c)), data.rows(s, c)),
    } as RegressionData,
  };
}

describe("datamodels regression", () => {
  // n = 48 examples, 700 models (630 to fit, 70 held out), 4 true off-diagonal effects per target of
  // size 0.5-1.5, a self effect of 2, noise sd 0.1. With masks at alpha = 0.5 both penalties should
  // find the truth: correlation > 0.9 over all off-diagonal entries, and held-out MSE near the noise
  // variance (0.01; the bound 0.03 leaves room for shrinkage).
  for (const penalty of ["l2", "l1"] as const) {
    it(`${penalty}: recovers a sparse linear ground truth, lambda chosen per target on held-out models`, async () => {
      const rt = await testRuntime();
      const seed = testSeed(`regression recovery ${penalty}`);
      const n = 48;
      const syn = syntheticRegression({ n, models: 700, support: 4, noise: 0.1, seed });
      const { seen, data } = watched(syn);
      const fit = await fitDatamodels(rt, data, { penalty, iterations: 120, batchRows: 64, seed });
      expect(seen.maxCount <= 64).toBe(true);
      const W = await rt.read(fit.weights);
      const truth = syn.denseTruth();
      const corr = correlation(W, truth);
      console.log(
        `${penalty}: correlation with the truth ${corr.toFixed(4)}, mean held-out MSE ${
          (fit.heldOutMse.reduce((a, b) => a + b) / n).toFixed(4)
        }`,
      );
      expect(corr).toBeGreaterThan(0.9);
      for (let i = 0; i < n; i++) {
        expect(W[i * n + i]).toBe(0);
        expect(fit.heldOutMse[i]).toBeLessThan(0.03);
        expect(fit.lambda[i]).toBeGreaterThan(0);
      }
      // Support: each target's 4 largest |weights| are its true effects (allow 5% misses overall).
      let hits = 0;
      for (let i = 0; i < n; i++) {
        const row = Array.from(W.subarray(i * n, (i + 1) * n), (w, j) => ({ j, a: Math.abs(w) }));
        row.sort((x, y) => y.a - x.a);
        for (const { j } of row.slice(0, 4)) if (truth[i * n + j] !== 0) hits++;
      }
      expect(hits / (4 * n)).toBeGreaterThan(0.95);
      if (penalty === "l1") {
        // Lasso sets most of the rest exactly to zero.
        let zeros = 0;
        for (let i = 0; i < n * n; i++) if (truth[i] === 0 && W[i] === 0) zeros++;
        const offSupport = n * n - n - 4 * n;
        console.log(`l1: ${zeros}/${offSupport} off-support weights exactly 0`);
        expect(zeros / offSupport).toBeGreaterThan(0.5);
      }
      // Bias of the full model (self weight included): near the truth.
      for (let i = 0; i < n; i++) expect(Math.abs(fit.bias[i] - syn.truth.bias[i])).toBeLessThan(0.25);
      fit.weights.release();
    });

    it(
      `${penalty}: at one lambda, converges to the exact float64 solution (ridge: CG and APG); the float64 twin ` +
        `follows the same iterates`,
      async () => {
        const rt = await testRuntime();
        const seed = testSeed(`regression exact ${penalty}`);
        const n = 24;
        const data = syntheticRegression({ n, models: 300, support: 3, noise: 0.3, seed });
        const ratio = 0.05;
        const opts = { penalty, lambdas: [ratio], iterations: 600, tolerance: 0, batchRows: 40, seed };
        const fit = await fitDatamodels(rt, data, opts);
        const W = await rt.read(fit.weights);
        const plan = planFit(data, opts);
        const { H, R } = await gramRef(data, plan);
        const lam = fit.lambda;
        const exact = penalty === "l2" ? solveRidgeRef(H, R, n, lam[0]) : solveLassoRef(H, R, n, lam);
        const want = new Float64Array(n * n);
        for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) want[i * n + j] = i === j ? 0 : exact[j * n + i];
        const scale = Math.max(...want.map(Math.abs));
        const err = assertClose(W, want, { rtol: 2e-3, scale }, `${penalty} weights vs exact solve`);
        console.log(
          `${penalty}: max error vs exact ${err.toExponential(2)} (relative to the largest weight ${scale.toFixed(3)})`,
        );
        if (penalty === "l2") {
          // The other ridge solver (accelerated proximal gradient) reaches the same solution.
          const apg = await fitDatamodels(rt, data, { ...opts, ridgeSolver: "apg" });
          assertClose(await rt.read(apg.weights), want, { rtol: 2e-3, scale }, "l2 (apg) weights vs exact solve");
          apg.weights.release();
        }
        // The float64 twin of the whole fit (same path, steps, momentum), a short run with 3 path points.
        const short = { penalty, lambdas: [1, 0.3, 0.05], iterations: 25, tolerance: 0, batchRows: 40, seed };
        const [g, c] = [await fitDatamodels(rt, data, short), await fitDatamodelsRef(data, short)];
        const gw = await rt.read(g.weights);
        assertClose(
          gw,
          c.weights,
          { rtol: 1e-3, scale: Math.max(...c.weights.map(Math.abs)) },
          `${penalty} weights vs float64 twin`,
        );
        assertClose(g.bias, c.bias, { rtol: 1e-3 }, `${penalty} bias vs float64 twin`);
        assertClose(g.heldOutMse, c.heldOutMse, { rtol: 1e-3, scale: 0.01 }, `${penalty} held-out MSE vs float64 twin`);
        fit.weights.release();
        g.weights.release();
      },
    );
  }

  it("l1: recovers the sparse truth from fewer models than examples (90 fitted, n = 96)", async () => {
    const rt = await testRuntime();
    const seed = testSeed("regression l1 m < n");
    const n = 96;
    const syn = syntheticRegression({ n, models: 100, support: 3, noise: 0.1, seed });
    const fit = await fitDatamodels(rt, syn, { penalty: "l1", iterations: 150, seed });
    const corr = correlation(await rt.read(fit.weights), syn.denseTruth());
    console.log(`l1, m < n: correlation ${corr.toFixed(4)}, iterations per path point ${fit.pathIterations}`);
    expect(corr).toBeGreaterThan(0.9);
    fit.weights.release();
  });

  it("re-streaming the held-out models gives the cached result; bad input is refused", async () => {
    const rt = await testRuntime();
    const seed = testSeed("regression held-out streaming");
    const data = syntheticRegression({ n: 20, models: 120, seed });
    const a = await fitDatamodels(rt, data, { iterations: 10, batchRows: 8, heldOut: 30, seed });
    const b = await fitDatamodels(rt, data, { iterations: 10, batchRows: 8, heldOut: 30, seed, heldOutCacheBytes: 0 });
    const [wa, wb] = await rt.readMany([a.weights, b.weights]);
    assertClose(wb, wa, { rtol: 0 }, "weights");
    assertClose(b.heldOutMse, a.heldOutMse, { rtol: 0 }, "held-out MSE");
    a.weights.release();
    b.weights.release();
    await expect(fitDatamodels(rt, data, { heldOut: 119 })).rejects.toThrow(/heldOut/);
    await expect(fitDatamodels(rt, data, { lambdas: [1, -1] })).rejects.toThrow(/lambdas/);
    const short = {
      ...data,
      rows: async (s: number, c: number) => ({ ...(await data.rows(s, c)), Y: new Float32Array(1) }),
    };
    await expect(fitDatamodels(rt, short, {})).rejects.toThrow(/margin values/);
    const nan = {
      ...data,
      rows: async (s: number, c: number) => {
        const b = await data.rows(s, c);
        if (s + c > 50) b.Y[b.Y.length - 1] = NaN;
        return b;
      },
    };
    await expect(fitDatamodels(rt, nan, { batchRows: 8 })).rejects.toThrow(/is NaN/);
  });
});
