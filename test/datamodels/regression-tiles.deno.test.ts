// Deno only (writes files): the datamodel matrix round-trips through its row-block tiles.
import { describe, expect, it } from "vitest";
import { writeBytesAtomic } from "../../src/data/io.ts";
import { fitDatamodels } from "../../src/datamodels/regression.ts";
import { loadDatamodelTiles, saveDatamodelTiles } from "../../src/datamodels/tiles.ts";
import { syntheticRegression } from "./synthetic.ts";
import { assertEqualArrays } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, testSeed } from "../support/rng.ts";
import { tempDir } from "../support/host.ts";
import { readdir, rm } from "node:fs/promises";

describe("datamodel tiles", () => {
  it("save + load give back every block of the weights and the per-target metadata", async () => {
    const rt = await testRuntime();
    const seed = testSeed("datamodel tiles");
    const rand = mulberry32(seed);
    const n = 45;
    const fit = await fitDatamodels(rt, syntheticRegression({ n, models: 80, seed }), {
      penalty: "l1",
      iterations: 5,
      seed,
    });
    const W = (await rt.read(fit.weights)) as Float32Array;
    const dir = tempDir("test");
    try {
      await saveDatamodelTiles(rt, fit, dir, 7);
      const names: string[] = [];
      for (const name of await readdir(dir)) names.push(name);
      expect(names.filter((x) => x.endsWith(".safetensors")).length).toBe(Math.ceil(n / 7) + 1);
      const tiles = await loadDatamodelTiles(dir);
      expect(tiles.n).toBe(n);
      assertEqualArrays(await tiles.readBlock(0, n, 0, n), W, "whole matrix");
      for (let k = 0; k < 20; k++) {
        const [r0, c0] = [randInt(rand, 0, n), randInt(rand, 0, n)];
        const [r1, c1] = [randInt(rand, r0, n), randInt(rand, c0, n)];
        const want = new Float32Array((r1 - r0) * (c1 - c0));
        for (let r = r0; r < r1; r++) want.set(W.subarray(r * n + c0, r * n + c1), (r - r0) * (c1 - c0));
        assertEqualArrays(await tiles.readBlock(r0, r1, c0, c1), want, `block [${r0}, ${r1}) x [${c0}, ${c1})`);
      }
      const meta = await tiles.readMeta();
      assertEqualArrays(meta.bias, fit.bias, "bias");
      assertEqualArrays(meta.lambda, fit.lambda, "lambda");
      assertEqualArrays(meta.heldOutMse, fit.heldOutMse, "heldOutMse");
      await expect(tiles.readBlock(0, n + 1, 0, 1)).rejects.toThrow(/not inside/);
      await writeBytesAtomic(
        `${dir}/index.json`,
        new TextEncoder().encode(
          JSON.stringify({
            format: "datamodel-tiles/1",
            n,
            rowsPerFile: 7,
            files: [{ r0: 0, r1: 7, file: "rows-0000000.safetensors" }],
            meta: "meta.safetensors",
          }),
        ),
      );
      await expect(loadDatamodelTiles(dir)).rejects.toThrow(/cover 7 of 45/);
    } finally {
      fit.weights.release();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
