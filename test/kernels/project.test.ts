import { describe, it } from "vitest";
import {
  accumulateRows,
  generateR,
  projectDense,
  projectDenseRef,
  projectionMatrixRef,
  projectPlan,
} from "../../kernels/project.ts";
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
});
