import { describe, expect, it } from "vitest";
import { accumulateRows, blockCopy, generateR, projectDense, projectDenseRef, projectionMatrixRef, projectPlan } from "../../kernels/project.ts";
import { fill } from "../../kernels/fill.ts";
import { assertClose, assertEqualArrays } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randomF32, testSeed } from "../support/rng.ts";

// f32 sums of up to a few hundred O(1) terms with +-1 weights: relative to max(|want|, 1), 1e-5 holds.
const RTOL = 1e-5;

describe("dense projection kernel", () => {
  it("the explicit R is bit-identical to the TypeScript twin", async () => {
    const rt = await testRuntime();
    const seed = testSeed("generateR");
    const o = { seed, model: 3, pOffset: 1234567 };
    const R = generateR(rt, 37, 20, o);
    assertEqualArrays(await rt.read(R), Float32Array.from(projectionMatrixRef(37, 20, o)), "R");
    R.release();
  });

  for (const [N, P, k, target] of [[5, 37, 12, 1], [67, 301, 132, 64], [3, 1000, 64, 256]] as const) {
    it(`phi += G R / sqrt(k), N=${N} P=${P} k=${k} (${projectPlan(N, P, k, target).S} splits)`, async () => {
      const rt = await testRuntime();
      const seed = testSeed(`project ${N}x${P}x${k}`);
      const rand = mulberry32(seed);
      const g = randomF32(rand, N * P);
      const G = rt.upload(g, [N, P]);
      const rows = N + 3;
      const phi = fill(rt, rt.empty([rows, k]), 0.5);
      const o = { seed, model: 1, pOffset: 777, targetWorkgroups: target };
      projectDense(rt, G, phi, 2, o);
      const want = new Float64Array(rows * k).fill(0.5);
      projectDenseRef(g, N, P, k, o).forEach((v, i) => (want[2 * k + i] += v));
      assertClose(await rt.read(phi), want, { rtol: RTOL }, "phi");
      [G, phi].forEach((t) => t.release());
    });
  }

  it("accumulateRows sums the splits with a scale", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("accumulateRows"));
    const p = randomF32(rand, 3 * 5 * 8);
    const partial = rt.upload(p, [3, 5, 8]);
    const phi = fill(rt, rt.empty([7, 8]), 1);
    accumulateRows(rt, partial, phi, 1, 0.5);
    const want = new Float64Array(56).fill(1);
    for (let s = 0; s < 3; s++) for (let i = 0; i < 40; i++) want[8 + i] += 0.5 * p[s * 40 + i];
    assertClose(await rt.read(phi), want, { rtol: 1e-6 }, "phi");
    [partial, phi].forEach((t) => t.release());
  });

  it("blockCopy copies a strided block with row weights, and accumulates", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("blockCopy"));
    const s = randomF32(rand, 9 * 11);
    const w = randomF32(rand, 9);
    const src = rt.upload(s, [9, 11]);
    const wt = rt.upload(w, [9]);
    const dst = fill(rt, rt.empty([6, 13]), 2);
    blockCopy(rt, src, dst, { rows: 4, cols: 5, sr0: 3, sc0: 2, sld: 11, dr0: 1, dc0: 7, dld: 13, alpha: -2, w: wt, accumulate: true });
    const want = new Float64Array(6 * 13).fill(2);
    for (let r = 0; r < 4; r++) for (let c = 0; c < 5; c++) want[(1 + r) * 13 + 7 + c] += -2 * w[3 + r] * s[(3 + r) * 11 + 2 + c];
    assertClose(await rt.read(dst), want, { rtol: 1e-6 }, "dst");
    expect(() => blockCopy(rt, src, dst, { rows: 7, cols: 5, sld: 11, dld: 13 })).toThrow("destination");
    [src, wt, dst].forEach((t) => t.release());
  });
});
