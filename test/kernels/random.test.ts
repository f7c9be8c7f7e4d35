import { describe, expect, it } from "vitest";
import { type Distribution, random, randomOp, randomRef } from "../../kernels/random.ts";
import { assertEqualArrays } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, testSeed } from "../support/rng.ts";

describe("random", () => {
  for (const v of randomOp.variants) {
    it(`${v.name}: bit-identical to the TypeScript twin for every distribution`, async () => {
      randomOp.use(v.name);
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`random ${v.name}`));
      for (const dist of ["uniform", "normal", "sign"] as Distribution[]) {
        const n = randInt(rand, 1, 5000);
        const opts = {
          seed: randInt(rand, 0, 2 ** 32 - 1),
          stream: randInt(rand, 0, 1000),
          offset: randInt(rand, 0, 2 ** 31),
        };
        const got = await rt.read(random(rt, [n], dist, opts));
        assertEqualArrays(got, randomRef(n, dist, opts), `${dist} ${JSON.stringify(opts)}`);
      }
    });
  }

  it("has the right moments and changes with seed and stream", () => {
    const n = 200000;
    const mean = (a: Float32Array) => a.reduce((s, x) => s + x, 0) / a.length;
    const u = randomRef(n, "uniform", { seed: 1 });
    const z = randomRef(n, "normal", { seed: 1 });
    const s = randomRef(n, "sign", { seed: 1 });
    expect(Math.abs(mean(u) - 0.5)).toBeLessThan(0.005);
    expect(Math.abs(mean(z))).toBeLessThan(0.01);
    expect(Math.abs(mean(z.map((x) => x * x)) - 1)).toBeLessThan(0.02);
    expect(Math.abs(mean(s))).toBeLessThan(0.01);
    expect(u.every((x) => x >= 0 && x < 1)).toBe(true);
    const other = randomRef(1000, "uniform", { seed: 2 });
    const otherStream = randomRef(1000, "uniform", { seed: 1, stream: 1 });
    expect(other.some((x, i) => x !== u[i])).toBe(true);
    expect(otherStream.some((x, i) => x !== u[i])).toBe(true);
  });
});
