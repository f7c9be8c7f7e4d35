import { describe, expect, it } from "vitest";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "fflate";
import { loadIdxPair, parseIdx } from "../../src/data/idx.ts";
import { mulberry32 } from "../../src/data/dataset.ts";
import { testSeed } from "../support/rng.ts";
import { tempDir } from "./fixtures.ts";

function idx(dims: number[], data: Uint8Array, dtype = 0x08): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const v = new DataView(out.buffer);
  out[2] = dtype;
  out[3] = dims.length;
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

async function fixture(seed: number, n = 5, h = 4, w = 3) {
  const rand = mulberry32(seed);
  const pixels = Uint8Array.from({ length: n * h * w }, () => Math.floor(rand() * 256));
  const labels = Uint8Array.from({ length: n }, () => Math.floor(rand() * 10));
  const dir = await tempDir("idx");
  return { dir, n, h, w, pixels, labels, images: idx([n, h, w], pixels), labelFile: idx([n], labels) };
}

async function put(dir: string, name: string, bytes: Uint8Array): Promise<string> {
  await writeFile(join(dir, name), bytes);
  return join(dir, name);
}

describe("loadIdxPair", () => {
  it("loads raw and gzipped pairs identically", async () => {
    const f = await fixture(testSeed("idx round trip"));
    const raw = await loadIdxPair(
      await put(f.dir, "train-images-idx3-ubyte", f.images),
      await put(f.dir, "train-labels-idx1-ubyte", f.labelFile),
    );
    expect([raw.n, raw.c, raw.h, raw.w]).toEqual([f.n, 1, f.h, f.w]);
    expect(raw.name).toBe("train");
    expect(Array.from(raw.images)).toEqual(Array.from(f.pixels));
    expect(Array.from(raw.labels)).toEqual(Array.from(f.labels));
    expect(raw.classes).toEqual(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    const gz = await loadIdxPair(
      await put(f.dir, "a.gz", gzipSync(f.images)),
      await put(f.dir, "b.gz", gzipSync(f.labelFile)),
      { name: "gz" },
    );
    expect(gz.name).toBe("gz");
    expect(Array.from(gz.images)).toEqual(Array.from(f.pixels));
    expect(Array.from(gz.labels)).toEqual(Array.from(f.labels));
  });

  it("rejects bad magic, dtype and dimensions", () => {
    const d = new Uint8Array(6);
    expect(() => parseIdx(Uint8Array.of(1, 0, 8, 1, 0, 0, 0, 0), "x")).toThrow(
      "x: bad IDX magic 01 00 08 01 (must start with 00 00)",
    );
    expect(() => parseIdx(idx([6], d, 0x0d), "f")).toThrow(
      "f: IDX dtype 0x0d is not supported (only 0x08, unsigned byte)",
    );
    expect(() => parseIdx(idx([2, 3], d), "m", 3)).toThrow("m: IDX has 2 dimensions, expected 3");
    expect(() => parseIdx(Uint8Array.of(0, 0), "t")).toThrow("t: truncated IDX file (2 bytes, header needs 4)");
    expect(() => parseIdx(idx([2, 3], d).subarray(0, 9), "h")).toThrow(
      "h: truncated IDX header (9 bytes, 2 dimensions need 12)",
    );
    expect(() => parseIdx(idx([2, 3], d).subarray(0, 15), "s")).toThrow(
      "s: truncated IDX data: dimensions 2x3 need 6 bytes, file has 3",
    );
    expect(() => parseIdx(idx([2, 2], d), "l")).toThrow("l: 2 unexpected trailing bytes after IDX data of 2x2");
    expect(parseIdx(idx([2, 3], d), "ok").dims).toEqual([2, 3]);
  });

  it("rejects truncated files, count mismatches and bad labels with the file name", async () => {
    const f = await fixture(testSeed("idx errors"));
    const labels = await put(f.dir, "labels", f.labelFile);
    const short = await put(f.dir, "short-images", f.images.subarray(0, f.images.length - 1));
    await expect(loadIdxPair(short, labels)).rejects.toThrow(
      "short-images: truncated IDX data: dimensions 5x4x3 need 60 bytes, file has 59",
    );
    const gz = gzipSync(f.images);
    const cut = await put(f.dir, "cut.gz", gz.subarray(0, gz.length - 5));
    await expect(loadIdxPair(cut, labels)).rejects.toThrow(/cut\.gz: corrupt or truncated gzip/);
    const images = await put(f.dir, "images", f.images);
    const four = await put(f.dir, "four-labels", idx([4], f.labels.subarray(0, 4)));
    await expect(loadIdxPair(images, four)).rejects.toThrow("four-labels: 4 labels but images has 5 images");
    const wrongDims = await put(f.dir, "flat-images", idx([f.n * f.h * f.w], f.pixels));
    await expect(loadIdxPair(wrongDims, labels)).rejects.toThrow("flat-images: IDX has 1 dimensions, expected 3");
    const bad = f.labels.slice();
    bad[3] = 7;
    const badLabels = await put(f.dir, "bad-labels", idx([f.n], bad));
    await expect(loadIdxPair(images, badLabels, { classes: ["a", "b", "c"] })).rejects.toThrow(
      /bad-labels: label \d+ at record \d+ is out of range 0\.\.2/,
    );
    await expect(loadIdxPair(join(f.dir, "absent"), labels)).rejects.toThrow(/absent: cannot read/);
  });
});
