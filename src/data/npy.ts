// NumPy's .npy and .npz formats (numpy.lib.format): a magic string, a version, a little Python-dict header
// (descr, fortran_order, shape), then the raw C-order data; an .npz is a zip of .npy files (stored or
// deflated). Enough of it for datasets: unsigned and signed integers, floats, bools and fixed-width
// unicode strings, little- or big-endian, C order.
import { unzipSync, zipSync } from "fflate";

export type NpyData =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

export interface NpyArray {
  /** numpy dtype string as read, e.g. "|u1", "<f4", "<U10". */
  descr: string;
  shape: number[];
  /** The values (strings for a unicode array). */
  data: NpyData | string[];
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const TYPED: Record<string, { size: number; make: (b: ArrayBuffer, n: number) => NpyData }> = {
  u1: { size: 1, make: (b, n) => new Uint8Array(b, 0, n) },
  b1: { size: 1, make: (b, n) => new Uint8Array(b, 0, n) },
  i1: { size: 1, make: (b, n) => new Int8Array(b, 0, n) },
  u2: { size: 2, make: (b, n) => new Uint16Array(b, 0, n) },
  i2: { size: 2, make: (b, n) => new Int16Array(b, 0, n) },
  u4: { size: 4, make: (b, n) => new Uint32Array(b, 0, n) },
  i4: { size: 4, make: (b, n) => new Int32Array(b, 0, n) },
  u8: { size: 8, make: (b, n) => new BigUint64Array(b, 0, n) },
  i8: { size: 8, make: (b, n) => new BigInt64Array(b, 0, n) },
  f4: { size: 4, make: (b, n) => new Float32Array(b, 0, n) },
  f8: { size: 8, make: (b, n) => new Float64Array(b, 0, n) },
};

/** Parses one .npy file; `label` names it in errors. */
export function parseNpy(bytes: Uint8Array, label: string): NpyArray {
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m)) throw new Error(`${label}: not a .npy file`);
  const major = bytes[6];
  if (major < 1 || major > 3) throw new Error(`${label}: .npy version ${major} is not supported`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lenBytes = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lenBytes) throw new Error(`${label}: truncated .npy header`);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = 8 + lenBytes + headerLen;
  if (bytes.length < start) throw new Error(`${label}: truncated .npy header (${bytes.length} bytes, needs ${start})`);
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(bytes.subarray(8 + lenBytes, start));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new Error(`${label}: unreadable .npy header ${header}`);
  if (fortran === "True") throw new Error(`${label}: Fortran-order arrays are not supported (save with C order)`);
  const shape = shapeText.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new Error(`${label}: bad shape (${shapeText})`);
  const count = shape.reduce((a, b) => a * b, 1);
  const m = /^([<>|=])([a-zA-Z])(\d+)$/.exec(descr);
  if (!m) throw new Error(`${label}: dtype ${descr} is not supported`);
  const [, order, kind, width] = m;
  const big = order === ">";
  const body = bytes.subarray(start);
  if (kind === "U") {
    const chars = Number(width);
    const need = count * chars * 4;
    if (body.length < need) throw new Error(`${label}: truncated .npy data (${body.length} of ${need} bytes)`);
    const bv = new DataView(body.buffer, body.byteOffset, need);
    const data = Array.from({ length: count }, (_, i) => {
      let s = "";
      for (let c = 0; c < chars; c++) {
        const cp = bv.getUint32((i * chars + c) * 4, !big);
        if (cp === 0) break;
        s += String.fromCodePoint(cp);
      }
      return s;
    });
    return { descr, shape, data };
  }
  const t = TYPED[`${kind}${width}`];
  if (!t) throw new Error(`${label}: dtype ${descr} is not supported`);
  const need = count * t.size;
  if (body.length < need) throw new Error(`${label}: truncated .npy data (${body.length} of ${need} bytes)`);
  if (body.length > need) throw new Error(`${label}: ${body.length - need} unexpected bytes after the array data`);
  const copy = body.slice(0, need); // aligned, owned
  if (big && t.size > 1) {
    for (let i = 0; i < need; i += t.size) copy.subarray(i, i + t.size).reverse();
  }
  return { descr, shape, data: t.make(copy.buffer, count) };
}

/** Unzips an .npz into its arrays by name (".npy" dropped). */
export function parseNpz(bytes: Uint8Array, label: string): Map<string, NpyArray> {
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes);
  } catch (e) {
    throw new Error(`${label}: not a readable .npz (zip) file (${(e as Error).message})`);
  }
  const out = new Map<string, NpyArray>();
  for (const [name, data] of Object.entries(files)) {
    if (!name.endsWith(".npy")) continue;
    out.set(name.slice(0, -4), parseNpy(data, `${label}:${name}`));
  }
  if (out.size === 0) throw new Error(`${label}: the .npz holds no arrays`);
  return out;
}

/** Values of a numeric array as numbers (bigints converted; exact below 2^53). */
export function numbersOf(a: NpyArray, label: string): ArrayLike<number> {
  if (Array.isArray(a.data)) throw new Error(`${label}: expected numbers, found strings (${a.descr})`);
  if (a.data instanceof BigInt64Array || a.data instanceof BigUint64Array) return Array.from(a.data, Number);
  return a.data as ArrayLike<number>;
}

const DESCR = new Map<unknown, string>([
  [Uint8Array, "|u1"],
  [Int32Array, "<i4"],
  [Uint32Array, "<u4"],
  [Float32Array, "<f4"],
  [Float64Array, "<f8"],
]);

/** A C-order .npy (version 1) of a typed array or of strings (stored as fixed-width unicode). */
export function encodeNpy(
  data: Uint8Array | Int32Array | Uint32Array | Float32Array | Float64Array | string[],
  shape: number[],
): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  if (data.length !== count) throw new Error(`encodeNpy: ${data.length} values for shape (${shape.join(", ")})`);
  let descr: string;
  let body: Uint8Array;
  if (Array.isArray(data)) {
    const chars = Math.max(1, ...data.map((s) => [...s].length));
    descr = `<U${chars}`;
    const v = new DataView(new ArrayBuffer(count * chars * 4));
    data.forEach((s, i) => [...s].forEach((ch, c) => v.setUint32((i * chars + c) * 4, ch.codePointAt(0)!, true)));
    body = new Uint8Array(v.buffer);
  } else {
    descr = DESCR.get(data.constructor)!;
    body = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${dims}), }`;
  // numpy pads the header with spaces to a multiple of 64 bytes (including the 10-byte preamble), newline last.
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n";
  const out = new Uint8Array(10 + header.length + body.length);
  out.set(MAGIC);
  out[6] = 1;
  out[7] = 0;
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(body, 10 + header.length);
  return out;
}

/** An .npz (deflated, as numpy.savez_compressed writes) of named .npy files. */
export function encodeNpz(arrays: Record<string, Uint8Array>): Uint8Array {
  return zipSync(Object.fromEntries(Object.entries(arrays).map(([k, v]) => [`${k}.npy`, v])), { level: 6 });
}
