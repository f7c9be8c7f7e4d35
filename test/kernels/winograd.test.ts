import { describe, expect, it } from "vitest";
import { conv2dBackwardRef, conv2dRef, type ConvGeom, type ConvShapes } from "../../kernels/conv2d.ts";
import { winogradApplies, winogradBackward, winogradForward, winogradOp } from "../../kernels/winograd.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

// GPU vs the float64 convolution, with conv2d.test.ts's tolerance: each output is a dot product of K terms in
// [-1, 1) (K = 9C forward, 9O for dx, N*H*W for dw), errors measured against max(|want|, sqrt(K)). The
// transforms add a few f32 roundings (at most 4 terms per step, weights 1 or 1/2): measured worst 7e-7 over 4
// seeds at the small CNN's sizes. A wrong tap, sign or tile edge gives errors of order 1.
const RTOL = 1e-5;
const GEOM: ConvGeom = { kh: 3, kw: 3, stride: 1, pad: 1 };

describe("winograd", () => {
  for (const v of winogradOp.variants) {
    it(`${v.name}: forward, dw and dx match the float64 convolution`, async () => {
      winogradOp.use(v.name);
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`winograd ${v.name}`));
      const shapesList: ConvShapes[] = [
        // one group of 4 tiles per row: both the left and the right image edge in every invocation
        { C: 3, N: 2, H: 2, W: 8, O: 5 },
        { C: 4, N: 3, H: 6, W: 16, O: 8 },
        // channels and tiles of the small CNN's second block, fewer images
        { C: 32, N: 2, H: 16, W: 16, O: 64 },
        {
          C: randInt(rand, 1, 9),
          N: randInt(rand, 1, 4),
          H: 2 * randInt(rand, 1, 6),
          W: 8 * randInt(rand, 1, 4),
          O: randInt(rand, 1, 9),
        },
      ];
      for (const s of shapesList) {
        const what = `[C=${s.C} N=${s.N} H=${s.H} W=${s.W} O=${s.O}]`;
        expect(winogradApplies(s, GEOM), what).toBe(true);
        const xData = randomF32(rand, s.C * s.N * s.H * s.W);
        const wData = randomF32(rand, s.O * s.C * 9);
        const dyData = randomF32(rand, s.O * s.N * s.H * s.W);
        const x = rt.upload(xData, [s.C, s.N, s.H, s.W]);
        const w = rt.upload(wData, [s.O, s.C * 9]);
        const dy = rt.upload(dyData, [s.O, s.N, s.H, s.W]);
        const plain = winogradForward(rt, x, w);
        const kept = winogradForward(rt, x, w, true);
        expect(plain.v).toBe(undefined);
        const grads = winogradBackward(rt, kept.v!, w, dy);
        const noDx = winogradBackward(rt, kept.v!, w, dy, false);
        expect(noDx.dx).toBe(undefined);
        const [y, yKept, dw, dx, dw2] = await rt.readMany([plain.y, kept.y, grads.dw, grads.dx!, noDx.dw]);
        const wantY = conv2dRef(xData, wData, undefined, s, GEOM);
        assertClose(y, wantY, { rtol: RTOL, scale: Math.sqrt(9 * s.C) }, `forward ${what}`);
        assertClose(yKept, wantY, { rtol: RTOL, scale: Math.sqrt(9 * s.C) }, `forward, V kept ${what}`);
        const want = conv2dBackwardRef(xData, wData, dyData, s, GEOM);
        const P = s.N * s.H * s.W;
        assertClose(dw, want.dw, { rtol: RTOL, scale: Math.sqrt(P) }, `dw ${what}`);
        assertClose(dw2, want.dw, { rtol: RTOL, scale: Math.sqrt(P) }, `dw, no dx ${what}`);
        assertClose(dx, want.dx, { rtol: RTOL, scale: Math.sqrt(9 * s.O) }, `dx ${what}`);
        [x, w, dy, plain.y, kept.y, kept.v!, grads.dw, grads.dx!, noDx.dw].forEach((t) => t.release());
      }
    });
  }

  it("applies to 3x3 / stride 1 / pad 1 with H even and W a multiple of 8, and refuses other inputs", async () => {
    const s = { C: 2, N: 1, H: 4, W: 8 };
    expect(winogradApplies(s, GEOM)).toBe(true);
    expect(winogradApplies({ ...s, H: 5 }, GEOM)).toBe(false);
    expect(winogradApplies({ ...s, W: 12 }, GEOM)).toBe(false);
    expect(winogradApplies(s, { ...GEOM, stride: 2 })).toBe(false);
    expect(winogradApplies(s, { ...GEOM, pad: 0 })).toBe(false);
    expect(winogradApplies(s, { kh: 1, kw: 1, stride: 1, pad: 1 })).toBe(false);
    const rt = await testRuntime();
    const x = rt.upload(new Float32Array(2 * 4 * 12), [2, 1, 4, 12]);
    const w = rt.upload(new Float32Array(3 * 18), [3, 18]);
    expect(() => winogradForward(rt, x, w)).toThrow(/W a multiple of 8/);
    x.release();
    w.release();
  });
});
