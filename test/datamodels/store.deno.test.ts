// Deno only (writes files): the datamodels store appends, resumes after a torn write, and rebuilds masks.
import { describe, expect, it } from "vitest";
import { appendBytes, fileSize } from "../../src/data/io.ts";
import { maskBits } from "../../src/datamodels/masks.ts";
import { DatamodelStore } from "../../src/datamodels/store.ts";
import { mulberry32, randomF32, testSeed } from "../support/rng.ts";
import { tempDir } from "../support/host.ts";
import { rm } from "node:fs/promises";

describe("datamodels store", () => {
  it("appends margins, survives a torn record, serves rows with regenerated masks", async () => {
    const seed = testSeed("datamodels store");
    const rand = mulberry32(seed);
    const dir = tempDir("test");
    const spec = { n: 37, alpha: 0.5, seed, targets: 5, job: { data: "x", recipe: { epochs: 2 } } };
    const store = await DatamodelStore.open(dir, spec);
    const written: Float32Array[] = [];
    for (const m of [0, 1, 3, 2]) { // any order: rows follow record order
      const rec = randomF32(rand, spec.n + spec.targets, -3, 3);
      written.push(rec);
      await store.append("train", m, rec.subarray(0, spec.n), rec.subarray(spec.n));
    }
    await store.append("heldout", 0, randomF32(rand, spec.n), randomF32(rand, spec.targets));
    await expect(store.append("train", 1, new Float32Array(spec.n), new Float32Array(spec.targets))).rejects.toThrow(
      /already stored/,
    );
    await expect(store.append("train", 9, new Float32Array(spec.n).fill(NaN), new Float32Array(spec.targets))).rejects
      .toThrow(/non-finite/);
    // an interrupted append: half a record and no index entry
    await appendBytes(`${dir}/train.margins`, new Uint8Array(50));
    const again = await DatamodelStore.openExisting(dir);
    expect(again.models).toBe(4);
    expect(await fileSize(`${dir}/train.margins`)).toBe(4 * (spec.n + spec.targets) * 4);
    expect(Array.from(again.stored("train"))).toEqual([0, 1, 3, 2]);
    expect(again.has("heldout", 0)).toBe(true);
    const { X, Y } = await again.rows(1, 3);
    [1, 3, 2].forEach((m, r) => {
      expect(Array.from(X.subarray(r * spec.n, (r + 1) * spec.n))).toEqual(Array.from(maskBits(spec, "train", m)));
      expect(Array.from(Y.subarray(r * spec.n, (r + 1) * spec.n))).toEqual(
        Array.from(written[r + 1].subarray(0, spec.n)),
      );
    });
    const rec = await again.records("train", 3, 1);
    expect(Array.from(rec.margins)).toEqual(Array.from(written[3]));
    await expect(again.rows(2, 3)).rejects.toThrow(/out of/);
    await expect(DatamodelStore.open(dir, { ...spec, alpha: 0.3 })).rejects.toThrow(/different datamodels job/);
    await expect(DatamodelStore.open(dir, { ...spec, job: { data: "y", recipe: { epochs: 2 } } })).rejects.toThrow(
      /different datamodels job/,
    );
    await rm(dir, { recursive: true, force: true });
  });
});
