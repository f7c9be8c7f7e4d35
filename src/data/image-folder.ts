// Image folders in torchvision's ImageFolder layout: ROOT/<class>/<file>.png|.jpg|.jpeg, classes sorted by
// name (label = position), files within a class sorted the same way; or split as ROOT/train/<class>/… and
// ROOT/test/<class>/…. PNG through fast-png, JPEG through jpeg-js (both pure JS: Node, Deno, browsers).
//
// Channels: when every image is grey (a grey PNG, or a JPEG whose pixels all have R = G = B) the dataset
// has one channel; otherwise three, grey images copied to all three. Alpha is dropped.
// Sizes: every image must have the first one's size, unless `resize` is given: then each image is resampled
// bilinearly to it (half-pixel centres, no antialiasing: torch's interpolate(mode="bilinear",
// align_corners=False, antialias=False)), rounded to the nearest integer.
import jpeg from "jpeg-js";
import { convertIndexedToRgb, decode as decodePng, encode as encodePng } from "fast-png";
import { checkDataset, type Dataset, toHwc } from "./dataset.ts";
import { joinPath, listDir, makeDir, pathKind, readBytes, writeFilesAtomic } from "./io.ts";

/** A decoded image: interleaved (HWC) pixels with 1 (grey) or 3 (RGB) channels. */
export interface DecodedImage {
  w: number;
  h: number;
  c: 1 | 3;
  pixels: Uint8Array;
}

const IMAGE_FILE = /\.(png|jpe?g)$/i;

/** PNG or JPEG (told apart by their magic bytes) to 8-bit grey or RGB; `label` names the file in errors. */
export function decodeImage(bytes: Uint8Array, label: string): DecodedImage {
  if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return pngPixels(bytes, label);
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return jpegPixels(bytes, label);
  throw new Error(`${label}: not a PNG or JPEG image`);
}

function pngPixels(bytes: Uint8Array, label: string): DecodedImage {
  let png;
  try {
    png = decodePng(bytes, { checkCrc: true });
  } catch (e) {
    throw new Error(`${label}: cannot decode PNG (${(e as Error).message})`);
  }
  const { width: w, height: h } = png;
  let src: ArrayLike<number> = png.data;
  let ch = png.channels;
  let shift = png.depth === 16 ? 8 : 0;
  if (png.palette) {
    src = convertIndexedToRgb(png);
    ch = src.length / (w * h);
    shift = 0;
  } else if (png.depth < 8) {
    // fast-png leaves sub-byte grey packed; such files are rare in datasets, so refuse them plainly.
    throw new Error(`${label}: ${png.depth}-bit greyscale PNG is not supported (re-save as 8-bit)`);
  }
  if (![1, 2, 3, 4].includes(ch)) throw new Error(`${label}: unsupported PNG with ${ch} channels`);
  const c = ch < 3 ? 1 : 3;
  const pixels = new Uint8Array(w * h * c);
  for (let p = 0; p < w * h; p++) for (let k = 0; k < c; k++) pixels[p * c + k] = src[p * ch + k] >> shift;
  return { w, h, c, pixels };
}

function jpegPixels(bytes: Uint8Array, label: string): DecodedImage {
  let img;
  try {
    img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, tolerantDecoding: false });
  } catch (e) {
    throw new Error(`${label}: cannot decode JPEG (${(e as Error).message})`);
  }
  const { width: w, height: h, data } = img;
  let grey = true;
  for (let p = 0; p < w * h && grey; p++) grey = data[3 * p] === data[3 * p + 1] && data[3 * p] === data[3 * p + 2];
  if (!grey) return { w, h, c: 3, pixels: data };
  const pixels = new Uint8Array(w * h);
  for (let p = 0; p < w * h; p++) pixels[p] = data[3 * p];
  return { w, h, c: 1, pixels };
}

/** Bilinear resampling of an HWC image to `h` x `w` (see the header for the convention). */
export function resizeBilinear(img: DecodedImage, h: number, w: number): DecodedImage {
  if (img.h === h && img.w === w) return img;
  const { c } = img;
  const out = new Uint8Array(h * w * c);
  const source = (dst: number, size: number, srcSize: number) => {
    const x = Math.max(0, (dst + 0.5) * (srcSize / size) - 0.5);
    const x0 = Math.min(Math.floor(x), srcSize - 1);
    return { x0, x1: Math.min(x0 + 1, srcSize - 1), f: x - x0 };
  };
  for (let y = 0; y < h; y++) {
    const sy = source(y, h, img.h);
    for (let x = 0; x < w; x++) {
      const sx = source(x, w, img.w);
      for (let k = 0; k < c; k++) {
        const at = (yy: number, xx: number) => img.pixels[(yy * img.w + xx) * c + k];
        const top = at(sy.x0, sx.x0) * (1 - sx.f) + at(sy.x0, sx.x1) * sx.f;
        const bottom = at(sy.x1, sx.x0) * (1 - sx.f) + at(sy.x1, sx.x1) * sx.f;
        out[(y * w + x) * c + k] = Math.round(top * (1 - sy.f) + bottom * sy.f);
      }
    }
  }
  return { w, h, c, pixels: out };
}

/** A dataset read from files: each example's path, relative to the root. */
export interface FileDataset extends Dataset {
  paths: string[];
}

export interface ImageFolderOptions {
  /** Resample every image to [h, w]; without it, differing sizes are an error. */
  resize?: [number, number];
}

