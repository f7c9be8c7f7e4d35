// A user's dataset from a path, in any format we read, and a dataset written in any format we write. The
// format comes from the path (or is given); every reader validates what it reads and names the file in
// its one-line errors. Formats:
//   cifar        CIFAR-10 binary: the release tarball, or a directory of batches.meta.txt, data_batch_*.bin
//                and test_batch.bin (or the folder that holds cifar-10-batches-bin/)
//   cifar100     CIFAR-100 binary (fine labels): cifar-100-binary.tar.gz, or a directory of train.bin,
//                test.bin and fine_label_names.txt (or the folder that holds cifar-100-binary/)
//   imagefolder  ROOT/<class>/<image> or ROOT/train/<class>/… + ROOT/test/<class>/… (./image-folder.ts)
//   npz          x/y, images/labels or x_train/y_train (+ x_test/y_test) arrays, optional classes
//   npy          the same names as .npy files in a directory, or IMAGES.npy with its labels beside it
//   idx          MNIST-style IDX pairs, raw or gzipped: train-images-idx3-ubyte(.gz) and its labels file
import { type CifarOptions, loadCifar10, loadCifar100, loadCifar10Archive } from "./cifar.ts";
import { checkDataset, type Dataset, toHwc } from "./dataset.ts";
import {
  type FileDataset,
  type ImageFolderOptions,
  isSplitFolder,
  loadImageFolder,
  writeImageFolder,
} from "./image-folder.ts";
import { FASHION_MNIST_CLASSES, loadIdxPair } from "./idx.ts";
import { baseName, dirName, joinPath, listDir, makeDir, pathKind, readBytes, writeFilesAtomic } from "./io.ts";
import { encodeNpy, encodeNpz, type NpyArray, numbersOf, parseNpy, parseNpz } from "./npy.ts";

export const READ_FORMATS = ["cifar", "cifar100", "imagefolder", "npz", "npy", "idx"] as const;
export type ReadFormat = (typeof READ_FORMATS)[number];
export const WRITE_FORMATS = ["imagefolder", "npz", "cifar"] as const;
export type WriteFormat = (typeof WRITE_FORMATS)[number];

/** A dataset as read: the training split (with file paths for an image folder) and the test split, if any. */
export interface LoadedData {
  format: ReadFormat;
  train: Dataset | FileDataset;
  test: Dataset | null;
}

export const pathsOf = (ds: Dataset): string[] | null => (ds as FileDataset).paths ?? null;

const IDX_IMAGES = /-images[-.]idx3-ubyte(\.gz)?$/;

/** The format of the dataset at `path`, from its name and contents. */
export async function detectFormat(path: string): Promise<ReadFormat> {
  const kind = await pathKind(path);
  if (kind === null) throw new Error(`${path}: no such file or directory`);
  const name = baseName(path);
  if (kind === "file") {
    if (/cifar-?100.*\.(tar\.gz|tgz|tar)$/i.test(name)) return "cifar100";
    if (/\.(tar\.gz|tgz|tar)$/i.test(name)) return "cifar";
    if (/\.npz$/i.test(name)) return "npz";
    if (/\.npy$/i.test(name)) return "npy";
    if (IDX_IMAGES.test(name)) return "idx";
    throw new Error(
      `${path}: cannot tell the dataset format from the name; pass --format (${READ_FORMATS.join(", ")})`,
    );
  }
  const names = (await listDir(path)).map((e) => e.name);
  if (names.includes("batches.meta.txt") || names.includes("cifar-10-batches-bin")) return "cifar";
  if (names.includes("fine_label_names.txt") || names.includes("cifar-100-binary")) return "cifar100";
  if (names.some((n) => IDX_IMAGES.test(n))) return "idx";
  if (names.some((n) => /\.npy$/i.test(n))) return "npy";
  if (names.some((n) => /\.npz$/i.test(n))) {
    throw new Error(
      `${path}: holds .npz files; pass the file itself (--data ${
        joinPath(path, names.find((n) => /\.npz$/i.test(n))!)
      })`,
    );
  }
  return "imagefolder";
}

export interface LoadOptions extends ImageFolderOptions {
  format?: ReadFormat;
}

