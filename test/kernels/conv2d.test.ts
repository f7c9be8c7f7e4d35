import { describe, expect, it } from "vitest";
import { batchNormEvalRef } from "../../kernels/batchnorm.ts";
import * as cv from "../../kernels/conv2d.ts";
import { maxPool2x2Ref } from "../../kernels/pool.ts";
import { transposeRef } from "../../kernels/transpose.ts";
import { assertClose, assertEqualArrays } from "../support/check.ts";
import { dot, fdCheck } from "../support/fd.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

// GPU vs float64 twin: every output is a dot product of at most K terms in [-1, 1) (K = C*kh*kw forward
// and for dx, N*OH*OW for dw and db); f32 accumulation error stays below ~sqrt(K) * 2^-23 * sqrt(K) in
// the worst case, so measured against max(|want|, sqrt(K)) it is well under 1e-5.
const RTOL = 1e-5;
// Finite differences of the float64 twins: conv is linear in x, w and b, so central differences with
// h = 1e-6 are exact up to rounding (~1e-10 relative); errors are measured against max(|analytic|, 1e-3).
const FD_H = 1e-6;
const FD_RTOL = 1e-5;

const GEOMS: cv.ConvGeom[] = [
  { kh: 3, kw: 3, stride: 1, pad: 1 },
  { kh: 3, kw: 3, stride: 2, pad: 1 },
  { kh: 3, kw: 3, stride: 1, pad: 0 },
  { kh: 3, kw: 3, stride: 2, pad: 0 },
  { kh: 1, kw: 1, stride: 1, pad: 0 },
  { kh: 1, kw: 1, stride: 2, pad: 0 },
  { kh: 1, kw: 1, stride: 1, pad: 1 },
];
const show = (g: cv.ConvGeom) => `${g.kh}x${g.kw}/s${g.stride}/p${g.pad}`;

