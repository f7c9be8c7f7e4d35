import { describe, expect, it } from "vitest";
import * as ew from "../../kernels/elementwise.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

// Inputs are O(1): errors are measured against max(|want|, 1); two f32 roundings stay below 1e-6.
const RTOL = 1e-6;

describe("elementwise", () => {
  for (const v of ew.elementwiseOp.variants) {
    it(`${v.name}: add, mul, axpy, scale, relu, relu_grad match the float64 twin`, async () => {
      ew.elementwiseOp.use(v.name);
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`elementwise ${v.name}`));
      for (const [rows, cols] of [[1, 1], [1, 7], [13, 17], [randInt(rand, 1, 300), randInt(rand, 1, 300)]]) {
        const n = rows * cols;
        const aData = randomF32(rand, n);
        const bData = randomF32(rand, n);
        const rowData = randomF32(rand, cols);
        const alpha = rand() * 4 - 2;
        const a = rt.upload(aData, [rows, cols]);
        const b = rt.upload(bData, [rows, cols]);
        const row = rt.upload(rowData, [cols]);
        const outs = [
          ew.add(rt, a, b),
          ew.add(rt, a, row),
          ew.mul(rt, a, b),
          ew.mul(rt, a, row),
          ew.axpy(rt, alpha, a, b),
          ew.scale(rt, a, alpha),
          ew.relu(rt, a),
          ew.reluGrad(rt, a, b),
        ];
        const wants = [
          ew.addRef(aData, bData),
          ew.addRef(aData, rowData),
          ew.mulRef(aData, bData),
          ew.mulRef(aData, rowData),
          ew.axpyRef(alpha, aData, bData),
          ew.scaleRef(aData, alpha),
          ew.reluRef(aData),
          ew.reluGradRef(aData, bData),
        ];
        const got = await rt.readMany(outs);
        got.forEach((g, i) => assertClose(g, wants[i], { rtol: RTOL, scale: 1 }, `op ${i} at [${rows}, ${cols}]`));
        [a, b, row, ...outs].forEach((t) => t.release());
      }
    });
  }

  it("axpy can update in place", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("axpy in place"));
    const w = randomF32(rand, 101);
    const g = randomF32(rand, 101);
    const wt = rt.upload(w, [101]);
    ew.axpy(rt, -0.1, rt.upload(g, [101]), wt, wt);
    assertClose(await rt.read(wt), ew.axpyRef(-0.1, g, w), { rtol: RTOL, scale: 1 });
  });

  it("rejects a broadcast that does not divide", async () => {
    const rt = await testRuntime();
    expect(() => ew.add(rt, rt.upload(new Float32Array(10), [10]), rt.upload(new Float32Array(3), [3]))).toThrow(
      /does not divide/,
    );
  });
});
