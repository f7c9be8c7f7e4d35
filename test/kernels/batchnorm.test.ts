import { describe, expect, it } from "vitest";
import * as bn from "../../kernels/batchnorm.ts";
import { assertClose } from "../support/check.ts";
import { dot, fdCheck } from "../support/fd.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

// Inputs sit on an offset (x in [2, 4)) so an unshifted one-pass E[x^2] - E[x]^2 variance would lose digits
// (and fails here); shifted by a sample of the row, f32 errors of the statistics stay ~1e-6 of max(|want|, 1).
// y and dx scale with gamma * invstd (and rounding x - mean by ulp(x) moves them by that factor times
// ulp(x) * invstd), so they are measured against max(|want|, S), S = max(1, max_c gamma_c invstd_c), on
// channels whose std is at least 0.05 (see wellSpread). Channel sums (dgamma, dbeta) of L terms are measured
// against max(|want|, sqrt(L)).
const RTOL = 1e-5;
// Finite differences of the float64 twins, central, h = 1e-6: truncation ~h^2 and rounding ~1e-16/h of
// the O(10) loss stay under 1e-5 of max(|analytic|, 1e-3).
const FD_H = 1e-6;
const FD_RTOL = 1e-5;

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/**
 * x in [2, 4), redrawn per channel until its std is at least 0.05. Normalising amplifies the ulp(x)
 * rounding of x - mean by invstd (and dx by invstd^2): a channel of two near-equal values (L = 2) is
 * ill-conditioned for any f32 implementation, which is not what these tests measure.
 */
function wellSpread(rand: () => number, C: number, L: number): Float32Array {
  const x = new Float32Array(C * L);
  for (let c = 0; c < C; c++) {
    for (;;) {
      const row = randomF32(rand, L, 2, 4);
      const mean = row.reduce((a, b) => a + b, 0) / L;
      if (Math.sqrt(row.reduce((a, b) => a + (b - mean) ** 2, 0) / L) >= 0.05) {
        x.set(row, c * L);
        break;
      }
    }
  }
  return x;
}

