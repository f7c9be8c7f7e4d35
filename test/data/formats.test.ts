// Every dataset format we read and write: files NumPy wrote (test/data/numpy/make.py), round trips through
// each writer, and the one-line errors on corrupt, truncated or inconsistent inputs.
import { describe, expect, it } from "vitest";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "fflate";
import jpeg from "jpeg-js";
import { type Dataset, mulberry32, subset } from "../../src/data/dataset.ts";
import { detectFormat, loadData, writeData, type WriteFormat } from "../../src/data/formats.ts";
import { decodeImage, folderOrder, resizeBilinear } from "../../src/data/image-folder.ts";
import { encodeNpy, encodeNpz, parseNpy } from "../../src/data/npy.ts";
import { readManifest } from "../../src/data/manifest.ts";
import { testSeed } from "../support/rng.ts";
import { makeTar, tempDir } from "./fixtures.ts";

const FIXTURES = new URL("./numpy/", import.meta.url).pathname;
/** make.py's pixel formula, as CHW. */
function fixturePixels(n: number, c: number, h: number, w: number, channel = (k: number) => k): Uint8Array {
  const out = new Uint8Array(n * c * h * w);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < c; k++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          out[((i * c + k) * h + y) * w + x] = (i * 37 + y * 11 + x * 7 + channel(k) * 59) % 256;
        }
      }
    }
  }
  return out;
}

function randomDataset(seed: number, n: number, c: number, h: number, w: number, classes: string[]): Dataset {
  const rand = mulberry32(seed);
  return {
    name: "random",
    images: Uint8Array.from({ length: n * c * h * w }, () => Math.floor(rand() * 256)),
    labels: Uint8Array.from({ length: n }, (_, i) => (i < classes.length ? i : Math.floor(rand() * classes.length))),
    n,
    c,
    h,
    w,
    classes,
  };
}

const same = (a: Dataset, b: Dataset) => {
  expect([b.n, b.c, b.h, b.w]).toEqual([a.n, a.c, a.h, a.w]);
  expect(Buffer.from(b.labels).equals(Buffer.from(a.labels))).toBe(true);
  expect(Buffer.from(b.images).equals(Buffer.from(a.images))).toBe(true);
};

describe("files NumPy wrote", () => {
  it("reads uint8 NHWC .npz, float NCHW .npz and a grey .npy pair with big-endian labels", async () => {
    const labels = [0, 1, 2, 0, 1, 2];
    const a = await loadData(join(FIXTURES, "rgb_nhwc.npz"));
    expect([a.format, a.train.n, a.train.c, a.train.h, a.train.w, a.test]).toEqual(["npz", 6, 3, 4, 5, null]);
    expect(a.train.classes).toEqual(["cat", "dog", "emu"]);
    expect(Array.from(a.train.labels)).toEqual(labels);
    expect(Buffer.from(a.train.images).equals(Buffer.from(fixturePixels(6, 3, 4, 5)))).toBe(true);

    const b = await loadData(join(FIXTURES, "float_nchw.npz"));
    expect(b.train.classes).toEqual(["0", "1", "2"]);
    expect(Buffer.from(b.train.images).equals(Buffer.from(a.train.images))).toBe(true);

    expect(await detectFormat(FIXTURES)).toBe("npy");
    for (const path of [FIXTURES, join(FIXTURES, "x.npy")]) {
      const g = await loadData(path);
      expect([g.train.n, g.train.c, g.train.h, g.train.w]).toEqual([6, 1, 4, 5]);
      expect(Array.from(g.train.labels)).toEqual(labels);
      expect(Buffer.from(g.train.images).equals(Buffer.from(fixturePixels(6, 1, 4, 5)))).toBe(true);
    }
  });
});

