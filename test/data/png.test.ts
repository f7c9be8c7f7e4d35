import { describe, expect, it } from "vitest";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { decode, encode } from "fast-png";
import { decodePngRgb, encodePng, imageGridPng } from "../../src/data/png-folder.ts";
import { loadImageFolder } from "../../src/data/image-folder.ts";
import { mulberry32 } from "../../src/data/dataset.ts";
import { testSeed } from "../support/rng.ts";
import { tempDir } from "./fixtures.ts";

const W = 4, H = 3, P = W * H;

/** Random RGB (HWC) image and the same image saved in several PNG flavours. */
function flavours(rand: () => number) {
  const rgb = Uint8Array.from({ length: P * 3 }, () => Math.floor(rand() * 256));
  const grey = Uint8Array.from({ length: P }, () => Math.floor(rand() * 256));
  const rgba = new Uint8Array(P * 4), ga = new Uint8Array(P * 2), rgb16 = new Uint16Array(P * 3);
  for (let p = 0; p < P; p++) {
    rgba.set(rgb.subarray(p * 3, p * 3 + 3), p * 4);
    rgba[p * 4 + 3] = p * 20;
    ga[p * 2] = grey[p];
    ga[p * 2 + 1] = 255 - p;
    for (let k = 0; k < 3; k++) rgb16[p * 3 + k] = rgb[p * 3 + k] * 256 + 77;
  }
  const greyRgb = Uint8Array.from({ length: P * 3 }, (_, i) => grey[Math.floor(i / 3)]);
  const palette = [[10, 20, 30], [200, 100, 0], [0, 255, 128]];
  const idx = Uint8Array.from({ length: P }, (_, p) => p % 3);
  const palRgb = Uint8Array.from({ length: P * 3 }, (_, i) => palette[idx[Math.floor(i / 3)]][i % 3]);
  const png = (data: Uint8Array | Uint16Array, channels: number, depth: 8 | 16 = 8, pal?: number[][]) =>
    encode({ width: W, height: H, data, channels, depth, palette: pal });
  return [
    { name: "rgb", bytes: png(rgb, 3), expect: rgb },
    { name: "rgba", bytes: png(rgba, 4), expect: rgb },
    { name: "grey", bytes: png(grey, 1), expect: greyRgb },
    { name: "grey-alpha", bytes: png(ga, 2), expect: greyRgb },
    { name: "rgb16", bytes: png(rgb16, 3, 16), expect: rgb },
    { name: "palette", bytes: png(idx, 1, 8, palette), expect: palRgb },
  ];
}

const toChw = (rgb: Uint8Array) => Array.from({ length: P * 3 }, (_, i) => rgb[(i % P) * 3 + Math.floor(i / P)]);

describe("PNG decoding", () => {
  it("converts every flavour to RGB", () => {
    for (const f of flavours(mulberry32(testSeed("png flavours")))) {
      const img = decodePngRgb(f.bytes, f.name);
      expect([f.name, img.w, img.h]).toEqual([f.name, W, H]);
      expect(Array.from(img.rgb)).toEqual(Array.from(f.expect));
    }
  });

  it("rejects corrupt PNG data with the file name", () => {
    const bytes = encodePng(new Uint8Array(P * 3).fill(9), W, H);
    const bad = bytes.slice();
    bad[bad.length - 20] ^= 0xff;
    expect(() => decodePngRgb(bad, "bad.png")).toThrow(/bad\.png: cannot decode PNG/);
    expect(() => decodePngRgb(bytes.subarray(0, 30), "cut.png")).toThrow(/cut\.png: cannot decode PNG/);
    expect(() => encodePng(new Uint8Array(5), 2, 2)).toThrow("encodePng: 5 bytes is not 2x2x3 RGB");
  });
});

