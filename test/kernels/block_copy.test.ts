// block_copy against a float64 reference: a strided block with row weights and a scale, accumulated into
// a destination whose other entries must survive; a block that does not fit is refused.
import { describe, expect, it } from "vitest";
import { fill } from "../../kernels/fill.ts";
import { blockCopy } from "../../kernels/project.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randomF32, testSeed } from "../support/rng.ts";

describe("block copy kernel", () => {
  it("blockCopy copies a strided block with row weights, and accumulates", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("blockCopy"));
    const s = randomF32(rand, 9 * 11);
    const w = randomF32(rand, 9);
    const src = rt.upload(s, [9, 11]);
    const wt = rt.upload(w, [9]);
    const dst = fill(rt, rt.empty([6, 13]), 2);
    blockCopy(rt, src, dst, {
      rows: 4,
      cols: 5,
      sr0: 3,
      sc0: 2,
      sld: 11,
      dr0: 1,
      dc0: 7,
      dld: 13,
      alpha: -2,
      w: wt,
      accumulate: true,
    });
    const want = new Float64Array(6 * 13).fill(2);
    for (let r = 0; r < 4; r++) {
      for (let c = 0; c < 5; c++) want[(1 + r) * 13 + 7 + c] += -2 * w[3 + r] * s[(3 + r) * 11 + 2 + c];
    }
    assertClose(await rt.read(dst), want, { rtol: 1e-6 }, "dst");
    expect(() => blockCopy(rt, src, dst, { rows: 7, cols: 5, sld: 11, dld: 13 })).toThrow("destination");
    [src, wt, dst].forEach((t) => t.release());
  });
});
