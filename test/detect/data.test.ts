// The data of a detect run on a user's dataset: nothing planted, the whole training split scanned, a seeded
// 10% held out when there is no test split (and said), --test PATH taking its place, a smaller --train a
// seeded subset, and the manifest's indices mapped to the scanned examples.
import { describe, expect, it } from "vitest";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Dataset, mulberry32 } from "../../src/data/dataset.ts";
import { writeData } from "../../src/data/formats.ts";
import { DetectConfig } from "../../src/detect/config.ts";
import { loadDetectData, resolveDefaults } from "../../src/detect/data.ts";
import { testSeed } from "../support/rng.ts";
import { tempDir } from "../data/fixtures.ts";

function dataset(n: number, seed: number): Dataset {
  const rand = mulberry32(seed);
  const images = Uint8Array.from({ length: n * 16 }, () => Math.floor(rand() * 256));
  for (let i = 0; i < n; i++) images[i * 16] = i % 256; // example i is recognisable by its first pixel
  return {
    name: "toy",
    images,
    labels: Uint8Array.from({ length: n }, (_, i) => i % 3),
    n,
    c: 1,
    h: 4,
    w: 4,
    classes: ["a", "b", "c"],
  };
}

describe("detect data", () => {
  it("scans a user's dataset as it is; holds out 10% without a test split; maps the manifest", async () => {
    const seed = testSeed("detect data") % 1000;
    const dir = await tempDir("detect-data");
    await writeData(join(dir, "no-test"), "npz", dataset(200, seed), null);
    const manifest = join(dir, "m.json");
    await writeFile(manifest, JSON.stringify([3, 50, 199]));
    const cfg = resolveDefaults(DetectConfig.parse({ data: join(dir, "no-test", "data.npz"), manifest, seed }));
    expect([cfg.attack, cfg.train]).toEqual(["none", undefined]);
    const d = await loadDetectData(cfg);
    expect([d.train.n, d.test.n]).toEqual([180, 20]);
    const scanned = new Set(d.origin);
    expect(scanned.size).toBe(180);
    for (let p = 0; p < d.train.n; p++) expect(d.train.images[p * 16]).toBe(d.origin[p] % 256);
    for (let t = 0; t < d.test.n; t++) expect(scanned.has(d.test.images[t * 16])).toBe(false); // n < 256: pixel = index
    expect(d.poisoned).toEqual([3, 50, 199].filter((i) => scanned.has(i)).map((i) => d.origin.indexOf(i)));
    expect(d.notes[0]).toMatch(/^No test split: a seeded 10% \(20 examples\) is held out/);
    expect([d.trigger, d.paths]).toEqual([null, null]);

    // --test PATH, and --train drawing a seeded subset of the training split.
    await writeData(join(dir, "other"), "npz", dataset(30, seed + 1), null);
    const withTest = await loadDetectData(
      resolveDefaults(
        DetectConfig.parse({
          data: join(dir, "no-test", "data.npz"),
          test: join(dir, "other", "data.npz"),
          train: 50,
          seed,
        }),
      ),
    );
    expect([withTest.train.n, withTest.test.n, withTest.notes]).toEqual([50, 30, []]);
    const again = await loadDetectData(
      resolveDefaults(
        DetectConfig.parse({
          data: join(dir, "no-test", "data.npz"),
          test: join(dir, "other", "data.npz"),
          train: 80,
          seed,
        }),
      ),
    );
    expect(Array.from(again.origin.subarray(0, 50))).toEqual(Array.from(withTest.origin)); // a prefix of one shuffle
    expect(again.dataKey).not.toBe(withTest.dataKey);
  });
});
