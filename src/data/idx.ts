// IDX files (MNIST, Fashion-MNIST): big-endian header 00 00 <dtype> <ndims>, ndims u32 sizes, then
// the data. Only unsigned bytes (dtype 0x08) are supported, which is what image/label files use.
import { checkDataset, type Dataset } from "./dataset.ts";
import { baseName, gunzipChecked, isGzip, joinPath, listDir, readBytes } from "./io.ts";

export const FASHION_MNIST_CLASSES = [
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
];

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** Parses an IDX byte array (gunzip first if needed); `label` names the file in errors. */
export function parseIdx(bytes: Uint8Array, label: string, expectDims?: number): IdxArray {
  if (bytes.length < 4) throw new Error(`${label}: truncated IDX file (${bytes.length} bytes, header needs 4)`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new Error(`${label}: bad IDX magic ${hex(bytes, 4)} (must start with 00 00)`);
  }
  if (bytes[2] !== 0x08) {
    throw new Error(
      `${label}: IDX dtype 0x${bytes[2].toString(16).padStart(2, "0")} is not supported (only 0x08, unsigned byte)`,
    );
  }
  const ndims = bytes[3];
  if (expectDims !== undefined && ndims !== expectDims) {
    throw new Error(`${label}: IDX has ${ndims} dimensions, expected ${expectDims}`);
  }
  const start = 4 + 4 * ndims;
  if (bytes.length < start) {
    throw new Error(`${label}: truncated IDX header (${bytes.length} bytes, ${ndims} dimensions need ${start})`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: ndims }, (_, i) => view.getUint32(4 + 4 * i, false));
  const size = dims.reduce((a, b) => a * b, 1);
  const have = bytes.length - start;
  if (have < size) {
    throw new Error(`${label}: truncated IDX data: dimensions ${dims.join("x")} need ${size} bytes, file has ${have}`);
  }
  if (have > size) {
    throw new Error(`${label}: ${have - size} unexpected trailing bytes after IDX data of ${dims.join("x")}`);
  }
  return { dims, data: bytes.subarray(start) };
}

function hex(b: Uint8Array, n: number): string {
  return Array.from(b.subarray(0, n), (x) => x.toString(16).padStart(2, "0")).join(" ");
}

async function readIdx(path: string, expectDims: number): Promise<IdxArray> {
  const label = baseName(path);
  const raw = await readBytes(path);
  return parseIdx(isGzip(raw) ? gunzipChecked(raw, label) : raw, label, expectDims);
}

export interface IdxOptions {
  name?: string;
  /** Class names; defaults to "0".."9" (MNIST digits). Labels must be below classes.length. */
  classes?: string[];
}

/** An images file (n x h x w) and a labels file (n) into a 1-channel Dataset; gzip is detected by magic. */
export async function loadIdxPair(imagesPath: string, labelsPath: string, opts: IdxOptions = {}): Promise<Dataset> {
  const [img, lab] = await Promise.all([readIdx(imagesPath, 3), readIdx(labelsPath, 1)]);
  const [n, h, w] = img.dims;
  if (lab.dims[0] !== n) {
    throw new Error(`${baseName(labelsPath)}: ${lab.dims[0]} labels but ${baseName(imagesPath)} has ${n} images`);
  }
  const classes = opts.classes ?? Array.from({ length: 10 }, (_, i) => String(i));
  for (let i = 0; i < n; i++) {
    if (lab.data[i] >= classes.length) {
      throw new Error(
        `${baseName(labelsPath)}: label ${lab.data[i]} at record ${i} is out of range 0..${classes.length - 1}`,
      );
    }
  }
  // Copy out of the (possibly shared, gunzipped) file buffers so the dataset owns its memory.
  return checkDataset({
    name: opts.name ?? baseName(imagesPath).replace(/(-images)?[-.]idx3-ubyte(\.gz)?$/, ""),
    images: img.data.slice(),
    labels: lab.data.slice(),
    n,
    c: 1,
    h,
    w,
    classes,
  });
}

/**
 * Fashion-MNIST from a directory of the four standard files (gzipped, as Debian's dataset-fashion-mnist installs them,
 * or raw).
 */
export async function loadFashionMnist(
  dir = "/usr/share/datasets/fashion-mnist",
  split: "train" | "test" = "train",
): Promise<Dataset> {
  const prefix = split === "train" ? "train" : "t10k";
  const names = new Set((await listDir(dir)).map((e) => e.name));
  const pick = (stem: string) => joinPath(dir, names.has(`${stem}.gz`) || !names.has(stem) ? `${stem}.gz` : stem);
  return loadIdxPair(pick(`${prefix}-images-idx3-ubyte`), pick(`${prefix}-labels-idx1-ubyte`), {
    name: `fashion-mnist-${split}`,
    classes: FASHION_MNIST_CLASSES,
  });
}
