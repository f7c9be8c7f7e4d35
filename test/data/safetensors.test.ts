import { describe, expect, it } from "vitest";
import { join } from "node:path";
import {
  decodeSafetensors,
  encodeSafetensors,
  loadCheckpoint,
  saveCheckpoint,
  type Tensor,
} from "../../src/checkpoint/safetensors.ts";
import { mulberry32 } from "../../src/data/dataset.ts";
import { testSeed } from "../support/rng.ts";
import { tempDir } from "./fixtures.ts";

const enc = (s: string) => Array.from(new TextEncoder().encode(s));

/** A file built by hand from a header JSON string (padded here) and raw data bytes. */
function build(header: string, data: number[] = [], n?: number): Uint8Array {
  const h = enc(header);
  while (h.length % 8) h.push(0x20);
  const len = n ?? h.length;
  return Uint8Array.from([len & 255, (len >> 8) & 255, (len >> 16) & 255, len >>> 24, 0, 0, 0, 0, ...h, ...data]);
}

describe("safetensors", () => {
  it("encodes byte-for-byte as the spec lays out", () => {
    const header = '{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
      '"b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}}';
    expect(header.length).toBe(138); // → padded to 144 = 0x90 with 6 spaces
    const expected = [
      0x90,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      ...enc(header),
      0x20,
      0x20,
      0x20,
      0x20,
      0x20,
      0x20,
      0x00,
      0x00,
      0x80,
      0x3f, // 1.0f, little-endian
      0x00,
      0x00,
      0x20,
      0xc0, // -2.5f
      1,
      2,
      3,
    ];
    const got = encodeSafetensors({
      w: { dtype: "F32", shape: [2], data: Float32Array.of(1, -2.5) },
      b: { dtype: "U8", shape: [3], data: Uint8Array.of(1, 2, 3) },
    }, { format: "pt" });
    expect(Array.from(got)).toEqual(expected);
    const back = decodeSafetensors(Uint8Array.from(expected));
    expect(back.metadata).toEqual({ format: "pt" });
    expect(Object.keys(back.tensors)).toEqual(["w", "b"]);
    expect(Array.from(back.tensors.w.data)).toEqual([1, -2.5]);
    expect(back.tensors.b).toEqual({ dtype: "U8", shape: [3], data: Uint8Array.of(1, 2, 3) });
    // Without metadata there is no __metadata__ key; an empty file has an 8-byte "{}" header.
    expect(Array.from(encodeSafetensors({}))).toEqual([8, 0, 0, 0, 0, 0, 0, 0, ...enc("{}      ")]);
  });

  it("round-trips every dtype, odd shapes and views, through a file", async () => {
    const rand = mulberry32(testSeed("safetensors round trip"));
    const backing = new Float32Array(13).map(() => rand() * 2 - 1);
    const tensors: Record<string, Tensor> = {
      "conv1.weight": { dtype: "F32", shape: [2, 3, 2], data: backing.subarray(1) }, // a view at byte offset 4
      "step": { dtype: "U32", shape: [], data: Uint32Array.of(4000000000) },
      "bias": {
        dtype: "I32",
        shape: [5],
        data: Int32Array.from({ length: 5 }, () => Math.floor(rand() * 2 ** 32) - 2 ** 31),
      },
      "mask": { dtype: "U8", shape: [3, 3], data: Uint8Array.from({ length: 9 }, () => Math.floor(rand() * 256)) },
      "empty": { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
    };
    const path = join(await tempDir("ckpt"), "model.safetensors");
    await saveCheckpoint(path, tensors, { epoch: "3", "note ü": "ünïcode" });
    const back = await loadCheckpoint(path);
    expect(back.metadata).toEqual({ epoch: "3", "note ü": "ünïcode" });
    expect(Object.keys(back.tensors)).toEqual(Object.keys(tensors));
    for (const [k, t] of Object.entries(tensors)) {
      expect(back.tensors[k].dtype).toBe(t.dtype);
      expect(back.tensors[k].shape).toEqual(t.shape);
      expect(back.tensors[k].data.constructor).toBe(t.data.constructor);
      expect(Array.from(back.tensors[k].data)).toEqual(Array.from(t.data));
    }
    const bytes = encodeSafetensors(tensors);
    const n = bytes[0] | (bytes[1] << 8);
    expect(n % 8).toBe(0);
  });

  it("refuses to encode inconsistent tensors", () => {
    expect(() => encodeSafetensors({ x: { dtype: "F32", shape: [3], data: new Float32Array(2) } })).toThrow(
      "safetensors: tensor x: shape [3] has 3 elements, data has 2",
    );
    expect(() => encodeSafetensors({ x: { dtype: "I32", shape: [2], data: new Float32Array(2) } })).toThrow(
      "safetensors: tensor x: dtype I32 needs a Int32Array, got Float32Array",
    );
    expect(() => encodeSafetensors({ __metadata__: { dtype: "U8", shape: [0], data: new Uint8Array(0) } })).toThrow(
      /invalid tensor name/,
    );
  });

  it("rejects malformed files with clear errors", () => {
    const ok =
      '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}';
    expect(decodeSafetensors(build(ok, [1, 2, 3, 4])).tensors.b.data).toEqual(Uint8Array.of(3, 4));
    const bad = (bytes: Uint8Array) => () => decodeSafetensors(bytes, "m.safetensors");
    expect(bad(new Uint8Array(5))).toThrow("m.safetensors: 5 bytes is too short for the 8-byte header length");
    expect(bad(build(ok, [1, 2, 3, 4], 1000))).toThrow(
      "m.safetensors: header length 1000 exceeds the 116 bytes after it",
    );
    expect(bad(build("{nope", []))).toThrow(/m\.safetensors: header is not valid JSON/);
    expect(bad(build("[1,2]", []))).toThrow("m.safetensors: header is not a JSON object");
    expect(bad(build('{"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}', [0, 0]))).toThrow(
      'm.safetensors: tensor a: unsupported dtype "BF16"',
    );
    expect(bad(build('{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,2]}}', [0, 0]))).toThrow(
      "m.safetensors: tensor a: bad shape [-1]",
    );
    expect(bad(build('{"a":{"dtype":"U8","shape":[2],"data_offsets":[2,0]}}', [0, 0]))).toThrow(
      "m.safetensors: tensor a: bad data_offsets [2,0]",
    );
    expect(bad(build('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}', [0, 0]))).toThrow(
      "m.safetensors: tensor a: data_offsets [0, 4] are out of range (2 data bytes)",
    );
    expect(bad(build('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', [0, 0, 0, 0]))).toThrow(
      "m.safetensors: tensor a: shape [2] of F32 needs 8 bytes, data_offsets span 4",
    );
    const two = (a: number[], b: number[]) =>
      `{"a":{"dtype":"U8","shape":[${a[1] - a[0]}],"data_offsets":[${a}]},"b":{"dtype":"U8","shape":[${
        b[1] - b[0]
      }],"data_offsets":[${b}]}}`;
    expect(bad(build(two([0, 3], [2, 4]), [1, 2, 3, 4]))).toThrow(
      "m.safetensors: tensors a and b have overlapping data_offsets",
    );
    expect(bad(build(two([0, 1], [2, 4]), [1, 2, 3, 4]))).toThrow(
      "m.safetensors: non-contiguous data_offsets: 1 unused bytes between a and b",
    );
    expect(bad(build(two([1, 2], [2, 4]), [1, 2, 3, 4]))).toThrow(
      "m.safetensors: non-contiguous data_offsets: 1 unused bytes between start of data and a",
    );
    expect(bad(build(ok, [1, 2, 3, 4, 5]))).toThrow("m.safetensors: 1 bytes after the last tensor's data");
    expect(bad(build('{"__metadata__":{"epoch":3}}'))).toThrow("m.safetensors: __metadata__.epoch is not a string");
  });
});
