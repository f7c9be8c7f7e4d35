import { describe, expect, it } from "vitest";
import { crossEntropy, crossEntropyRef, lossOp, margin, marginRef } from "../../kernels/loss.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

const RTOL = 2e-6; // a few roundings of exp/log in f32, against max(|want|, 1)

describe("loss", () => {
  for (const v of lossOp.variants) {
    it(`${v.name}: cross-entropy and margin values and gradients match the float64 twins`, async () => {
      lossOp.use(v.name);
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`loss ${v.name}`));
      for (const [K, B] of [[2, 1], [10, 7], [randInt(rand, 2, 20), randInt(rand, 1, 200)]]) {
        const z = randomF32(rand, K * B, -8, 8);
        const y = Uint32Array.from({ length: B }, () => randInt(rand, 0, K - 1));
        const eps = rand() * 0.2;
        const logits = rt.upload(z, [K, B]);
        const labels = rt.upload(y, [B]);
        const ce = crossEntropy(rt, logits, labels, { eps, gradScale: 1 / B });
        const mg = margin(rt, logits, labels);
        const [cv, cg, mv, mgr, cc, mc] = await rt.readMany([
          ce.value,
          ce.dlogits,
          mg.value,
          mg.dlogits,
          ce.correct,
          mg.correct,
        ]);
        const correct = Array.from({ length: B }, (_, i) => {
          let best = 0;
          for (let c = 1; c < K; c++) if (z[c * B + i] > z[best * B + i]) best = c;
          return best === y[i] ? 1 : 0;
        });
        expect(Array.from(cc)).toEqual(correct);
        expect(Array.from(mc)).toEqual(correct);
        const ceRef = crossEntropyRef(z, y, K, B, eps, 1 / B);
        const mRef = marginRef(z, y, K, B);
        assertClose(cv, ceRef.value, { rtol: RTOL }, `cross-entropy K=${K} B=${B}`);
        assertClose(cg, ceRef.dlogits, { rtol: RTOL }, "cross-entropy gradient");
        assertClose(mv, mRef.value, { rtol: RTOL }, "margin");
        assertClose(mgr, mRef.dlogits, { rtol: RTOL }, "margin gradient");
      }
    });
  }

  it("the twins' gradients match finite differences", () => {
    const rand = mulberry32(testSeed("loss finite differences"));
    const K = 5, B = 3, h = 1e-6;
    const z = Array.from({ length: K * B }, () => rand() * 6 - 3);
    const y = [0, 4, 2];
    for (
      const [f, name] of [[(l: number[]) => crossEntropyRef(l, y, K, B, 0.1), "ce"], [
        (l: number[]) => marginRef(l, y, K, B),
        "margin",
      ]] as const
    ) {
      const g = f(z).dlogits;
      for (let j = 0; j < K * B; j++) {
        const up = [...z], dn = [...z];
        up[j] += h;
        dn[j] -= h;
        const i = j % B;
        const fd = (f(up).value[i] - f(dn).value[i]) / (2 * h);
        expect(Math.abs(fd - g[j])).toBeLessThan(1e-6 * Math.max(1, Math.abs(fd)) + 1e-8);
      }
      expect(name.length).toBeGreaterThan(0);
    }
  });

  it("rejects labels of the wrong length", async () => {
    const rt = await testRuntime();
    expect(() => margin(rt, rt.upload(new Float32Array(6), [3, 2]), rt.upload(new Uint32Array(3), [3]))).toThrow(
      /labels must be u32/,
    );
  });
});
