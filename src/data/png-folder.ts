// Image-folder datasets (root/<class>/*.png) and PNG encoding for previews. Uses fast-png (pure JS,
// ESM, runs in Node, Deno and browsers).
//
// Channel policy: every image is converted to RGB, so the dataset always has c = 3. Grey is copied to
// all three channels, alpha is dropped (not composited; fully transparent pixels keep their colour),
// palette images are expanded, 16-bit samples keep their high byte, and 1/2/4-bit greyscale is
// refused. Width and height must match
// across the folder; a mismatch is an error naming the file.
import { convertIndexedToRgb, decode, encode } from "fast-png";
import { checkDataset, type Dataset } from "./dataset.ts";
import { joinPath, listDir, readBytes } from "./io.ts";

export interface RgbImage {
  w: number;
  h: number; /** interleaved RGB, row-major (HWC) */
  rgb: Uint8Array;
}

/** Decodes any PNG to 8-bit interleaved RGB (see the channel policy above); `label` names it in errors. */
export function decodePngRgb(bytes: Uint8Array, label: string): RgbImage {
  let png;
  try {
    png = decode(bytes, { checkCrc: true });
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
  const rgb = new Uint8Array(w * h * 3);
  const grey = ch < 3;
  for (let p = 0; p < w * h; p++) {
    for (let k = 0; k < 3; k++) rgb[p * 3 + k] = src[p * ch + (grey ? 0 : k)] >> shift;
  }
  return { w, h, rgb };
}

/** PNG bytes of an interleaved RGB image (HWC, w*h*3 bytes). */
export function encodePng(rgb: Uint8Array, w: number, h: number): Uint8Array {
  if (rgb.length !== w * h * 3) throw new Error(`encodePng: ${rgb.length} bytes is not ${w}x${h}x3 RGB`);
  return encode({ width: w, height: h, data: rgb, channels: 3, depth: 8 });
}

/** One CHW image (c = 1 or 3) as interleaved RGB; grey is copied to all three channels. */
export function chwToRgb(chw: Uint8Array, c: number, h: number, w: number): Uint8Array {
  if (c !== 1 && c !== 3) throw new Error(`chwToRgb: ${c} channels (need 1 or 3)`);
  const plane = h * w;
  const rgb = new Uint8Array(plane * 3);
  for (let p = 0; p < plane; p++) for (let k = 0; k < 3; k++) rgb[p * 3 + k] = chw[(c === 1 ? 0 : k) * plane + p];
  return rgb;
}

export interface GridOptions {
  /** Which images, in order (default: all). */
  indices?: ArrayLike<number>;
  /** Images per row (default: ceil(sqrt(count))). */
  cols?: number;
  /** Integer nearest-neighbour upscale of each image (default 1). */
  scale?: number;
  /** Border colour, drawn 1 px around and between images (default white). */
  borderColor?: [number, number, number];
}

/** A grid of CHW images (c = 1 or 3) as a PNG, with a 1-px border around every cell. */
export function imageGridPng(src: Pick<Dataset, "images" | "n" | "c" | "h" | "w">, opts: GridOptions = {}): Uint8Array {
  const { c, h, w } = src;
  const indices = opts.indices ?? Array.from({ length: src.n }, (_, i) => i);
  const m = indices.length;
  if (m === 0) throw new Error("imageGridPng: no images");
  const scale = opts.scale ?? 1;
  const cols = Math.min(opts.cols ?? Math.ceil(Math.sqrt(m)), m);
  const rows = Math.ceil(m / cols);
  const cw = w * scale, chh = h * scale;
  const W = cols * (cw + 1) + 1, H = rows * (chh + 1) + 1;
  const out = new Uint8Array(W * H * 3);
  const [br, bg, bb] = opts.borderColor ?? [255, 255, 255];
  for (let p = 0; p < W * H; p++) (out[p * 3] = br), (out[p * 3 + 1] = bg), (out[p * 3 + 2] = bb);
  const size = c * h * w;
  for (let j = 0; j < m; j++) {
    const i = indices[j];
    if (i < 0 || i >= src.n) throw new Error(`imageGridPng: index ${i} is out of range 0..${src.n - 1}`);
    const rgb = chwToRgb(src.images.subarray(i * size, (i + 1) * size), c, h, w);
    const x0 = (j % cols) * (cw + 1) + 1, y0 = Math.floor(j / cols) * (chh + 1) + 1;
    for (let y = 0; y < chh; y++) {
      for (let x = 0; x < cw; x++) {
        const s = (Math.floor(y / scale) * w + Math.floor(x / scale)) * 3, d = ((y0 + y) * W + x0 + x) * 3;
        out[d] = rgb[s];
        out[d + 1] = rgb[s + 1];
        out[d + 2] = rgb[s + 2];
      }
    }
  }
  return encodePng(out, W, H);
}

/**
 * Loads root/<class>/*.png: classes are the subfolder names sorted by code point (label = position),
 * files within a class sorted the same way; non-PNG files are ignored, an empty class is an error.
 */
export async function loadPngFolder(root: string, opts: { name?: string } = {}): Promise<Dataset> {
  const classes = (await listDir(root)).filter((e) => e.isDirectory && !e.name.startsWith(".")).map((e) => e.name)
    .sort();
  if (classes.length === 0) throw new Error(`${root}: no class subfolders`);
  if (classes.length > 256) throw new Error(`${root}: ${classes.length} classes, at most 256 fit a uint8 label`);
  const decoded: RgbImage[] = [];
  const labels: number[] = [];
  let first: { w: number; h: number; file: string } | null = null;
  for (const [label, cls] of classes.entries()) {
    const dir = joinPath(root, cls);
    const files = (await listDir(dir)).filter((e) => e.isFile && /\.png$/i.test(e.name)).map((e) => e.name).sort();
    if (files.length === 0) throw new Error(`${dir}: class folder has no .png files`);
    for (const f of files) {
      const file = joinPath(dir, f);
      const img = decodePngRgb(await readBytes(file), file);
      first ??= { w: img.w, h: img.h, file };
      if (img.w !== first.w || img.h !== first.h) {
        throw new Error(`${file}: ${img.w}x${img.h} differs from ${first.w}x${first.h} of ${first.file}`);
      }
      decoded.push(img);
      labels.push(label);
    }
  }
  const { w, h } = first!;
  const n = decoded.length, plane = w * h;
  const images = new Uint8Array(n * 3 * plane);
  decoded.forEach(({ rgb }, i) => {
    for (let p = 0; p < plane; p++) for (let k = 0; k < 3; k++) images[(i * 3 + k) * plane + p] = rgb[p * 3 + k];
  });
  const name = opts.name ?? (root.replace(/\/+$/, "").split("/").pop() || root);
  return checkDataset({ name, images, labels: Uint8Array.from(labels), n, c: 3, h, w, classes });
}