describe("batchnorm", () => {
  for (const v of bn.batchNormOp.variants) {
    it(`${v.name}: training forward, running stats, eval forward and backward match the float64 twins`, async () => {
      bn.batchNormOp.use(v.name);
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`batchnorm ${v.name}`));
      // [2, 3, 40, 30]: rows longer than one eval workgroup's span (256 invocations x 8 elements).
      const shapes = [[3, 2, 7, 5], [2, 4, 16, 9], [4, 2, 1, 1], [2, 3, 40, 30], [
        randInt(rand, 1, 5),
        randInt(rand, 1, 4),
        randInt(rand, 1, 9),
        randInt(rand, 2, 9),
      ]];
      for (const shape of shapes) {
        const C = shape[0];
        const L = size(shape) / C;
        const what = `[${shape}]`;
        const xData = wellSpread(rand, C, L);
        const gData = randomF32(rand, C, 0.5, 1.5);
        const bData = randomF32(rand, C);
        const rmData = randomF32(rand, C);
        const rvData = randomF32(rand, C, 0.5, 1.5);
        const dyData = randomF32(rand, size(shape));
        const x = rt.upload(xData, shape);
        const gamma = rt.upload(gData, [C]);
        const beta = rt.upload(bData, [C]);
        const dy = rt.upload(dyData, shape);
        const state = { runningMean: rt.upload(rmData, [C]), runningVar: rt.upload(rvData, [C]) };

        const fwd = bn.batchNormTrain(rt, x, gamma, beta, state);
        const yEval = bn.batchNormEval(rt, x, gamma, beta, state); // after the update: uses the new running stats
        const grads = bn.batchNormBackward(rt, x, dy, gamma, beta, fwd);
        const [y, stats, rm, rv, ye, dx, dgamma, dbeta] = await rt.readMany([
          fwd.y,
          fwd.stats,
          state.runningMean,
          state.runningVar,
          yEval,
          grads.dx,
          grads.dgamma,
          grads.dbeta,
        ]);

        const want = bn.batchNormTrainRef(xData, gData, bData, rmData, rvData, C, L);
        const S = Math.max(1, ...Array.from(gData, (g, c) => g * want.invstd[c]));
        assertClose(y, want.y, { rtol: RTOL, scale: S }, `train y ${what}`);
        assertClose(stats.subarray(0, C), want.mean, { rtol: RTOL, scale: 1 }, `saved mean ${what}`);
        assertClose(stats.subarray(C), want.invstd, { rtol: RTOL, scale: 1 }, `saved invstd ${what}`);
        assertClose(rm, want.runningMean, { rtol: RTOL, scale: 1 }, `running mean ${what}`);
        assertClose(rv, want.runningVar, { rtol: RTOL, scale: 1 }, `running var ${what}`);
        const wantEval = bn.batchNormEvalRef(xData, gData, bData, want.runningMean, want.runningVar, C, L);
        assertClose(ye, wantEval, { rtol: RTOL, scale: 1 }, `eval y ${what}`);
        const wantGrad = bn.batchNormBackwardRef(xData, dyData, gData, C, L);
        assertClose(dx, wantGrad.dx, { rtol: RTOL, scale: S }, `dx ${what}`);
        assertClose(dgamma, wantGrad.dgamma, { rtol: RTOL, scale: Math.sqrt(L) }, `dgamma ${what}`);
        assertClose(dbeta, wantGrad.dbeta, { rtol: RTOL, scale: Math.sqrt(L) }, `dbeta ${what}`);
        [
          x,
          gamma,
          beta,
          dy,
          state.runningMean,
          state.runningVar,
          fwd.y,
          fwd.stats,
          yEval,
          grads.dx,
          grads.dgamma,
          grads.dbeta,
        ].forEach((t) => t.release());
      }
    });
  }

  it("a fused relu clamps the train and eval outputs, and the backward masks dy where they were clamped", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("batchnorm relu"));
    for (const shape of [[3, 2, 7, 5], [2, 3, 40, 30]]) {
      const C = shape[0];
      const L = size(shape) / C;
      const what = `[${shape}]`;
      const xData = wellSpread(rand, C, L);
      const gData = randomF32(rand, C, 0.5, 1.5);
      const bData = randomF32(rand, C, -0.5, 0.5);
      const rmData = randomF32(rand, C);
      const rvData = randomF32(rand, C, 0.5, 1.5);
      const dyData = randomF32(rand, size(shape));
      const gamma = rt.upload(gData, [C]);
      const beta = rt.upload(bData, [C]);
      const x = rt.upload(xData, shape);
      const state = { runningMean: rt.upload(rmData, [C]), runningVar: rt.upload(rvData, [C]) };
      const fwd = bn.batchNormTrain(rt, x, gamma, beta, state, { relu: true });
      const yEval = bn.batchNormEval(rt, x, gamma, beta, state, { relu: true });
      const grads = bn.batchNormBackward(rt, x, rt.upload(dyData, shape), gamma, beta, fwd, { relu: true });
      const [y, ye, dx, dgamma, dbeta] = await rt.readMany([fwd.y, yEval, grads.dx, grads.dgamma, grads.dbeta]);

      const want = bn.batchNormTrainRef(xData, gData, bData, rmData, rvData, C, L);
      const clamped = want.y.filter((v) => v <= 0).length;
      expect(clamped, `some outputs clamped, some not ${what}`).toBeGreaterThan(0);
      expect(clamped).toBeLessThan(want.y.length);
      const S = Math.max(1, ...Array.from(gData, (g, c) => g * want.invstd[c]));
      assertClose(y, want.y.map((v) => Math.max(v, 0)), { rtol: RTOL, scale: S }, `train y ${what}`);
      const wantEval = bn.batchNormEvalRef(xData, gData, bData, want.runningMean, want.runningVar, C, L);
      assertClose(ye, wantEval.map((v) => Math.max(v, 0)), { rtol: RTOL, scale: 1 }, `eval y ${what}`);
      const masked = dyData.map((d, i) => (want.y[i] > 0 ? d : 0));
      const wantGrad = bn.batchNormBackwardRef(xData, masked, gData, C, L);
      assertClose(dx, wantGrad.dx, { rtol: RTOL, scale: S }, `dx ${what}`);
      assertClose(dgamma, wantGrad.dgamma, { rtol: RTOL, scale: Math.sqrt(L) }, `dgamma ${what}`);
      assertClose(dbeta, wantGrad.dbeta, { rtol: RTOL, scale: Math.sqrt(L) }, `dbeta ${what}`);
    }
  });

  it("train forward and backward with a fused 2x2 max pool match the twins of batch norm, relu and pool", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("batchnorm pool"));
    const shapes = [[3, 2, 4, 8], [2, 3, 6, 4], [
      randInt(rand, 1, 5),
      randInt(rand, 1, 4),
      2 * randInt(rand, 1, 6),
      4 * randInt(rand, 1, 5),
    ]];
    for (const shape of shapes) {
      for (const relu of [false, true]) {
        const C = shape[0];
        const L = size(shape) / C;
        const what = `[${shape}] relu ${relu}`;
        const xData = wellSpread(rand, C, L);
        const gData = randomF32(rand, C, 0.5, 1.5);
        const bData = randomF32(rand, C, -0.5, 0.5);
        const rmData = randomF32(rand, C);
        const rvData = randomF32(rand, C, 0.5, 1.5);
        const dyData = randomF32(rand, size(shape) / 4);
        const [x, gamma, beta] = [rt.upload(xData, shape), rt.upload(gData, [C]), rt.upload(bData, [C])];
        const state = { runningMean: rt.upload(rmData, [C]), runningVar: rt.upload(rvData, [C]) };
        const fwd = bn.batchNormTrain(rt, x, gamma, beta, state, { relu, pool: true });
        expect(fwd.y.shape).toEqual([shape[0], shape[1], shape[2] / 2, shape[3] / 2]);
        const grads = bn.batchNormBackward(rt, x, rt.upload(dyData, fwd.y.shape), gamma, beta, fwd, {
          relu,
          pool: true,
        });
        const [y, stats, rm, rv, dx, dgamma, dbeta] = await rt.readMany([
          fwd.y,
          fwd.stats,
          state.runningMean,
          state.runningVar,
          grads.dx,
          grads.dgamma,
          grads.dbeta,
        ]);
        const want = bn.batchNormTrainRef(xData, gData, bData, rmData, rvData, C, L);
        const S = Math.max(1, ...Array.from(gData, (g, c) => g * want.invstd[c]));
        assertClose(
          y,
          bn.batchNormTrainPooledRef(xData, shape, gData, bData, { relu }),
          { rtol: RTOL, scale: S },
          `y ${what}`,
        );
        assertClose(stats.subarray(0, C), want.mean, { rtol: RTOL, scale: 1 }, `saved mean ${what}`);
        assertClose(stats.subarray(C), want.invstd, { rtol: RTOL, scale: 1 }, `saved invstd ${what}`);
        assertClose(rm, want.runningMean, { rtol: RTOL, scale: 1 }, `running mean ${what}`);
        assertClose(rv, want.runningVar, { rtol: RTOL, scale: 1 }, `running var ${what}`);
        const wantGrad = bn.batchNormBackwardPooledRef(xData, shape, dyData, gData, bData, { relu });
        assertClose(dx, wantGrad.dx, { rtol: RTOL, scale: S }, `dx ${what}`);
        assertClose(dgamma, wantGrad.dgamma, { rtol: RTOL, scale: Math.sqrt(L) }, `dgamma ${what}`);
        assertClose(dbeta, wantGrad.dbeta, { rtol: RTOL, scale: Math.sqrt(L) }, `dbeta ${what}`);
      }
    }
    const one = rt.upload([1], [1]);
    const state = { runningMean: rt.upload([0], [1]), runningVar: rt.upload([1], [1]) };
    expect(() => bn.batchNormTrain(rt, rt.upload(new Float32Array(12), [1, 1, 3, 4]), one, one, state, { pool: true }))
      .toThrow(
        /H even/,
      );
  });

  it("the pooled backward twin matches finite differences of the pooled forward twin", () => {
    const rand = mulberry32(testSeed("batchnorm pool finite differences"));
    const shape = [2, 2, 4, 4];
    const C = 2;
    const x = Float64Array.from(randomF32(rand, size(shape), 2, 4));
    const gamma = Float64Array.from(randomF32(rand, C, 0.5, 1.5));
    const beta = Float64Array.from(randomF32(rand, C, -0.5, 0.5));
    const r = Float64Array.from(randomF32(rand, size(shape) / 4));
    for (const relu of [false, true]) {
      const loss = () => dot(r, bn.batchNormTrainPooledRef(x, shape, gamma, beta, { relu }));
      const an = bn.batchNormBackwardPooledRef(x, shape, r, gamma, beta, { relu });
      fdCheck(rand, loss, [["x", x, an.dx], ["gamma", gamma, an.dgamma], ["beta", beta, an.dbeta]], `relu ${relu}`, {
        h: FD_H,
        rtol: FD_RTOL,
      });
    }
  });

  it("running stats follow the momentum rule over several steps", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("batchnorm momentum"));
    const shape = [2, 3, 4, 5];
    const C = 2;
    const L = 60;
    const state = { runningMean: rt.upload([0, 0], [C]), runningVar: rt.upload([1, 1], [C]) };
    let rm: ArrayLike<number> = [0, 0];
    let rv: ArrayLike<number> = [1, 1];
    const ones = rt.upload([1, 1], [C]);
    const zeros = rt.upload([0, 0], [C]);
    for (let step = 0; step < 3; step++) {
      const xData = randomF32(rand, size(shape), -2, 5);
      const out = bn.batchNormTrain(rt, rt.upload(xData, shape), ones, zeros, state, { momentum: 0.3 });
      const want = bn.batchNormTrainRef(xData, [1, 1], [0, 0], rm, rv, C, L, { momentum: 0.3 });
      rm = want.runningMean;
      rv = want.runningVar;
      [out.y, out.stats].forEach((t) => t.release());
    }
    const [gm, gv] = await rt.readMany([state.runningMean, state.runningVar]);
    assertClose(gm, rm, { rtol: RTOL, scale: 1 }, "running mean");
    assertClose(gv, rv, { rtol: RTOL, scale: 1 }, "running var");
  });

  it("refuses training with one value per channel", async () => {
    const rt = await testRuntime();
    const one = rt.upload([1], [1]);
    const state = { runningMean: rt.upload([0], [1]), runningVar: rt.upload([1], [1]) };
    expect(() => bn.batchNormTrain(rt, rt.upload([1], [1, 1, 1, 1]), one, one, state)).toThrow(/more than one value/);
  });

  it("the backward twin matches finite differences of the forward twin", () => {
    const rand = mulberry32(testSeed("batchnorm finite differences"));
    for (const shape of [[3, 2, 7, 5], [2, 1, 1, 3]]) {
      const C = shape[0];
      const L = size(shape) / C;
      const x = Float64Array.from(randomF32(rand, size(shape), 2, 4));
      const gamma = Float64Array.from(randomF32(rand, C, 0.5, 1.5));
      const beta = Float64Array.from(randomF32(rand, C));
      const r = Float64Array.from(randomF32(rand, size(shape))); // loss = <r, y>, so dy = r
      const zero = new Float64Array(C);
      const loss = () => dot(r, bn.batchNormTrainRef(x, gamma, beta, zero, zero, C, L).y);
      const an = bn.batchNormBackwardRef(x, r, gamma, C, L);
      fdCheck(rand, loss, [["x", x, an.dx], ["gamma", gamma, an.dgamma], ["beta", beta, an.dbeta]], `[${shape}]`, {
        h: FD_H,
        rtol: FD_RTOL,
      });
    }
  });
});
