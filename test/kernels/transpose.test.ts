import { describe, it } from "vitest";
import { transpose, transposeOp, transposeRef } from "../../kernels/transpose.ts";
import { assertEqualArrays } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

describe("transpose", () => {
  for (const v of transposeOp.variants) {
    it(`${v.name}: matches the twin exactly, batched and odd shapes`, async () => {
      transposeOp.use(v.name);
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`transpose ${v.name}`));
      for (
        const [b, r, c] of [[1, 1, 1], [1, 1, 37], [1, 17, 1], [3, 16, 16], [2, 31, 45], [
          1,
          randInt(rand, 1, 200),
          randInt(rand, 1, 200),
        ]]
      ) {
        const data = randomF32(rand, b * r * c);
        const x = rt.upload(data, b > 1 ? [b, r, c] : [r, c]);
        const out = transpose(rt, x);
        assertEqualArrays(await rt.read(out), transposeRef(data, b, r, c), `transpose [${b}, ${r}, ${c}]`);
        x.release();
        out.release();
      }
    });
  }
});