describe("conv2d", () => {
  for (const v of cv.conv2dOp.variants) {
    it(`${v.name}: im2col, col2im, forward and backward match the float64 twins`, async () => {
      cv.conv2dOp.use(v.name);
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`conv2d ${v.name}`));
      const shapesList: cv.ConvShapes[] = [
        { C: 3, N: 2, H: 7, W: 5, O: 4 },
        // big enough that matmul copies transposed operands and takes its fast paths
        { C: 8, N: 3, H: 12, W: 10, O: 16 },
        // many output channels over a short N*OH*OW: dw as an NN GEMM on im2colT (few channels take split-K)
        { C: 4, N: 2, H: 8, W: 8, O: 256 },
        {
          C: randInt(rand, 1, 5),
          N: randInt(rand, 1, 3),
          H: randInt(rand, 3, 9),
          W: randInt(rand, 3, 9),
          O: randInt(rand, 1, 6),
        },
      ];
      for (const s of shapesList) {
        for (const g of GEOMS) {
          const what = `[C=${s.C} N=${s.N} H=${s.H} W=${s.W} O=${s.O}] ${show(g)}`;
          const { OH, OW } = cv.convOutSize(s.H, s.W, g);
          const K = s.C * g.kh * g.kw;
          const P = s.N * OH * OW;
          const xData = randomF32(rand, s.C * s.N * s.H * s.W);
          const wData = randomF32(rand, s.O * K);
          const bData = randomF32(rand, s.O);
          const dyData = randomF32(rand, s.O * P);
          const dcolsData = randomF32(rand, K * P);
          const x = rt.upload(xData, [s.C, s.N, s.H, s.W]);
          const w = rt.upload(wData, [s.O, K]);
          const b = rt.upload(bData, [s.O]);
          const dy = rt.upload(dyData, [s.O, s.N, OH, OW]);
          const dcols = rt.upload(dcolsData, [K, P]);

          const cols = cv.im2col(rt, x, g);
          const colsT = cv.im2colT(rt, x, g);
          const dx0 = cv.col2im(rt, dcols, x.shape, g);
          const y = cv.conv2dForward(rt, x, w, b, g);
          const yNoBias = cv.conv2dForward(rt, x, w, undefined, g);
          const grads = cv.conv2dBackward(rt, x, w, dy, g, { needDx: true });
          // The forward and the backward can share one im2col (the split-K dw reads it for few outputs).
          if (s.O < 256) expect(cv.dwReadsCols(s.O, K, P), `dw reads cols ${what}`).toBe(true);
          const keptY = cv.conv2dForward(rt, x, w, b, g, { cols });
          const noDx = cv.conv2dBackward(rt, x, w, dy, g, { needDx: false, needDb: false, cols });
          expect(noDx.dx).toBe(undefined);
          expect(noDx.db).toBe(undefined);
          expect(y.shape).toEqual([s.O, s.N, OH, OW]);
          expect(grads.dw.shape).toEqual([s.O, K]);
          const [gKeptY] = await rt.readMany([keptY]);
          const [gCols, gColsT, gDx0, gY, gYnb, gDw, gDb, gDx, gDw2] = await rt.readMany([
            cols,
            colsT,
            dx0,
            y,
            yNoBias,
            grads.dw,
            grads.db!,
            grads.dx!,
            noDx.dw,
          ]);

          const wantCols = cv.im2colRef(xData, s, g);
          assertEqualArrays(gCols, wantCols, `im2col ${what}`); // a copy: exact
          assertEqualArrays(gColsT, transposeRef(wantCols, 1, K, P), `im2colT ${what}`);
          assertClose(gDx0, cv.col2imRef(dcolsData, s, g), { rtol: RTOL, scale: 1 }, `col2im ${what}`);
          const sk = Math.sqrt(K);
          assertClose(gY, cv.conv2dRef(xData, wData, bData, s, g), { rtol: RTOL, scale: sk }, `forward ${what}`);
          assertClose(
            gYnb,
            cv.conv2dRef(xData, wData, undefined, s, g),
            { rtol: RTOL, scale: sk },
            `forward, no bias ${what}`,
          );
          assertClose(
            gKeptY,
            cv.conv2dRef(xData, wData, bData, s, g),
            { rtol: RTOL, scale: sk },
            `forward on given cols ${what}`,
          );
          const want = cv.conv2dBackwardRef(xData, wData, dyData, s, g);
          assertClose(gDw, want.dw, { rtol: RTOL, scale: Math.sqrt(P) }, `dw ${what}`);
          assertClose(gDw2, want.dw, { rtol: RTOL, scale: Math.sqrt(P) }, `dw (kept cols, needDx false) ${what}`);
          assertClose(gDb, want.db, { rtol: RTOL, scale: Math.sqrt(P) }, `db ${what}`);
          assertClose(gDx, want.dx, { rtol: RTOL, scale: Math.sqrt(s.O * g.kh * g.kw) }, `dx ${what}`);

          [x, w, b, dy, dcols, cols, colsT, dx0, y, yNoBias, grads.dw, grads.db!, grads.dx!, noDx.dw, keptY]
            .forEach((t) => t.release());
        }
      }
    });
  }

  // Where the GEMM on cols would take the exact register-blocked kernel, the forward reads x directly
  // (matmul-codegen.ts implicitConvShader): image borders, taps that straddle vec4s, several channels, K not a
  // multiple of 4.
  it("the forward without an im2col buffer (implicit GEMM, stride 1) matches the float64 twin", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("conv2d implicit"));
    const cases: [cv.ConvShapes, cv.ConvGeom][] = [
      [{ C: 4, N: 2, H: 8, W: 16, O: 32 }, { kh: 3, kw: 3, stride: 1, pad: 1 }],
      [{ C: 8, N: 1, H: 8, W: 32, O: 16 }, { kh: 3, kw: 3, stride: 1, pad: 1 }],
      [{ C: 4, N: 4, H: 8, W: 8, O: 64 }, { kh: 5, kw: 5, stride: 1, pad: 2 }],
      [{ C: 12, N: 2, H: 8, W: 8, O: 16 }, { kh: 1, kw: 1, stride: 1, pad: 0 }],
      // K = 27: W's rows padded to 28, the padded row of cols masked
      [{ C: 3, N: 2, H: 8, W: 32, O: 16 }, { kh: 3, kw: 3, stride: 1, pad: 1 }],
      [{ C: 5, N: 2, H: 4, W: 16, O: 32 }, { kh: 1, kw: 1, stride: 1, pad: 0 }],
      // odd OH: no pooled kernel
      [{ C: 8, N: 8, H: 7, W: 16, O: 16 }, { kh: 3, kw: 3, stride: 1, pad: 1 }],
    ];
    let pooledCases = 0;
    for (const [s, g] of cases) {
      const what = `[C=${s.C} N=${s.N} H=${s.H} W=${s.W} O=${s.O}] ${show(g)}`;
      const K = s.C * g.kh * g.kw;
      const xData = randomF32(rand, s.C * s.N * s.H * s.W);
      const wData = randomF32(rand, s.O * K);
      const bData = randomF32(rand, s.O);
      const x = rt.upload(xData, [s.C, s.N, s.H, s.W]);
      const w = rt.upload(wData, [s.O, K]);
      const b = rt.upload(bData, [s.O]);
      expect(cv.implicitTile(s, g), `implicit GEMM ${what}`).not.toBe(undefined);
      const y = cv.conv2dForward(rt, x, w, b, g);
      const want = cv.conv2dRef(xData, wData, bData, s, g);
      assertClose(await rt.read(y), want, { rtol: RTOL, scale: Math.sqrt(K) }, `implicit forward ${what}`);
      y.release();
      // An eval batch norm (and relu) folded in: the twins composed. (Not on the 64-row tile, whose unrolled
      // shader takes llvmpipe most of a minute to compile.)
      if (s.O >= 64) {
        [x, w, b].forEach((t) => t.release());
        continue;
      }
      const [gamma, beta, mean] = [1, 2, 3].map(() => randomF32(rand, s.O));
      const variance = Float32Array.from(randomF32(rand, s.O), (v) => 0.5 + Math.abs(v));
      const bnT = [gamma, beta, mean, variance].map((d) => rt.upload(d, [s.O]));
      const relu = s.C % 2 === 0;
      const bn = { gamma: bnT[0], beta: bnT[1], runningMean: bnT[2], runningVar: bnT[3], eps: 1e-5, relu };
      const yBn = cv.conv2dForward(rt, x, w, undefined, g, { bn });
      const conv = cv.conv2dRef(xData, wData, undefined, s, g);
      const L = conv.length / s.O;
      const wantBn = batchNormEvalRef(conv, gamma, beta, mean, variance, s.O, L).map((
        v,
      ) => (relu ? Math.max(v, 0) : v));
      // |gamma| / sqrt(var) <= 1.5 scales the conv's rounding.
      assertClose(await rt.read(yBn), wantBn, { rtol: RTOL, scale: 1.5 * Math.sqrt(K) }, `implicit + bn ${what}`);
      expect(() => cv.conv2dForward(rt, x, w, b, g, { bn })).toThrow(/folds only/);
      // And a 2x2 max pool of that, where the tile takes whole windows.
      const { OH, OW } = cv.convOutSize(s.H, s.W, g);
      if (cv.poolFolds(s, g)) {
        pooledCases++;
        const yPool = cv.conv2dForward(rt, x, w, undefined, g, { bn, pool: true });
        expect(yPool.shape).toEqual([s.O, s.N, OH / 2, OW / 2]);
        const wantPool = maxPool2x2Ref(wantBn, [s.O, s.N, OH, OW]).y;
        assertClose(await rt.read(yPool), wantPool, { rtol: RTOL, scale: 1.5 * Math.sqrt(K) }, `+ pool ${what}`);
        yPool.release();
      } else expect(() => cv.conv2dForward(rt, x, w, undefined, g, { bn, pool: true })).toThrow(/cannot pool/);
      [x, w, b, yBn, ...bnT].forEach((t) => t.release());
    }
    expect(pooledCases).toBe(5);
  });

  // At stride 1 the backward's dx is the implicit forward of dy with the taps mirrored and the channels swapped.
  it("dx as the forward of dy (flipTaps) matches the float64 twin", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("conv2d dx as forward"));
    const cases: [cv.ConvShapes, cv.ConvGeom][] = [
      [{ C: 16, N: 2, H: 8, W: 16, O: 32 }, { kh: 3, kw: 3, stride: 1, pad: 1 }],
      [{ C: 32, N: 1, H: 8, W: 32, O: 12 }, { kh: 3, kw: 3, stride: 1, pad: 1 }],
      [{ C: 16, N: 4, H: 8, W: 8, O: 8 }, { kh: 5, kw: 5, stride: 1, pad: 2 }],
      [{ C: 16, N: 2, H: 8, W: 8, O: 12 }, { kh: 1, kw: 1, stride: 1, pad: 0 }],
    ];
    for (const [s, g] of cases) {
      const what = `[C=${s.C} N=${s.N} H=${s.H} W=${s.W} O=${s.O}] ${show(g)}`;
      expect(cv.dxAsForward(s, g), `dx as a forward ${what}`).not.toBe(undefined);
      const K = s.C * g.kh * g.kw;
      const { OH, OW } = cv.convOutSize(s.H, s.W, g);
      const xData = randomF32(rand, s.C * s.N * s.H * s.W);
      const wData = randomF32(rand, s.O * K);
      const dyData = randomF32(rand, s.O * s.N * OH * OW);
      const [x, w] = [rt.upload(xData, [s.C, s.N, s.H, s.W]), rt.upload(wData, [s.O, K])];
      const dy = rt.upload(dyData, [s.O, s.N, OH, OW]);
      const wf = cv.flipTaps(rt, w, s.C, g);
      const grads = cv.conv2dBackward(rt, x, w, dy, g, { needDb: false });
      const [gWf, gDx] = await rt.readMany([wf, grads.dx!]);
      assertEqualArrays(gWf, cv.flipTapsRef(wData, s.O, s.C, g), `flipTaps ${what}`); // a copy: exact
      const want = cv.conv2dBackwardRef(xData, wData, dyData, s, g);
      assertClose(gDx, want.dx, { rtol: RTOL, scale: Math.sqrt(s.O * g.kh * g.kw) }, `dx ${what}`);
      [x, w, dy, wf, grads.dw, grads.dx!].forEach((t) => t.release());
    }
  });

  it("backward can reuse the forward's cols", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("conv2d reuse cols"));
    const s = { C: 2, N: 2, H: 6, W: 5, O: 3 };
    const g = { kh: 3, kw: 3, stride: 2, pad: 1 };
    const { OH, OW } = cv.convOutSize(s.H, s.W, g);
    const xData = randomF32(rand, s.C * s.N * s.H * s.W);
    const wData = randomF32(rand, s.O * s.C * 9);
    const dyData = randomF32(rand, s.O * s.N * OH * OW);
    const x = rt.upload(xData, [s.C, s.N, s.H, s.W]);
    const cols = cv.im2col(rt, x, g);
    const grads = cv.conv2dBackward(rt, x, rt.upload(wData, [s.O, s.C * 9]), rt.upload(dyData, [s.O, s.N, OH, OW]), g, {
      cols,
    });
    expect(cols.released).toBe(false);
    const want = cv.conv2dBackwardRef(xData, wData, dyData, s, g);
    const [dw, dx] = await rt.readMany([grads.dw, grads.dx!]);
    assertClose(dw, want.dw, { rtol: RTOL, scale: Math.sqrt(s.N * OH * OW) }, "dw");
    assertClose(dx, want.dx, { rtol: RTOL, scale: 3 }, "dx");
  });

  it("the backward twin matches finite differences of the forward twin", () => {
    const rand = mulberry32(testSeed("conv2d finite differences"));
    const s = { C: 3, N: 2, H: 7, W: 5, O: 4 };
    for (const g of GEOMS) {
      const { OH, OW } = cv.convOutSize(s.H, s.W, g);
      const x = Float64Array.from(randomF32(rand, s.C * s.N * s.H * s.W));
      const w = Float64Array.from(randomF32(rand, s.O * s.C * g.kh * g.kw));
      const b = Float64Array.from(randomF32(rand, s.O));
      const r = Float64Array.from(randomF32(rand, s.O * s.N * OH * OW)); // loss = <r, y>, so dy = r
      const loss = () => dot(r, cv.conv2dRef(x, w, b, s, g));
      const an = cv.conv2dBackwardRef(x, w, r, s, g);
      fdCheck(rand, loss, [["x", x, an.dx], ["w", w, an.dw], ["b", b, an.db]], show(g), {
        h: FD_H,
        rtol: FD_RTOL,
        probes: 6,
      });
    }
  });

  it("rejects geometry that does not fit and mismatched weights", async () => {
    const rt = await testRuntime();
    const x = rt.upload(new Float32Array(2 * 1 * 2 * 2), [2, 1, 2, 2]);
    expect(() => cv.im2col(rt, x, { kh: 3, kw: 3, stride: 1, pad: 0 })).toThrow(/does not fit/);
    expect(() => cv.im2col(rt, x, { kh: 3, kw: 3, stride: 0, pad: 1 })).toThrow(/bad geometry/);
    expect(() =>
      cv.conv2dForward(rt, x, rt.upload(new Float32Array(5), [1, 5]), undefined, { kh: 1, kw: 1, stride: 1, pad: 0 })
    ).toThrow(/weight/);
    x.release();
  });
});
