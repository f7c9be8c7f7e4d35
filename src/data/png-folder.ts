// PNG images as RGB (attack patterns) and PNG encoding, and image grids for previews (fast-png: pure JS,
// ESM, runs in Node, Deno and browsers).
import { encode } from "fast-png";
import type { Dataset } from "./dataset.ts";
import { decodeImage } from "./image-folder.ts";

export interface RgbImage {
  w: number;
  h: number; /** interleaved RGB, row-major (HWC) */
  rgb: Uint8Array;
}

/** Any PNG (or JPEG) as 8-bit interleaved RGB: grey copied to all three channels, alpha dropped. */
export function decodePngRgb(bytes: Uint8Array, label: string): RgbImage {
  const { w, h, c, pixels } = decodeImage(bytes, label);
  if (c === 3) return { w, h, rgb: pixels };
  return { w, h, rgb: Uint8Array.from({ length: w * h * 3 }, (_, i) => pixels[Math.floor(i / 3)]) };
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