/** The dataset at `path` (see the header for the formats). */
export async function loadData(path: string, opts: LoadOptions = {}): Promise<LoadedData> {
  const format = opts.format ?? (await detectFormat(path));
  switch (format) {
    case "cifar": {
      // The release tarball has 10,000 records per file; a directory may be a custom set of any size.
      const o = (split: CifarOptions["split"]) => ({
        split,
        recordsPerFile: /\.(tgz|tar(\.gz)?)$/.test(path) ? 10000 : null,
      });
      const train = await loadCifar10(path, o("train"));
      const test = await loadCifar10(path, o("test")).catch((e) => {
        if (/missing test_batch\.bin/.test((e as Error).message)) return null;
        throw e;
      });
      return { format, train, test };
    }
    case "cifar100":
      return { format, train: await loadCifar100(path, "train"), test: await loadCifar100(path, "test") };
    case "imagefolder": {
      if (!(await isSplitFolder(path))) return { format, train: await loadImageFolder(path, opts), test: null };
      const name = baseName(path);
      const train = await loadImageFolder(joinPath(path, "train"), {
        ...opts,
        prefix: "train/",
        name: `${name}-train`,
      });
      const testDir = joinPath(path, "test");
      const test = (await pathKind(testDir)) === "dir"
        ? await loadImageFolder(testDir, { ...opts, classes: train.classes, prefix: "test/", name: `${name}-test` })
        : null;
      return { format, train, test };
    }
    case "npz": {
      const arrays = parseNpz(await readBytes(path), baseName(path));
      return fromArrays((k) => arrays.get(k), baseName(path), [...arrays.keys()]);
    }
    case "npy":
      return await loadNpy(path);
    case "idx":
      return await loadIdx(path);
  }
}

/**
 * A single-file dataset from its bytes (no file system: a volunteer's download, an upload): an .npz, or a
 * CIFAR-10 release tarball. `label` names it in errors.
 */
export async function loadDataBytes(bytes: Uint8Array, label: string): Promise<LoadedData> {
  if (bytes[0] === 0x50 && bytes[1] === 0x4b) {
    const arrays = parseNpz(bytes, label);
    return fromArrays((k) => arrays.get(k), label, [...arrays.keys()]);
  }
  const split = (s: CifarOptions["split"]) => loadCifar10Archive(bytes, label, { split: s });
  return { format: "cifar", train: await split("train"), test: await split("test") };
}

// ---------------------------------------------------------------------------------------------
// NumPy arrays

const ARRAY_NAMES: [string, string][] = [["x", "y"], ["images", "labels"], ["x_train", "y_train"]];

async function loadNpy(path: string): Promise<LoadedData> {
  let dir = path, only: [string, string] | undefined;
  if ((await pathKind(path)) === "file") {
    // IMAGES.npy: the labels beside it, by the same naming pairs (x.npy / y.npy, images.npy / labels.npy, ...).
    dir = dirName(path);
    const stem = baseName(path).replace(/\.npy$/i, "");
    const pair = ARRAY_NAMES.find(([x]) => x === stem) ??
      [[stem, stem.replace(/images/, "labels").replace(/(^|_)x(_|$)/, "$1y$2")] as [string, string]][0];
    if (pair[1] === stem) {
      throw new Error(`${path}: cannot tell which file holds the labels (name it x.npy beside y.npy)`);
    }
    only = pair;
  }
  const files = new Set((await listDir(dir)).map((e) => e.name));
  const cache = new Map<string, NpyArray>();
  const get = async (k: string) => {
    if (!files.has(`${k}.npy`)) return undefined;
    if (!cache.has(k)) cache.set(k, parseNpy(await readBytes(joinPath(dir, `${k}.npy`)), joinPath(dir, `${k}.npy`)));
    return cache.get(k);
  };
  const names = only ? [...only, "classes"] : [...files].filter((f) => f.endsWith(".npy")).map((f) => f.slice(0, -4));
  for (const k of names) await get(k);
  if (only && !cache.has(only[1])) {
    throw new Error(`${joinPath(dir, `${only[1]}.npy`)}: missing (the labels of ${path})`);
  }
  return fromArrays((k) => cache.get(k), dir, [...cache.keys()]);
}

