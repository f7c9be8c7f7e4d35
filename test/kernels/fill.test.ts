import { describe, expect, it } from "vitest";
import { fill, fillOp, full } from "../../kernels/fill.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, testSeed } from "../support/rng.ts";

describe("fill", () => {
  for (const v of fillOp.variants) {
    it(`${v.name}: writes every element, f32, u32 and i32`, async () => {
      fillOp.use(v.name);
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`fill ${v.name}`));
      const n = randInt(rand, 1, 100000);
      const value = Math.fround(rand() * 200 - 100);
      const [f, u, i] = await rt.readMany([
        full(rt, [n], value),
        full(rt, [n], 4000000000, "u32"),
        full(rt, [3, 5], -7, "i32"),
      ]);
      expect(f.every((x) => x === value)).toBe(true);
      expect(u.every((x) => x === 4000000000)).toBe(true);
      expect(Array.from(i)).toEqual(new Array(15).fill(-7));
      const t = rt.upload(new Float32Array(5).fill(1), [5]);
      expect(Array.from(await rt.read(fill(rt, t, -0.5)))).toEqual([-0.5, -0.5, -0.5, -0.5, -0.5]);
    });
  }
});
