import { describe, expect, it } from "vitest";
import { assembleBatch, assembleBatchRef, batchOp, uploadDataset } from "../../kernels/batch.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, testSeed } from "../support/rng.ts";

const RTOL = 1e-6; // (v/255 - mean) * inv_std in f32 against the float64 division

describe("batch", () => {
  for (const v of batchOp.variants) {
    it(`${v.name}: gather, crop, flip and normalise match the float64 twin`, async () => {
      batchOp.use(v.name);
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`batch ${v.name}`));
      for (const [n, c, h, w] of [[5, 3, 7, 5], [randInt(rand, 2, 40), 1, 9, 9], [20, 3, 32, 32]]) {
        const images = Uint8Array.from({ length: n * c * h * w }, () => randInt(rand, 0, 255));
        const labels = Array.from({ length: n }, () => randInt(rand, 0, 9));
        const ds = uploadDataset(rt, { images, labels, n, c, h, w });
        const order = Uint32Array.from({ length: n }, (_, i) => i).sort(() => rand() - 0.5);
        const orderT = rt.upload(order, [n], "u32");
        for (const aug of [{ pad: 0, flip: false }, { pad: Math.min(4, h - 1), flip: true }]) {
          const size = randInt(rand, 1, n - 1);
          const start = randInt(rand, 0, n - size);
          const spec = {
            start,
            size,
            mean: [0.4, 0.5, 0.45],
            std: [0.25, 0.2, 0.3],
            seed: randInt(rand, 0, 1e9),
            stream: 3,
            ...aug,
          };
          const { x, y } = assembleBatch(rt, ds, { ...spec, order: orderT });
          const [xg, yg] = await rt.readMany([x, y]);
          const ref = assembleBatchRef(images, labels, c, h, w, order, spec);
          assertClose(xg, ref.x, { rtol: RTOL }, `images ${JSON.stringify(aug)} [${n},${c},${h},${w}]`);
          expect(Array.from(yg)).toEqual(Array.from(ref.y));
        }
      }
    });
  }
});
