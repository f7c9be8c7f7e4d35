import { describe, expect, it } from "vitest";
import * as pl from "../../kernels/pool.ts";
import { assertClose, assertEqualArrays } from "../support/check.ts";
import { dot, fdCheck } from "../support/fd.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

// Max pools and their gradients only select and copy values: exact. The global average sums H*W
// values in [-1, 1) and divides: f32 error well under 1e-6 of max(|want|, 1).
const RTOL = 1e-6;
// Finite differences of the float64 twins. Pools are piecewise linear: away from ties (random inputs
// are ~1e-7 apart at worst in practice, ties within 2e-6 are rare) central differences are exact up to
// rounding; errors are measured against max(|analytic|, 1e-3).
const FD_H = 1e-6;
const FD_RTOL = 1e-5;

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

describe("pool", () => {
  for (const v of pl.poolOp.variants) {
    it(`${v.name}: 2x2 max pool and global avg/max pools, forward and backward, match the float64 twins`, async () => {
      pl.poolOp.use(v.name);
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`pool ${v.name}`));
      // [2, 3, 5, 8] and [3, 2, 8, 12]: W % 4 == 0 runs the paired kernels (the first with an odd row dropped).
      const shapes = [
        [3, 2, 7, 5],
        [2, 3, 4, 6],
        [1, 1, 2, 2],
        [1, 1, 3, 3],
        [4, 2, 1, 1],
        [2, 3, 5, 8],
        [3, 2, 8, 12],
        [
          randInt(rand, 1, 6),
          randInt(rand, 1, 4),
          randInt(rand, 2, 17),
          randInt(rand, 2, 17),
        ],
      ];
      for (const shape of shapes) {
        const [C, N, H, W] = shape;
        const what = `[${shape}]`;
        const xData = randomF32(rand, size(shape));
        const x = rt.upload(xData, shape);
        const gDy = randomF32(rand, C * N);
        const gdy = rt.upload(gDy, [C, N]);
        const avg = pl.globalAvgPool(rt, x);
        const avgDx = pl.globalAvgPoolBackward(rt, gdy, shape);
        const gmax = pl.globalMaxPool(rt, x);
        const gmaxDx = pl.globalMaxPoolBackward(rt, gdy, gmax.idx, shape);
        const outs = [avg, avgDx, gmax.y, gmax.idx, gmaxDx];
        let mp:
          | { y: ArrayLike<number>; idx: ArrayLike<number>; dx: ArrayLike<number>; dyData: Float32Array }
          | undefined;
        if (H >= 2 && W >= 2) {
          const m = pl.maxPool2x2(rt, x);
          expect(m.y.shape).toEqual([C, N, H >> 1, W >> 1]);
          const dyData = randomF32(rand, m.y.size);
          const dy = rt.upload(dyData, m.y.shape);
          const dx = pl.maxPool2x2Backward(rt, dy, m.idx, shape);
          const [y, idx, gdx] = await rt.readMany([m.y, m.idx, dx]);
          mp = { y, idx, dx: gdx, dyData };
          [m.y, m.idx, dy, dx].forEach((t) => t.release());
        } else {
          expect(() => pl.maxPool2x2(rt, x)).toThrow(/no 2x2 window/);
        }
        const [gAvg, gAvgDx, gMax, gMaxIdx, gMaxDx] = await rt.readMany(outs);

        if (mp) {
          const want = pl.maxPool2x2Ref(xData, shape);
          assertEqualArrays(mp.y, want.y, `maxpool y ${what}`);
          assertEqualArrays(mp.idx, want.idx, `maxpool idx ${what}`);
          assertEqualArrays(mp.dx, pl.maxPool2x2BackwardRef(xData, mp.dyData, shape), `maxpool dx ${what}`);
        }
        assertClose(gAvg, pl.globalAvgPoolRef(xData, shape), { rtol: RTOL, scale: 1 }, `global avg ${what}`);
        assertClose(gAvgDx, pl.globalAvgPoolBackwardRef(gDy, shape), { rtol: RTOL, scale: 1 }, `global avg dx ${what}`);
        const wantMax = pl.globalMaxPoolRef(xData, shape);
        assertEqualArrays(gMax, wantMax.y, `global max ${what}`);
        assertEqualArrays(gMaxIdx, wantMax.idx, `global max idx ${what}`);
        assertEqualArrays(gMaxDx, pl.globalMaxPoolBackwardRef(xData, gDy, shape), `global max dx ${what}`);
        [x, gdy, ...outs].forEach((t) => t.release());
      }
    });
  }

  it("ties go to the first maximum in row-major order; odd rows and columns are dropped", async () => {
    const rt = await testRuntime();
    // One 3x5 plane: windows [[1,1],[1,1]] -> index 0, [[2,5],[5,5]] -> index 3; row 2 and column 4 dropped.
    const xs = [1, 1, 2, 5, 9, 1, 1, 5, 5, 9, 9, 9, 9, 9, 9];
    const x = rt.upload(xs, [1, 1, 3, 5]);
    const m = pl.maxPool2x2(rt, x);
    const dx = pl.maxPool2x2Backward(rt, rt.upload([10, 20], [1, 1, 1, 2]), m.idx, x.shape);
    const g = pl.globalMaxPool(rt, x);
    const [y, idx, gdx, gy, gidx] = await rt.readMany([m.y, m.idx, dx, g.y, g.idx]);
    expect(Array.from(y)).toEqual([1, 5]);
    expect(Array.from(idx)).toEqual([0, 3]);
    expect(Array.from(gdx)).toEqual([10, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(Array.from(gy)).toEqual([9]);
    expect(Array.from(gidx)).toEqual([4]);
    // The same rules on a 3x8 plane (W % 4 == 0: two windows per invocation).
    const xs8 = [1, 1, 2, 5, 7, 7, 0, 1, 1, 1, 5, 5, 7, 7, 2, 2, 9, 9, 9, 9, 9, 9, 9, 9];
    const x8 = rt.upload(xs8, [1, 1, 3, 8]);
    const m8 = pl.maxPool2x2(rt, x8);
    const dx8 = pl.maxPool2x2Backward(rt, rt.upload([10, 20, 30, 40], [1, 1, 1, 4]), m8.idx, x8.shape);
    const [y8, idx8, gdx8] = await rt.readMany([m8.y, m8.idx, dx8]);
    expect(Array.from(y8)).toEqual([1, 5, 7, 2]);
    expect(Array.from(idx8)).toEqual([0, 3, 4, 14]);
    expect(Array.from(gdx8)).toEqual(
      xs8.map((_, i) => ({ 0: 10, 3: 20, 4: 30, 14: 40 } as Record<number, number>)[i] ?? 0),
    );
  });

  it("the backward twins match finite differences of the forward twins", () => {
    const rand = mulberry32(testSeed("pool finite differences"));
    for (const shape of [[3, 2, 7, 5], [2, 1, 4, 6]]) {
      const [C, N, H, W] = shape;
      const x = Float64Array.from(randomF32(rand, size(shape)));
      const rMax = Float64Array.from(randomF32(rand, C * N * (H >> 1) * (W >> 1)));
      fdCheck(
        rand,
        () => dot(rMax, pl.maxPool2x2Ref(x, shape).y),
        [["x", x, pl.maxPool2x2BackwardRef(x, rMax, shape)]],
        `maxpool [${shape}]`,
        { h: FD_H, rtol: FD_RTOL },
      );
      const r = Float64Array.from(randomF32(rand, C * N));
      fdCheck(
        rand,
        () => dot(r, pl.globalAvgPoolRef(x, shape)),
        [["x", x, pl.globalAvgPoolBackwardRef(r, shape)]],
        `global avg [${shape}]`,
        { h: FD_H, rtol: FD_RTOL },
      );
      // Random entries are mostly not a plane's maximum (zero gradient): also probe each maximum.
      const gmax = pl.globalMaxPoolBackwardRef(x, r, shape);
      fdCheck(rand, () => dot(r, pl.globalMaxPoolRef(x, shape).y), [["x", x, gmax]], `global max [${shape}]`, {
        h: FD_H,
        rtol: FD_RTOL,
      });
      const { idx } = pl.globalMaxPoolRef(x, shape);
      for (let p = 0; p < C * N; p++) {
        const j = p * H * W + idx[p];
        const keep = x[j];
        x[j] = keep + FD_H;
        const up = dot(r, pl.globalMaxPoolRef(x, shape).y);
        x[j] = keep - FD_H;
        const down = dot(r, pl.globalMaxPoolRef(x, shape).y);
        x[j] = keep;
        const fd = (up - down) / (2 * FD_H);
        expect(Math.abs(fd - gmax[j]) / Math.max(Math.abs(gmax[j]), 1e-3)).toBeLessThan(FD_RTOL);
      }
    }
  });
});
