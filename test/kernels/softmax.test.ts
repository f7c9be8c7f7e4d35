import { describe, it } from "vitest";
import { logSoftmax, softmax, softmaxOp, softmaxRef } from "../../kernels/softmax.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

const RTOL = 2e-6; // a few f32 roundings of exp/log; log-softmax is compared against max(|want|, 1)

describe("softmax", () => {
  for (const v of softmaxOp.variants) {
    it(`${v.name}: softmax and log-softmax match the float64 twin`, async () => {
      softmaxOp.use(v.name);
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`softmax ${v.name}`));
      for (const [rows, cols] of [[1, 1], [1, 10], [7, 3], [randInt(rand, 1, 70), randInt(rand, 1, 300)], [3, 1031]]) {
        // Logits up to +-30 exercise the max subtraction.
        const data = randomF32(rand, rows * cols, -30, 30);
        const x = rt.upload(data, [rows, cols]);
        const [p, lp] = await rt.readMany([softmax(rt, x), logSoftmax(rt, x)]);
        assertClose(p, softmaxRef(data, cols), { rtol: RTOL, scale: 1e-6 }, `softmax [${rows}, ${cols}]`);
        assertClose(lp, softmaxRef(data, cols, true), { rtol: RTOL, scale: 1 }, `log-softmax [${rows}, ${cols}]`);
      }
    });
  }
});
