import { describe, expect, it } from "vitest";
import {
  CIFAR10_MEAN,
  CIFAR10_STD,
  classCounts,
  concat,
  type Dataset,
  mulberry32,
  seededIndices,
  seededSubset,
  subset,
  toFloat,
} from "../../src/data/dataset.ts";
import { mulberry32 as supportRng, testSeed } from "../support/rng.ts";

function toy(n: number, c = 3, h = 2, w = 2, seed = 1): Dataset {
  const rand = mulberry32(seed);
  return {
    name: "toy",
    n,
    c,
    h,
    w,
    classes: ["a", "b", "c"],
    images: Uint8Array.from({ length: n * c * h * w }, () => Math.floor(rand() * 256)),
    labels: Uint8Array.from({ length: n }, (_, i) => i % 3),
  };
}
const image = (ds: Dataset, i: number) =>
  Array.from(ds.images.subarray(i * ds.c * ds.h * ds.w, (i + 1) * ds.c * ds.h * ds.w));

describe("seeded sampling", () => {
  it("is pinned: mulberry32 + Fisher–Yates give these exact indices in every runtime", () => {
    expect(mulberry32(42)()).toBe(0.6011037519201636);
    expect(mulberry32(42)()).toBe(supportRng(42)());
    expect(Array.from(seededIndices(10, 5, 42))).toEqual([6, 5, 8, 7, 1]);
    expect(Array.from(seededIndices(50000, 4, 1))).toEqual([31353, 137, 26373, 49052]);
  });

  it("samples without replacement, reproducibly, and copies the right images", () => {
    const seed = testSeed("seededSubset");
    const ds = toy(100);
    const a = seededSubset(ds, 30, seed), b = seededSubset(ds, 30, seed);
    expect(Array.from(a.images)).toEqual(Array.from(b.images));
    expect(Array.from(a.labels)).toEqual(Array.from(b.labels));
    const idx = seededIndices(100, 30, seed);
    expect(new Set(idx).size).toBe(30);
    expect(Math.max(...idx)).toBeLessThan(100);
    for (let j = 0; j < 30; j++) {
      expect(image(a, j)).toEqual(image(ds, idx[j]));
      expect(a.labels[j]).toBe(ds.labels[idx[j]]);
    }
    expect(Array.from(seededIndices(100, 10, seed))).toEqual(Array.from(idx.subarray(0, 10))); // prefix property
    expect(seededIndices(100, 30, seed + 1).join() === idx.join()).toBe(false);
    expect(Array.from(seededIndices(5, 5, seed)).sort()).toEqual([0, 1, 2, 3, 4]);
    expect(seededSubset(ds, 0, seed).n).toBe(0);
    expect(() => seededIndices(5, 6, seed)).toThrow("seededIndices: count 6 is not in 0..5");
  });

  it("subset checks indices", () => {
    const ds = toy(4);
    const s = subset(ds, [3, 3, 0]);
    expect([s.n, s.c, s.h, s.w]).toEqual([3, 3, 2, 2]);
    expect(image(s, 1)).toEqual(image(ds, 3));
    expect(image(s, 2)).toEqual(image(ds, 0));
    expect(() => subset(ds, [0, 4])).toThrow("subset: index 4 at position 1 is out of range 0..3");
  });
});

describe("toFloat", () => {
  it("normalises per channel with the CIFAR-10 statistics by default", () => {
    const ds: Dataset = {
      name: "px",
      n: 1,
      c: 3,
      h: 1,
      w: 2,
      classes: ["x"],
      labels: Uint8Array.of(0),
      images: Uint8Array.of(0, 255, 128, 64, 255, 0),
    };
    const f = toFloat(ds);
    expect(CIFAR10_MEAN).toEqual([0.4914, 0.4822, 0.4465]);
    expect(CIFAR10_STD).toEqual([0.247, 0.2435, 0.2616]);
    const want = [
      -0.4914 / 0.247,
      (1 - 0.4914) / 0.247,
      (128 / 255 - 0.4822) / 0.2435,
      (64 / 255 - 0.4822) / 0.2435,
      (1 - 0.4465) / 0.2616,
      -0.4465 / 0.2616,
    ];
    for (let i = 0; i < 6; i++) expect(Math.abs(f[i] - want[i])).toBeLessThan(1e-6);
    expect(Math.abs(f[0] - -1.9894737)).toBeLessThan(1e-6);
    expect(Math.abs(f[1] - 2.0591093)).toBeLessThan(1e-6);
    const g = toFloat(ds, { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
    expect(Array.from(g.subarray(0, 2))).toEqual([-1, 1]);
  });

  it("needs explicit statistics for non-RGB data", () => {
    const grey = toy(2, 1);
    expect(() => toFloat(grey)).toThrow(/pass \{mean, std\}/);
    expect(() => toFloat(grey, { mean: [0.1, 0.2], std: [1, 1] })).toThrow(
      "toFloat: toy has 1 channels but mean/std have 2/2",
    );
    expect(toFloat(grey, { mean: [0], std: [1] })[0]).toBe(Math.fround(grey.images[0] / 255));
  });
});

describe("concat", () => {
  it("joins datasets of one shape and class list", () => {
    const a = toy(3, 3, 2, 2, 1), b = toy(2, 3, 2, 2, 2);
    const ab = concat(a, b);
    expect([ab.n, ab.name]).toEqual([5, "toy+toy"]);
    expect(image(ab, 3)).toEqual(image(b, 0));
    expect(Array.from(ab.labels)).toEqual([0, 1, 2, 0, 1]);
    expect(classCounts(ab)).toEqual([2, 2, 1]);
    expect(() => concat(a, toy(2, 1))).toThrow("concat: toy is 1x2x2, toy is 3x2x2");
    expect(() => concat(a, { ...b, classes: ["x", "y", "z"] })).toThrow(/different class lists/);
    expect(() => concat()).toThrow("concat: no datasets");
  });
});
