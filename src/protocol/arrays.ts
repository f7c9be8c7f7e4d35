// Binary arrays on the wire (application/octet-stream + x-dtype / x-shape headers) and their checks.
// Every array that arrives is checked against its plan: dtype, shape, byte size and finiteness.
import { type ArraySpec, type ArrayValue, type DType, DTYPE_BYTES } from "./job-kind.ts";

export const DTYPES = ["f32", "u32", "i32", "u8"] as const satisfies readonly DType[];

export function isDType(s: string | null | undefined): s is DType {
  return !!s && (DTYPES as readonly string[]).includes(s);
}

/** "3,4" -> [3, 4]; null when malformed (empty parts, non-integers, negatives). "" is a scalar: []. */
export function parseShape(header: string | null | undefined): number[] | null {
  if (header === null || header === undefined) return null;
  const t = header.trim();
  if (t === "") return [];
  const dims = t.split(",").map((p) => p.trim());
  if (dims.some((d) => !/^\d{1,10}$/.test(d))) return null;
  return dims.map(Number);
}

export function formatShape(shape: number[]): string {
  return shape.join(",");
}

export function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Byte size a planned output may take: exact for fixed shapes, maxBytes for [-1]-shaped u8 blobs. */
export function maxBytesOf(spec: ArraySpec, maxBytes?: number): number {
  if (isVariableLength(spec)) return maxBytes ?? 0;
  return numel(spec.shape) * DTYPE_BYTES[spec.dtype];
}

export function isVariableLength(spec: ArraySpec): boolean {
  return spec.shape.length === 1 && spec.shape[0] === -1;
}

/** A typed view over a copy of `bytes` (the copy makes the buffer aligned and owned). */
export function typedArray(dtype: DType, bytes: Uint8Array): ArrayValue["data"] {
  const buf = new Uint8Array(bytes.byteLength);
  buf.set(bytes);
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  switch (dtype) {
    case "f32":
      return new Float32Array(buf.buffer, 0, n);
    case "u32":
      return new Uint32Array(buf.buffer, 0, n);
    case "i32":
      return new Int32Array(buf.buffer, 0, n);
    case "u8":
      return buf;
  }
}

export function arrayBytes(a: ArrayValue): Uint8Array {
  return new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
}

const CTORS = { f32: Float32Array, u32: Uint32Array, i32: Int32Array, u8: Uint8Array } as const;

/** Check a received array against its planned spec. Returns the array, or a reason it is refused. */
export function checkArray(
  name: string,
  spec: ArraySpec,
  maxBytes: number | undefined,
  dtype: string | null | undefined,
  shapeHeader: string | null | undefined,
  bytes: Uint8Array,
): { ok: true; value: ArrayValue } | { ok: false; reason: string } {
  if (!isDType(dtype)) {
    return {
      ok: false,
      reason: `array "${name}": x-dtype must be one of ${DTYPES.join(", ")} (got ${JSON.stringify(dtype ?? null)})`,
    };
  }
  if (dtype !== spec.dtype) {
    return { ok: false, reason: `array "${name}": dtype ${dtype} does not match the planned ${spec.dtype}` };
  }
  const shape = parseShape(shapeHeader);
  if (!shape) {
    return {
      ok: false,
      reason: `array "${name}": x-shape must be comma-separated non-negative integers (got ${
        JSON.stringify(shapeHeader ?? null)
      })`,
    };
  }
  if (isVariableLength(spec)) {
    const cap = maxBytes ?? 0;
    if (shape.length !== 1) return { ok: false, reason: `array "${name}": shape [${shape}] must be one-dimensional` };
    if (shape[0] > cap) {
      return { ok: false, reason: `array "${name}": ${shape[0]} bytes exceed the planned maximum of ${cap}` };
    }
  } else if (shape.length !== spec.shape.length || shape.some((d, i) => d !== spec.shape[i])) {
    return { ok: false, reason: `array "${name}": shape [${shape}] does not match the planned [${spec.shape}]` };
  }
  const expected = numel(shape) * DTYPE_BYTES[dtype];
  if (bytes.byteLength !== expected) {
    return {
      ok: false,
      reason: `array "${name}": body has ${bytes.byteLength} bytes, shape [${shape}] of ${dtype} needs ${expected}`,
    };
  }
  const data = typedArray(dtype, bytes);
  if (dtype === "f32") {
    const f = data as Float32Array;
    for (let i = 0; i < f.length; i++) {
      if (!Number.isFinite(f[i])) {
        return { ok: false, reason: `array "${name}": element ${i} is ${f[i]} (arrays must be finite)` };
      }
    }
  }
  return { ok: true, value: { dtype, shape, data } };
}

/** Build an ArrayValue from a plain array (tests and executors). */
export function makeArray(dtype: DType, shape: number[], values: ArrayLike<number>): ArrayValue {
  const data = new CTORS[dtype](values.length);
  data.set(values as ArrayLike<number>);
  return { dtype, shape, data };
}
