import { describe, it } from "vitest";
import { sgdOp, sgdStep, sgdStepRef } from "../../kernels/sgd.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

const RTOL = 1e-6; // three steps of O(1) values, a few f32 roundings each, against max(|want|, 1)

describe("sgd", () => {
  for (const v of sgdOp.variants) {
    it(`${v.name}: three steps match the float64 twin, plain and Nesterov`, async () => {
      sgdOp.use(v.name);
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`sgd ${v.name}`));
      for (const nesterov of [false, true]) {
        const n = randInt(rand, 1, 3000);
        const h = { lr: 0.05 + rand() * 0.1, momentum: 0.9, weightDecay: rand() * 1e-3, nesterov };
        const p0 = randomF32(rand, n);
        const p = rt.upload(p0.slice(), [n]);
        const vel = rt.upload(new Float32Array(n), [n]);
        const pRef = Float64Array.from(p0);
        const vRef = new Float64Array(n);
        for (let s = 0; s < 3; s++) {
          const g = randomF32(rand, n);
          const gt = rt.upload(g, [n]);
          sgdStep(rt, p, gt, vel, h);
          sgdStepRef(pRef, g, vRef, h);
        }
        const [pg, vg] = await rt.readMany([p, vel]);
        assertClose(pg, pRef, { rtol: RTOL }, `param (nesterov=${nesterov})`);
        assertClose(vg, vRef, { rtol: RTOL }, `velocity (nesterov=${nesterov})`);
      }
    });
  }
});
