import { describe, expect, it } from "vitest";
import * as k from "../../kernels/regression.ts";
import { assertClose, assertEqualArrays } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

// A few f32 roundings of O(1) values: errors against max(|want|, 1) stay below 1e-5.
const RTOL = 1e-5;

describe("regression kernels", () => {
  for (const v of k.regressionOp.variants) {
    it(
      `${v.name}: rank1_update, prox_step (l1 and l2), col_sse, col_absmax (with and without the diagonal) match the ` +
        `float64 twins`,
      async () => {
        k.regressionOp.use(v.name);
        const rt = await testRuntime();
        const rand = mulberry32(testSeed(`regression kernels ${v.name}`));
        for (const [rows, cols] of [[1, 1], [7, 5], [33, 33], [randInt(rand, 1, 90), randInt(rand, 2, 300)]]) {
          const size = rows * cols;
          const matData = randomF32(rand, size);
          const uData = randomF32(rand, rows);
          const vData = randomF32(rand, cols);
          const [s, c] = [rand() * 2, rand() * 2 - 1];
          const mat = rt.upload(matData, [rows, cols]);
          const u = rt.upload(uData, [rows]);
          const vv = rt.upload(vData, [cols]);
          k.rank1Update(rt, mat, u, vv, s, c);
          assertClose(
            await rt.read(mat),
            k.rank1UpdateRef(matData, rows, cols, uData, vData, s, c),
            { rtol: RTOL },
            `rank1_update [${rows}, ${cols}]`,
          );

          // prox_step, with a lasso threshold that zeroes some entries and a ridge term.
          for (const l1 of [true, false]) {
            const hyData = randomF32(rand, size);
            const rData = randomF32(rand, size);
            const lamData = l1 ? randomF32(rand, cols, 0, 2) : new Float32Array(cols);
            const thetaData = randomF32(rand, size);
            const yData = randomF32(rand, size);
            const p = { step: 0.1 + rand(), ridge: l1 ? 0 : rand(), beta: rand() };
            const [hy, r, theta, y] = [hyData, rData, thetaData, yData].map((d) => rt.upload(d, [rows, cols]));
            const lam1 = rt.upload(lamData, [cols]);
            k.proxStep(rt, { hy, r, lam1, theta, y }, p);
            const want = k.proxStepRef(hyData, rData, lamData, thetaData, yData, cols, p);
            const [gotT, gotY, gotStep] = await rt.readMany([theta, y, hy]);
            assertClose(gotT, want.theta, { rtol: RTOL }, `prox_step theta (l1 ${l1})`);
            assertClose(gotY, want.y, { rtol: RTOL }, `prox_step y (l1 ${l1})`);
            assertClose(gotStep, want.step, { rtol: RTOL }, `prox_step |step| (l1 ${l1})`);
            // the threshold bit
            if (l1 && size > 20) expect(want.theta.filter((x) => x === 0).length).toBeGreaterThan(0);
            [hy, r, lam1, theta, y].forEach((t) => t.release());
          }

          // col_sse over the first `used` rows and n <= cols columns, accumulating onto a start value.
          const used = randInt(rand, 1, rows);
          const n = randInt(rand, 1, cols);
          const pData = randomF32(rand, size);
          const yhData = randomF32(rand, size);
          const biasData = randomF32(rand, n);
          const startData = randomF32(rand, n, 0, 1);
          const [p, yh, bias] = [
            rt.upload(pData, [rows, cols]),
            rt.upload(yhData, [rows, cols]),
            rt.upload(biasData, [n]),
          ];
          const out = rt.upload(startData, [n]);
          k.colSse(rt, p, yh, bias, out, { rows: used, n });
          assertClose(
            await rt.read(out),
            k.colSseRef(pData, yhData, biasData, used, cols, n, startData),
            { rtol: RTOL },
            "col_sse",
          );
          const am = k.colAbsMax(rt, p, n, { offDiagonal: true });
          assertEqualArrays(await rt.read(am), k.colAbsMaxRef(pData, rows, cols, n, true), "col_absmax off-diagonal");
          const all = k.colAbsMax(rt, p, n);
          assertEqualArrays(await rt.read(all), k.colAbsMaxRef(pData, rows, cols, n), "col_absmax");
          [mat, u, vv, p, yh, bias, out, am, all].forEach((t) => t.release());
        }
      },
    );

    it(
      `${v.name}: select_copy/select_update keep the better columns; finalize transposes, crops and zeroes the ` +
        `diagonal`,
      async () => {
        k.regressionOp.use(v.name);
        const rt = await testRuntime();
        const rand = mulberry32(testSeed(`regression select ${v.name}`));
        for (const [rows, cols, n] of [[3, 3, 3], [40, 40, 33], [randInt(rand, 2, 120), 0, 0]]) {
          const R = rows;
          const C = cols || R;
          const nn = n || randInt(rand, 1, Math.min(R, C));
          let sel: Record<"best" | "bestTheta" | "bestBias" | "choice", ArrayLike<number>> = {
            best: Float64Array.from({ length: nn }, (_, j) => (j % 5 === 0 ? Infinity : rand())),
            bestTheta: randomF32(rand, R * C),
            bestBias: randomF32(rand, nn),
            choice: Float64Array.from({ length: nn }, () => randInt(rand, 0, 3)),
          };
          const dev = {
            best: rt.upload(Float32Array.from(sel.best), [nn]),
            bestTheta: rt.upload(Float32Array.from(sel.bestTheta), [R, C]),
            bestBias: rt.upload(Float32Array.from(sel.bestBias), [nn]),
            choice: rt.upload(Float32Array.from(sel.choice), [nn]),
          };
          for (let index = 4; index < 7; index++) {
            const candData = randomF32(rand, R * C);
            const sseData = Float32Array.from({ length: nn }, (_, j) => (j % 7 === 3 ? NaN : rand()));
            const biasData = randomF32(rand, nn);
            const [cand, sse, bias] = [
              rt.upload(candData, [R, C]),
              rt.upload(sseData, [nn]),
              rt.upload(biasData, [nn]),
            ];
            k.selectBest(rt, cand, sse, bias, dev, index, nn);
            const next = k.selectBestRef(candData, C, sseData, biasData, sel, index, nn);
            const got = await rt.readMany([dev.best, dev.bestTheta, dev.bestBias, dev.choice]);
            assertEqualArrays(got[0], Float32Array.from(next.best), "best");
            assertEqualArrays(got[1], Float32Array.from(next.bestTheta), "bestTheta");
            assertEqualArrays(got[2], Float32Array.from(next.bestBias), "bestBias");
            assertEqualArrays(got[3], Float32Array.from(next.choice), "choice");
            sel = { ...next, bestTheta: Float32Array.from(next.bestTheta) };
            [cand, sse, bias].forEach((t) => t.release());
          }
          const w = k.finalizeWeights(rt, dev.bestTheta, nn);
          assertEqualArrays(
            await rt.read(w),
            Float32Array.from(k.finalizeWeightsRef(sel.bestTheta, C, nn)),
            "finalize",
          );
          [w, ...Object.values(dev)].forEach((t) => t.release());
        }
      },
    );

    it(
      `${v.name}: cg_init, col_dot, cg_step, cg_dir match the float64 twins (stopped columns and zero denominators ` +
        `take no step)`,
      async () => {
        k.regressionOp.use(v.name);
        const rt = await testRuntime();
        const rand = mulberry32(testSeed(`regression cg ${v.name}`));
        for (const [rows, cols] of [[1, 1], [9, 6], [randInt(rand, 1, 80), randInt(rand, 2, 200)]]) {
          const size = rows * cols;
          const n = randInt(rand, 1, cols);
          const ridge = rand();
          const [rData, hyData, thetaData, pdirData] = [0, 0, 0, 0].map(() => randomF32(rand, size));
          const rrData = randomF32(rand, cols, 0, 2);
          const papData = randomF32(rand, cols, -0.5, 2); // some <= 0
          const rrNewData = randomF32(rand, cols, 0, 2);
          const r0Data = randomF32(rand, cols, 0, 4);
          const floor2 = 0.25;
          rrData[0] = 0; // a stopped column
          const [r, hy] = [rt.upload(rData, [rows, cols]), rt.upload(hyData, [rows, cols])];
          const s = {
            theta: rt.upload(thetaData, [rows, cols]),
            res: rt.empty([rows, cols]),
            pdir: rt.empty([rows, cols]),
            r0: rt.upload(r0Data, [cols]),
            floor2,
          };
          k.cgInit(rt, s, r, hy, ridge);
          const res0 = k.cgInitRef(rData, hyData, thetaData, ridge);
          const [gotRes, gotP] = await rt.readMany([s.res, s.pdir]);
          assertClose(gotRes, res0, { rtol: RTOL }, "cg_init res");
          assertClose(gotP, res0, { rtol: RTOL }, "cg_init pdir");
          const dot = k.colDot(rt, s.res, hy, ridge, n);
          assertClose(
            await rt.read(dot),
            k.colDotRef(gotRes, hyData, ridge, rows, cols, n),
            { rtol: 1e-5, scale: rows },
            "col_dot",
          );
          // cg_step with a chosen direction, then cg_dir.
          s.pdir.release();
          s.pdir = rt.upload(pdirData, [rows, cols]);
          const [rr, pap, rrNew] = [
            rt.upload(rrData, [cols]),
            rt.upload(papData, [cols]),
            rt.upload(rrNewData, [cols]),
          ];
          k.cgStep(rt, s, hy, rr, pap, ridge);
          const step = k.cgStepRef(thetaData, gotRes, pdirData, hyData, rrData, papData, r0Data, floor2, ridge, cols);
          const [gotT, gotR] = await rt.readMany([s.theta, s.res]);
          assertClose(gotT, step.theta, { rtol: 1e-4 }, "cg_step theta");
          assertClose(gotR, step.res, { rtol: 1e-4 }, "cg_step res");
          k.cgDirection(rt, s, rr, rrNew);
          assertClose(
            await rt.read(s.pdir),
            k.cgDirectionRef(gotR, pdirData, rrData, rrNewData, r0Data, floor2, cols),
            {
              rtol: 1e-4,
            },
            "cg_dir",
          );
          [r, hy, s.theta, s.res, s.pdir, s.r0, dot, rr, pap, rrNew].forEach((t) => t.release());
        }
      },
    );
  }
});