function fromArrays(get: (k: string) => NpyArray | undefined, label: string, have: string[]): LoadedData {
  const pair = ARRAY_NAMES.find(([x, y]) => get(x) && get(y));
  if (!pair) {
    throw new Error(
      `${label}: no image and label arrays (expected x/y, images/labels or x_train/y_train; found ${have.join(", ")})`,
    );
  }
  const classesArr = get("classes");
  const classes = classesArr && Array.isArray(classesArr.data) ? classesArr.data : undefined;
  const name = baseName(label).replace(/\.npz$/i, "");
  const train = datasetFromArrays(
    get(pair[0])!,
    get(pair[1])!,
    `${label}:${pair[0]}`,
    `${label}:${pair[1]}`,
    classes,
    name,
  );
  const tx = get("x_test"), ty = get("y_test");
  if (!tx !== !ty) throw new Error(`${label}: ${tx ? "x_test without y_test" : "y_test without x_test"}`);
  const test = tx && ty
    ? datasetFromArrays(tx, ty, `${label}:x_test`, `${label}:y_test`, classes ?? train.classes, `${name}-test`)
    : null;
  if (test && (test.c !== train.c || test.h !== train.h || test.w !== train.w)) {
    throw new Error(
      `${label}: x_test is ${test.c}x${test.h}x${test.w}, the training images ${train.c}x${train.h}x${train.w}`,
    );
  }
  return { format: "npz", train, test };
}

/** uint8 or float-in-[0, 1] images, NHWC, NCHW or NHW, and integer labels, into a Dataset. */
export function datasetFromArrays(
  x: NpyArray,
  y: NpyArray,
  xLabel: string,
  yLabel: string,
  classes?: string[],
  name = "arrays",
): Dataset {
  const s = x.shape;
  let n: number, c: number, h: number, w: number, nhwc: boolean;
  if (s.length === 3) [n, h, w, c, nhwc] = [s[0], s[1], s[2], 1, true];
  else if (s.length === 4 && (s[3] === 1 || s[3] === 3)) [n, h, w, c, nhwc] = [s[0], s[1], s[2], s[3], true];
  else if (s.length === 4 && (s[1] === 1 || s[1] === 3)) [n, c, h, w, nhwc] = [s[0], s[1], s[2], s[3], false];
  else {throw new Error(
      `${xLabel}: shape (${s.join(", ")}) is not N x H x W, N x H x W x C or N x C x H x W with C = 1 or 3`,
    );}
  const float = /f\d$/.test(x.descr);
  if (!float && !/u1$/.test(x.descr)) {
    throw new Error(`${xLabel}: images must be uint8 or float in [0, 1], not ${x.descr}`);
  }
  const values = numbersOf(x, xLabel);
  const plane = h * w, size = c * plane;
  const images = new Uint8Array(n * size);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < plane; p++) {
      for (let k = 0; k < c; k++) {
        const at = nhwc ? (i * plane + p) * c + k : i * size + k * plane + p;
        let v = values[at];
        if (float) {
          if (!(v >= 0 && v <= 1)) throw new Error(`${xLabel}: float pixel ${v} at element ${at} is outside [0, 1]`);
          v = Math.round(v * 255);
        }
        images[i * size + k * plane + p] = v;
      }
    }
  }
  if (!(y.shape.length === 1 || (y.shape.length === 2 && y.shape[1] === 1)) || y.shape[0] !== n) {
    throw new Error(`${yLabel}: shape (${y.shape.join(", ")}) does not hold one label for each of the ${n} images`);
  }
  if (!/[iub]\d$/.test(y.descr)) throw new Error(`${yLabel}: labels must be integers, not ${y.descr}`);
  const raw = numbersOf(y, yLabel);
  let top = 0;
  for (let i = 0; i < n; i++) top = Math.max(top, raw[i]);
  const names = classes ?? Array.from({ length: top + 1 }, (_, i) => String(i));
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (!(raw[i] >= 0 && raw[i] < names.length)) {
      throw new Error(`${yLabel}: label ${raw[i]} at element ${i} is out of range 0..${names.length - 1}`);
    }
    labels[i] = raw[i];
  }
  if (names.length > 256) throw new Error(`${yLabel}: ${names.length} classes, at most 256 fit a uint8 label`);
  return checkDataset({ name, images, labels, n, c, h, w, classes: names });
}

// ---------------------------------------------------------------------------------------------
// IDX