describe("round trips through every writer", () => {
  const seed = testSeed("format round trips");
  const cases: [WriteFormat, number, number, number, string[]][] = [
    ["imagefolder", 3, 7, 9, ["b-ship", "a-car", "c-dog"]], // unsorted names: written as 0-b-ship, 1-a-car, ...
    ["imagefolder", 1, 28, 28, ["0", "1", "2", "3"]],
    ["npz", 3, 7, 9, ["x", "y", "z"]],
    ["npz", 1, 28, 28, ["0", "1"]],
    ["cifar", 3, 32, 32, ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]],
  ];
  for (const [format, c, h, w, classes] of cases) {
    it(`${format} ${c}x${h}x${w} reads back byte-equal (seed ${seed})`, async () => {
      const train = randomDataset(seed, 23, c, h, w, classes);
      const test = subset(randomDataset(seed + 1, 9, c, h, w, classes), [5, 1, 0, 6, 7, 8]); // a class may be absent
      const dir = await tempDir(`rt-${format}`);
      const written = await writeData(dir, format, train, test);
      const back = await loadData(written.out);
      expect(back.format).toBe(format);
      if (format === "imagefolder") {
        // An ImageFolder reads class by class; the paths say which file each example came from.
        const order = folderOrder(train);
        same(subset(train, order), back.train);
        same(subset(test, folderOrder(test)), back.test!);
        expect((back.train as { paths: string[] }).paths).toEqual(Array.from(order, (i) => written.trainPaths![i]));
        if (classes[0] === "b-ship") expect(back.train.classes).toEqual(["0-b-ship", "1-a-car", "2-c-dog"]);
      } else {
        same(train, back.train);
        same(test, back.test!);
        expect(back.train.classes).toEqual(classes);
      }
    });
  }

  it("IDX pairs (gzipped, MNIST's names) with the t10k split beside", async () => {
    const dir = await tempDir("idx");
    const ds = randomDataset(seed, 9, 1, 28, 28, Array.from({ length: 10 }, (_, i) => String(i)));
    const idx = (dims: number[], data: Uint8Array) => {
      const b = new Uint8Array(4 + 4 * dims.length + data.length);
      b.set([0, 0, 8, dims.length]);
      dims.forEach((d, i) => new DataView(b.buffer).setUint32(4 + 4 * i, d));
      b.set(data, 4 + 4 * dims.length);
      return gzipSync(b);
    };
    for (const split of ["train", "t10k"]) {
      await writeFile(join(dir, `${split}-images-idx3-ubyte.gz`), idx([9, 28, 28], ds.images));
      await writeFile(join(dir, `${split}-labels-idx1-ubyte.gz`), idx([9], ds.labels));
    }
    const back = await loadData(dir);
    expect(back.format).toBe("idx");
    same(ds, back.train);
    same(ds, back.test!);
    await writeFile(join(dir, "train-labels-idx1-ubyte.gz"), idx([8], ds.labels.subarray(0, 8)));
    await expect(loadData(join(dir, "train-images-idx3-ubyte.gz"))).rejects.toThrow(
      "train-labels-idx1-ubyte.gz: 8 labels but train-images-idx3-ubyte.gz has 9 images",
    );
  });
});

describe("CIFAR-100", () => {
  it("reads the binary release (fine labels) from a tarball; a truncated batch is an error", async () => {
    const dir = await tempDir("c100");
    const records = (n: number, seed: number) => {
      const rand = mulberry32(seed);
      const b = Uint8Array.from({ length: n * 3074 }, () => Math.floor(rand() * 256));
      for (let r = 0; r < n; r++) [b[r * 3074], b[r * 3074 + 1]] = [r % 20, (r * 7) % 100];
      return b;
    };
    const names = new TextEncoder().encode(Array.from({ length: 100 }, (_, i) => `class${i}`).join("\n") + "\n");
    const tar = (train: Uint8Array) =>
      gzipSync(makeTar({
        "cifar-100-binary/fine_label_names.txt": names,
        "cifar-100-binary/train.bin": train,
        "cifar-100-binary/test.bin": records(3, 2),
      }));
    const train = records(5, 1);
    await writeFile(join(dir, "cifar-100-binary.tar.gz"), tar(train));
    const d = await loadData(join(dir, "cifar-100-binary.tar.gz"));
    expect([d.format, d.train.n, d.test?.n, d.train.classes.length]).toEqual(["cifar100", 5, 3, 100]);
    expect(Array.from(d.train.labels)).toEqual([0, 7, 14, 21, 28]);
    expect(Buffer.from(d.train.images.subarray(3072, 6144)).equals(Buffer.from(train.subarray(3076, 6148)))).toBe(true);
    await writeFile(join(dir, "cifar-100-cut.tar.gz"), tar(train.subarray(0, 5000)));
    await expect(loadData(join(dir, "cifar-100-cut.tar.gz"))).rejects.toThrow(
      /train\.bin: 5000 bytes is not a whole number of 3074-byte records/,
    );
  });
});

describe("images", () => {
  it("decodes JPEG (colour and grey) and resizes bilinearly with half-pixel centres", () => {
    const w = 16, h = 8;
    const rgba = new Uint8Array(w * h * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 13) % 256));
    const colour = decodeImage(jpeg.encode({ width: w, height: h, data: rgba }, 95).data, "c.jpg");
    expect([colour.w, colour.h, colour.c]).toEqual([w, h, 3]);
    const greyRgba = new Uint8Array(w * h * 4).map((_, i) => (i % 4 === 3 ? 255 : 10 * Math.floor(i / 64)));
    const grey = decodeImage(jpeg.encode({ width: w, height: h, data: greyRgba }, 95).data, "g.jpg");
    expect(grey.c).toBe(1);
    expect(() => decodeImage(jpeg.encode({ width: w, height: h, data: rgba }).data.subarray(0, 200), "cut.jpg"))
      .toThrow(/cut\.jpg: cannot decode JPEG/);
    expect(() => decodeImage(new TextEncoder().encode("hello"), "a.png")).toThrow("a.png: not a PNG or JPEG image");
    // 2x2 -> 4x4: each output pixel reads the source at ((x + 0.5) / 2 - 0.5), clamped at the edges.
    const small = { w: 2, h: 2, c: 1 as const, pixels: Uint8Array.from([0, 100, 200, 40]) };
    const want = [0, 25, 75, 100, 50, 59, 76, 85, 150, 126, 79, 55, 200, 160, 80, 40]; // row by row
    expect(Array.from(resizeBilinear(small, 4, 4).pixels)).toEqual(want);
  });
});

