import { describe, expect, it } from "vitest";
import { reduce, type ReduceKind, reduceOp, reduceRef } from "../../kernels/reduce.ts";
import { assertClose, assertEqualArrays } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

// Sums of up to ~2000 values in [-1, 1): f32 error stays well under 1e-5 of max(|sum|, sqrt(len)).
const RTOL = 1e-5;

describe("reduce", () => {
  for (const v of reduceOp.variants) {
    it(`${v.name}: sum, max, argmax along every axis match the float64 twin`, async () => {
      reduceOp.use(v.name);
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`reduce ${v.name}`));
      const shapes = [
        [1],
        [7],
        [3, 1, 5],
        [2, 13, 3],
        [randInt(rand, 1, 9), randInt(rand, 1, 40), randInt(rand, 1, 9)],
        [3, v.cooperativeFrom + 17, 2],
        [2000],
      ];
      for (const shape of shapes) {
        const data = randomF32(rand, shape.reduce((a, b) => a * b, 1));
        const x = rt.upload(data, shape);
        for (let axis = 0; axis < shape.length; axis++) {
          for (const kind of ["sum", "max", "argmax"] as ReduceKind[]) {
            const out = reduce(rt, kind, x, axis);
            const got = await rt.read(out);
            const want = reduceRef(kind, data, shape, axis);
            const what = `${kind} of [${shape}] along ${axis}`;
            if (kind === "sum") assertClose(got, want, { rtol: RTOL, scale: Math.sqrt(shape[axis]) }, what);
            else assertEqualArrays(got, want, what); // max and argmax are exact
            out.release();
          }
        }
        x.release();
      }
    });
  }

  it("argmax takes the first of equal maxima", async () => {
    const rt = await testRuntime();
    const out = reduce(rt, "argmax", rt.upload([1, 5, 5, 2, 5], [5]), 0);
    expect(Array.from(await rt.read(out))).toEqual([1]);
  });
});