describe("loadImageFolder", () => {
  it("loads sorted classes and files into CHW RGB (grey copied to RGB beside colour images)", async () => {
    const rand = mulberry32(testSeed("png folder"));
    const root = await tempDir("pngs");
    const want: { label: number; chw: number[] }[] = [];
    // Created out of order; loaded as ant(0), cat(1), dog(2), files sorted by name.
    for (const [label, cls] of [[2, "dog"], [0, "ant"], [1, "cat"]] as const) {
      await mkdir(join(root, cls));
      const fl = flavours(rand);
      for (const [i, f] of fl.entries()) await writeFile(join(root, cls, `${i}-${f.name}.png`), f.bytes);
      await writeFile(join(root, cls, ".DS_Store"), "hidden files are skipped");
      fl.forEach((f) => want.push({ label, chw: toChw(f.expect) }));
    }
    want.sort((a, b) => a.label - b.label);
    const ds = await loadImageFolder(root, { name: "toy" });
    expect(ds.classes).toEqual(["ant", "cat", "dog"]);
    expect([ds.name, ds.n, ds.c, ds.h, ds.w]).toEqual(["toy", 18, 3, H, W]);
    expect(Array.from(ds.labels)).toEqual(want.map((x) => x.label));
    for (let i = 0; i < ds.n; i++) {
      expect(Array.from(ds.images.subarray(i * P * 3, (i + 1) * P * 3))).toEqual(want[i].chw);
    }
  });

  it("rejects mixed sizes, empty classes and empty roots", async () => {
    const root = await tempDir("pngs");
    await mkdir(join(root, "a"));
    await mkdir(join(root, "b"));
    await writeFile(join(root, "a", "x.png"), encodePng(new Uint8Array(P * 3), W, H));
    await expect(loadImageFolder(root)).rejects.toThrow(`${join(root, "b")}: empty class folder`);
    await writeFile(join(root, "b", "y.png"), encodePng(new Uint8Array(6 * 3), 3, 2));
    await expect(loadImageFolder(root)).rejects.toThrow(
      `${join(root, "b", "y.png")}: 3x2 differs from 4x3 of ${join(root, "a", "x.png")} (pass --resize HxW)`,
    );
    expect((await loadImageFolder(root, { resize: [3, 4] })).n).toBe(2);
    await writeFile(join(root, "b", "z.txt"), "notes");
    await expect(loadImageFolder(root, { resize: [3, 4] })).rejects.toThrow(
      `${join(root, "b", "z.txt")}: not an image file`,
    );
    await expect(loadImageFolder(await tempDir("empty"))).rejects.toThrow(/no class folders/);
  });
});

describe("imageGridPng", () => {
  it("lays out CHW images with a 1-px border", () => {
    // Three 2x3 (h x w) RGB images, each a flat colour per channel; 2 columns → 2 rows.
    const c = 3, h = 2, w = 3, n = 3;
    const images = new Uint8Array(n * c * h * w);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < c; k++) images.fill(10 * i + k + 1, (i * c + k) * h * w, (i * c + k + 1) * h * w);
    }
    const png = decode(imageGridPng({ images, n, c, h, w }, { cols: 2, borderColor: [255, 0, 255] }));
    expect([png.width, png.height, png.channels]).toEqual([2 * (w + 1) + 1, 2 * (h + 1) + 1, 3]);
    const at = (x: number, y: number) =>
      Array.from(png.data.subarray((y * png.width + x) * 3, (y * png.width + x) * 3 + 3));
    expect(at(0, 0)).toEqual([255, 0, 255]);
    expect(at(1, 1)).toEqual([1, 2, 3]); // image 0, top-left
    expect(at(3, 2)).toEqual([1, 2, 3]); // image 0, bottom-right
    expect(at(4, 1)).toEqual([255, 0, 255]); // vertical border between cells
    expect(at(5, 1)).toEqual([11, 12, 13]); // image 1
    expect(at(1, 4)).toEqual([21, 22, 23]); // image 2, second row
    expect(at(5, 4)).toEqual([255, 0, 255]); // empty cell keeps border colour

    // Grey images, chosen indices and 2x scale.
    const grey = Uint8Array.from({ length: 2 * 4 }, (_, i) => i * 30);
    const g = decode(imageGridPng({ images: grey, n: 2, c: 1, h: 2, w: 2 }, { indices: [1], scale: 2 }));
    expect([g.width, g.height]).toEqual([6, 6]);
    expect(Array.from(g.data.subarray((1 * 6 + 1) * 3, (1 * 6 + 1) * 3 + 3))).toEqual([120, 120, 120]);
    expect(Array.from(g.data.subarray((4 * 6 + 4) * 3, (4 * 6 + 4) * 3 + 3))).toEqual([210, 210, 210]);
  });
});