/** Whether `root` is split as root/train/<class>/… (and usually root/test/<class>/…). */
export async function isSplitFolder(root: string): Promise<boolean> {
  return (await pathKind(joinPath(root, "train"))) === "dir" &&
    (await listDir(joinPath(root, "train"))).some((e) => e.isDirectory);
}

/**
 * One ImageFolder: root/<class>/<image>. `classes` fixes the class list (a test split takes the training
 * split's, by name); `prefix` is put before each path (the split's folder name).
 */
export async function loadImageFolder(
  root: string,
  opts: ImageFolderOptions & { classes?: string[]; prefix?: string; name?: string } = {},
): Promise<FileDataset> {
  const found = (await listDir(root)).filter((e) => !e.name.startsWith("."));
  const stray = found.find((e) => !e.isDirectory);
  if (stray) {
    throw new Error(`${joinPath(root, stray.name)}: a file beside the class folders (expected ROOT/<class>/<image>)`);
  }
  const folders = found.map((e) => e.name).sort();
  if (folders.length === 0) throw new Error(`${root}: no class folders (expected ROOT/<class>/<image>)`);
  const classes = opts.classes ?? folders;
  if (classes.length > 256) throw new Error(`${root}: ${classes.length} classes, at most 256 fit a uint8 label`);
  const decoded: DecodedImage[] = [];
  const labels: number[] = [];
  const paths: string[] = [];
  let first: { w: number; h: number; path: string } | null = null;
  for (const folder of folders) {
    const label = classes.indexOf(folder);
    const dir = joinPath(root, folder);
    if (label < 0) throw new Error(`${dir}: class "${folder}" is not one of the training split's classes`);
    const files = (await listDir(dir)).filter((e) => !e.name.startsWith(".")).map((e) => e.name).sort();
    if (files.length === 0) throw new Error(`${dir}: empty class folder`);
    for (const f of files) {
      const path = joinPath(dir, f);
      if (!IMAGE_FILE.test(f)) throw new Error(`${path}: not an image file (.png, .jpg or .jpeg)`);
      let img = decodeImage(await readBytes(path), path);
      if (opts.resize) img = resizeBilinear(img, ...opts.resize);
      first ??= { w: img.w, h: img.h, path };
      if (img.w !== first.w || img.h !== first.h) {
        throw new Error(
          `${path}: ${img.w}x${img.h} differs from ${first.w}x${first.h} of ${first.path} (pass --resize HxW)`,
        );
      }
      decoded.push(img);
      labels.push(label);
      paths.push(`${opts.prefix ?? ""}${folder}/${f}`);
    }
  }
  const { w, h } = first!;
  const c = decoded.every((d) => d.c === 1) ? 1 : 3;
  const n = decoded.length, plane = w * h;
  const images = new Uint8Array(n * c * plane);
  decoded.forEach((d, i) => {
    for (let p = 0; p < plane; p++) {
      for (let k = 0; k < c; k++) images[(i * c + k) * plane + p] = d.pixels[p * d.c + (d.c === 1 ? 0 : k)];
    }
  });
  const name = opts.name ?? (root.replace(/\/+$/, "").split("/").pop() || root);
  return { ...checkDataset({ name, images, labels: Uint8Array.from(labels), n, c, h, w, classes }), paths };
}

/** Folder names for the classes: the names themselves when they sort into label order, else "NN-name". */
export function classFolders(classes: string[]): string[] {
  const safe = classes.map((c) => c.replace(/[/\\\0]/g, "_").replace(/^\.+/, "_") || "_");
  const sorted = safe.every((s, i) => i === 0 || safe[i - 1] < s);
  const width = String(classes.length - 1).length;
  return sorted ? safe : safe.map((s, i) => `${String(i).padStart(width, "0")}-${s}`);
}

/** The order an ImageFolder reads `ds` back in (class by class, then by index): position -> index in `ds`. */
export function folderOrder(ds: Dataset): Uint32Array {
  return Uint32Array.from({ length: ds.n }, (_, i) => i).sort((a, b) => ds.labels[a] - ds.labels[b] || a - b);
}

/**
 * Writes `ds` as dir/<class>/<index>.png (grey PNG for one channel, RGB for three), `index` zero-padded so
 * that names sort in index order. A class without examples gets no folder (an empty one would not read).
 * Returns each written file's path relative to `dir`, by index in `ds`.
 */
export async function writeImageFolder(dir: string, ds: Dataset, prefix = ""): Promise<string[]> {
  if (ds.c !== 1 && ds.c !== 3) throw new Error(`${ds.name}: ${ds.c} channels cannot be written as PNG`);
  const folders = classFolders(ds.classes);
  for (const label of new Set(ds.labels)) await makeDir(joinPath(dir, folders[label]));
  const width = String(Math.max(ds.n - 1, 0)).length;
  const size = ds.c * ds.h * ds.w;
  const pixels = toHwc(ds);
  const paths: string[] = [];
  const files: [string, Uint8Array][] = [];
  for (let i = 0; i < ds.n; i++) {
    const hwc = pixels.subarray(i * size, (i + 1) * size);
    const rel = `${folders[ds.labels[i]]}/${String(i).padStart(width, "0")}.png`;
    paths.push(prefix + rel);
    files.push([joinPath(dir, rel), encodePng({ width: ds.w, height: ds.h, data: hwc, channels: ds.c, depth: 8 })]);
  }
  for (let at = 0; at < files.length; at += 512) await writeFilesAtomic(files.slice(at, at + 512));
  return paths;
}