async function loadIdx(path: string): Promise<LoadedData> {
  const isDir = (await pathKind(path)) === "dir";
  const dir = isDir ? path : dirName(path);
  const names = (await listDir(dir)).map((e) => e.name);
  const images = isDir
    ? names.find((n) => /^train-images[-.]idx3-ubyte(\.gz)?$/.test(n)) ?? names.find((n) => IDX_IMAGES.test(n))!
    : baseName(path);
  const labelsOf = (img: string) => {
    const want = img.replace(IDX_IMAGES, "-labels-idx1-ubyte");
    const found = names.find((n) => n === want || n === `${want}.gz`) ??
      names.find((n) =>
        n === want.replace(/-labels-/, "-labels.") || n === `${want.replace(/-labels-/, "-labels.")}.gz`
      );
    if (!found) throw new Error(`${joinPath(dir, img)}: no labels file beside it (expected ${want} or ${want}.gz)`);
    return joinPath(dir, found);
  };
  // Fashion-MNIST's files carry no class names; its standard ones are used when the path says fashion.
  const classes = /fashion/i.test(path) ? FASHION_MNIST_CLASSES : undefined;
  const load = (img: string, name: string) => loadIdxPair(joinPath(dir, img), labelsOf(img), { classes, name });
  const stem = baseName(dir.replace(/\/+$/, "")) || "idx";
  const train = await load(images, `${stem}-train`);
  const testImages = images.startsWith("train-")
    ? names.find((n) => n === images.replace(/^train-/, "t10k-"))
    : undefined;
  return { format: "idx", train, test: testImages ? await load(testImages, `${stem}-test`) : null };
}

// ---------------------------------------------------------------------------------------------
// writers

/** Paths (relative to the output) of the written training examples, for formats that have files per example. */
export interface Written {
  trainPaths: string[] | null;
  /** Where the output is (a directory, or the .npz file). */
  out: string;
}

/**
 * Writes `train` (and `test`) in `format` under `out`: an ImageFolder of PNGs (out/train/<class>/…, out/test/…),
 * `out/data.npz` (x_train, y_train, x_test, y_test uint8 NHWC/NHW, classes), or CIFAR-10 binary batches
 * (10 classes of 3x32x32 only). An ImageFolder reads back class by class (image-folder.ts folderOrder).
 */
export async function writeData(
  out: string,
  format: WriteFormat,
  train: Dataset,
  test: Dataset | null,
): Promise<Written> {
  await makeDir(out);
  switch (format) {
    case "imagefolder": {
      const trainPaths = await writeImageFolder(joinPath(out, "train"), train, "train/");
      if (test) await writeImageFolder(joinPath(out, "test"), test, "test/");
      return { trainPaths, out };
    }
    case "npz": {
      const nhwc = (ds: Dataset) => encodeNpy(toHwc(ds), ds.c === 1 ? [ds.n, ds.h, ds.w] : [ds.n, ds.h, ds.w, ds.c]);
      const arrays: Record<string, Uint8Array> = {
        x_train: nhwc(train),
        y_train: encodeNpy(train.labels, [train.n]),
        classes: encodeNpy(train.classes, [train.classes.length]),
      };
      if (test) Object.assign(arrays, { x_test: nhwc(test), y_test: encodeNpy(test.labels, [test.n]) });
      const file = joinPath(out, "data.npz");
      await writeFilesAtomic([[file, encodeNpz(arrays)]]);
      return { trainPaths: null, out: file };
    }
    case "cifar": {
      if (train.c !== 3 || train.h !== 32 || train.w !== 32 || train.classes.length !== 10) {
        const have = `${train.classes.length} of ${train.c}x${train.h}x${train.w}`;
        throw new Error(`${train.name}: the CIFAR-10 format holds 10 classes of 3x32x32 images, not ${have}`);
      }
      if (train.n < 5) {
        throw new Error(`${train.name}: the CIFAR-10 format needs at least 5 training images (one per batch file)`);
      }
      const records = (ds: Dataset, from: number, to: number) => {
        const rec = 1 + 3072, b = new Uint8Array((to - from) * rec);
        for (let i = from; i < to; i++) {
          b[(i - from) * rec] = ds.labels[i];
          b.set(ds.images.subarray(i * 3072, (i + 1) * 3072), (i - from) * rec + 1);
        }
        return b;
      };
      const at = (b: number) => Math.floor((b * train.n) / 5); // five batches, each at least one record
      const files: [string, Uint8Array][] = [[
        joinPath(out, "batches.meta.txt"),
        new TextEncoder().encode(train.classes.join("\n") + "\n"),
      ]];
      for (let b = 0; b < 5; b++) {
        files.push([joinPath(out, `data_batch_${b + 1}.bin`), records(train, at(b), at(b + 1))]);
      }
      if (test) files.push([joinPath(out, "test_batch.bin"), records(test, 0, test.n)]);
      await writeFilesAtomic(files);
      return { trainPaths: null, out };
    }
  }
}
