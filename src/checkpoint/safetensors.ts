// safetensors (https://github.com/huggingface/safetensors): u64 little-endian header length N, N bytes
// of JSON header (space-padded to a multiple of 8), then the raw little-endian tensor bytes, packed in
// header order with data_offsets relative to the start of that byte buffer.
import { readBytes, writeBytesAtomic } from "../data/io.ts";

export type Dtype = "F32" | "U32" | "I32" | "U8";
export type TensorData = Float32Array | Uint32Array | Int32Array | Uint8Array;
export interface Tensor {
  dtype: Dtype;
  shape: number[];
  data: TensorData;
}
export interface SafetensorsFile {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

const ARRAYS = { F32: Float32Array, U32: Uint32Array, I32: Int32Array, U8: Uint8Array } as const;
/** The reference implementation refuses headers above 100 MB; so do we (a corrupt length is likely). */
const MAX_HEADER = 100_000_000;

// Typed arrays use the host byte order and the format is little-endian; every WebGPU host is LE.
if (new Uint8Array(Uint16Array.of(1).buffer)[0] !== 1) {
  throw new Error("safetensors: big-endian hosts are not supported");
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const isDim = (d: unknown): d is number => Number.isSafeInteger(d) && (d as number) >= 0;

export function encodeSafetensors(tensors: Record<string, Tensor>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new Error(`safetensors: metadata ${k} is not a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  const entries = Object.entries(tensors);
  for (const [name, t] of entries) {
    if (name === "__metadata__" || name === "") {
      throw new Error(`safetensors: invalid tensor name ${JSON.stringify(name)}`);
    }
    const Ctor = ARRAYS[t.dtype];
    if (!Ctor) throw new Error(`safetensors: tensor ${name}: unsupported dtype ${t.dtype}`);
    if (!(t.data instanceof Ctor)) {
      throw new Error(
        `safetensors: tensor ${name}: dtype ${t.dtype} needs a ${Ctor.name}, got ${t.data.constructor.name}`,
      );
    }
    if (!t.shape.every(isDim)) throw new Error(`safetensors: tensor ${name}: bad shape ${JSON.stringify(t.shape)}`);
    if (numel(t.shape) !== t.data.length) {
      throw new Error(
        `safetensors: tensor ${name}: shape [${t.shape}] has ${numel(t.shape)} elements, data has ${t.data.length}`,
      );
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const n = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + n + offset);
  const view = new DataView(out.buffer);
  view.setUint32(0, n, true);
  view.setUint32(4, Math.floor(n / 2 ** 32), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + n);
  let at = 8 + n;
  for (const [, t] of entries) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

/** Parses and validates a safetensors buffer; tensors are copied, so they are aligned and own their memory. */
export function decodeSafetensors(bytes: Uint8Array, label = "safetensors"): SafetensorsFile {
  const fail = (msg: string): never => {
    throw new Error(`${label}: ${msg}`);
  };
  if (bytes.length < 8) fail(`${bytes.length} bytes is too short for the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
  if (n > bytes.length - 8) fail(`header length ${n} exceeds the ${bytes.length - 8} bytes after it`);
  if (n > MAX_HEADER) fail(`header length ${n} is over the ${MAX_HEADER}-byte limit`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) fail("header is not a JSON object");
  const data = bytes.subarray(8 + n);
  const metadata: Record<string, string> = {};
  const spans: { name: string; begin: number; end: number; dtype: Dtype; shape: number[] }[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail("__metadata__ is not an object");
      for (const [k, v] of Object.entries(raw as object)) {
        if (typeof v !== "string") fail(`__metadata__.${k} is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof t !== "object" || t === null) fail(`tensor ${name}: entry is not an object`);
    if (typeof t.dtype !== "string" || !(t.dtype in ARRAYS)) {
      fail(`tensor ${name}: unsupported dtype ${JSON.stringify(t.dtype)}`);
    }
    const dtype = t.dtype as Dtype;
    if (!Array.isArray(t.shape) || !t.shape.every(isDim)) fail(`tensor ${name}: bad shape ${JSON.stringify(t.shape)}`);
    const shape = t.shape as number[];
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every(isDim) || off[0] > off[1]) {
      fail(`tensor ${name}: bad data_offsets ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as number[];
    if (end > data.length) {
      fail(`tensor ${name}: data_offsets [${begin}, ${end}] are out of range (${data.length} data bytes)`);
    }
    const need = numel(shape) * ARRAYS[dtype].BYTES_PER_ELEMENT;
    if (end - begin !== need) {
      fail(`tensor ${name}: shape [${shape}] of ${dtype} needs ${need} bytes, data_offsets span ${end - begin}`);
    }
    spans.push({ name, begin, end, dtype, shape });
  }
  // The buffer must be exactly the tensors, back to back: no gaps, no overlaps, nothing after.
  const sorted = [...spans].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev = "start of data";
  for (const s of sorted) {
    if (s.begin < pos) fail(`tensors ${prev} and ${s.name} have overlapping data_offsets`);
    if (s.begin > pos) fail(`non-contiguous data_offsets: ${s.begin - pos} unused bytes between ${prev} and ${s.name}`);
    pos = s.end;
    prev = s.name;
  }
  if (pos !== data.length) fail(`${data.length - pos} bytes after the last tensor's data`);
  const tensors: Record<string, Tensor> = {};
  for (const s of spans) {
    tensors[s.name] = { dtype: s.dtype, shape: s.shape, data: new ARRAYS[s.dtype](data.slice(s.begin, s.end).buffer) };
  }
  return { tensors, metadata };
}

export async function saveCheckpoint(
  path: string,
  tensors: Record<string, Tensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeBytesAtomic(path, encodeSafetensors(tensors, metadata));
}

export async function loadCheckpoint(path: string): Promise<SafetensorsFile> {
  return decodeSafetensors(await readBytes(path), path);
}
