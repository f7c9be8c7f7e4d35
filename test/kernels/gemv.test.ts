// gemv against its float64 twin: y = M x and y = M^T x, every entry point, input offsets, beta = 1 into
// an offset slice (whose untouched head must survive).
import { describe, expect, it } from "vitest";
import { gemv, gemvRef } from "../../kernels/gemv.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randomF32, testSeed } from "../support/rng.ts";

describe("gemv", () => {
  it("y = M x and y = M^T x (offsets, beta) match the float64 twin", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("gemv"));
    for (const [rows, cols] of [[1, 1], [7, 3], [300, 33], [513, 132], [50, 2048]]) {
      const Md = randomF32(rand, rows * cols);
      const M = rt.upload(Md, [rows, cols]);
      for (const trans of [false, true]) {
        const inLen = trans ? rows : cols;
        const outLen = trans ? cols : rows;
        const xo = 4;
        const xd = randomF32(rand, inLen + xo);
        const x = rt.upload(xd, [inLen + xo]);
        const want = gemvRef(Md, rows, cols, xd.subarray(xo), trans);
        const entries = trans
          ? [undefined]
          : cols % 4 === 0
          ? (["rows_wg", "rows_thread", "rows_thread4"] as const)
          : (["rows_wg", "rows_thread"] as const);
        for (const entry of entries) {
          const y = gemv(rt, M, x, { trans, xOffset: xo, entry });
          assertClose(
            await rt.read(y),
            want,
            { rtol: 1e-5, scale: Math.sqrt(inLen) },
            `gemv [${rows}, ${cols}]${trans ? "ᵀ" : ""} ${entry ?? ""}`,
          );
          // beta = 1 into an offset slice
          const y2d = randomF32(rand, outLen + 2);
          const y2 = rt.upload(y2d, [outLen + 2]);
          gemv(rt, M, x, { trans, xOffset: xo, out: y2, outOffset: 2, beta: 1, entry });
          const got = await rt.read(y2);
          assertClose(got.subarray(2), Float64Array.from(want, (v, i) => v + y2d[i + 2]), {
            rtol: 1e-5,
            scale: Math.sqrt(inLen),
          }, "gemv beta");
          expect(got[0]).toBe(y2d[0]);
          y.release();
          y2.release();
        }
        x.release();
      }
      M.release();
    }
  });
});