describe("corrupt and inconsistent inputs", () => {
  it("name the file and what is wrong", async () => {
    const dir = await tempDir("bad");
    const npy = await readFile(join(FIXTURES, "x.npy"));
    await writeFile(join(dir, "cut.npy"), npy.subarray(0, npy.length - 5));
    expect(() => parseNpy(new Uint8Array(npy.subarray(0, npy.length - 5)), "cut.npy")).toThrow(
      "cut.npy: truncated .npy data (115 of 120 bytes)",
    );
    expect(() => parseNpy(new Uint8Array(npy.subarray(0, 40)), "head.npy")).toThrow(
      /head\.npy: truncated \.npy header/,
    );
    await writeFile(join(dir, "junk.npz"), "PK not really");
    await expect(loadData(join(dir, "junk.npz"))).rejects.toThrow(/junk\.npz: not a readable \.npz/);
    const x = encodeNpy(new Uint8Array(4 * 2 * 2), [4, 2, 2]);
    const npz = (labels: Int32Array, extra: Record<string, Uint8Array> = {}) =>
      encodeNpz({ x, y: encodeNpy(labels, [labels.length]), ...extra });
    await writeFile(
      join(dir, "labels.npz"),
      npz(Int32Array.from([0, 1, 2, 1]), { classes: encodeNpy(["a", "b"], [2]) }),
    );
    await expect(loadData(join(dir, "labels.npz"))).rejects.toThrow(
      "labels.npz:y: label 2 at element 2 is out of range 0..1",
    );
    await writeFile(join(dir, "count.npz"), npz(Int32Array.from([0, 1, 1])));
    await expect(loadData(join(dir, "count.npz"))).rejects.toThrow(
      "count.npz:y: shape (3) does not hold one label for each of the 4 images",
    );
    await writeFile(
      join(dir, "float.npz"),
      encodeNpz({
        x: encodeNpy(Float32Array.from([0, 0.5, 2, 1]), [1, 2, 2]),
        y: encodeNpy(Int32Array.from([0]), [1]),
      }),
    );
    await expect(loadData(join(dir, "float.npz"))).rejects.toThrow(
      "float.npz:x: float pixel 2 at element 2 is outside [0, 1]",
    );
    await writeFile(join(dir, "names.npz"), encodeNpz({ a: x }));
    await expect(loadData(join(dir, "names.npz"))).rejects.toThrow(
      /names\.npz: no image and label arrays .*found a\)$/,
    );
    await writeFile(join(dir, "thing.bin"), "?");
    await expect(loadData(join(dir, "thing.bin"))).rejects.toThrow(/thing\.bin: cannot tell the dataset format/);
    await mkdir(join(dir, "cifar"));
    await writeFile(join(dir, "cifar", "batches.meta.txt"), "a\nb\n");
    await expect(loadData(join(dir, "cifar"))).rejects.toThrow(/batches\.meta\.txt: expected 10 class names, found 2/);
  });
});

describe("manifests", () => {
  it("read indices, paths, .npy and poison apply's manifest; refuse what is not in the dataset", async () => {
    const dir = await tempDir("manifest");
    const paths = ["train/a/0.png", "train/a/1.png", "train/b/2.png"];
    const file = async (name: string, body: string | Uint8Array) => {
      await writeFile(join(dir, name), body);
      return join(dir, name);
    };
    expect(await readManifest(await file("i.json", "[2, 0, 2]"), 3, null)).toEqual({ indices: [0, 2], trigger: null });
    const byPath = await file("p.json", JSON.stringify(["/data/x/train/b/2.png", "train/a/1.png"]));
    expect((await readManifest(byPath, 3, paths)).indices).toEqual([1, 2]);
    const npy = await file("i.npy", encodeNpy(Int32Array.from([1]), [1]));
    expect((await readManifest(npy, 3, null)).indices).toEqual([1]);
    const poisonApply = {
      attack: "badnets",
      config: { targetClass: 1 },
      source: "x",
      format: "imagefolder",
      indices: [0],
      paths: ["train/b/2.png"], // paths win over indices where the dataset has files
      originalLabels: [0],
    };
    const m = await readManifest(await file("m.json", JSON.stringify(poisonApply)), 3, paths);
    expect(m).toEqual({ indices: [2], trigger: { attack: "badnets", attackConfig: { targetClass: 1 } } });
    await expect(readManifest(await file("o.json", "[0, 3]"), 3, null)).rejects.toThrow(
      "o.json: index 3 at position 1 is out of range 0..2",
    );
    await expect(readManifest(await file("q.json", '["train/c/9.png"]'), 3, paths)).rejects.toThrow(
      "q.json: train/c/9.png (entry 0) is not a file of the dataset",
    );
    await expect(readManifest(await file("r.json", '{"indices": "x"}'), 3, null)).rejects.toThrow(
      /r\.json: not a list of indices or paths, nor a poison manifest/,
    );
  });
});
