// Builders for small on-disk test inputs (tarballs, CIFAR batches, temp dirs).
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mulberry32 } from "../../src/data/dataset.ts";

export const tempDir = (prefix: string): Promise<string> => mkdtemp(join(tmpdir(), `${prefix}-`));

export const CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/** A minimal ustar archive (regular files only) with the two zero end blocks. */
export function makeTar(files: Record<string, Uint8Array>): Uint8Array {
  const blocks: Uint8Array[] = [];
  const enc = new TextEncoder();
  for (const [name, data] of Object.entries(files)) {
    const h = new Uint8Array(512);
    const put = (s: string, at: number) => h.set(enc.encode(s), at);
    put(name, 0);
    put("0000644\0", 100);
    put("0000000\0", 108);
    put("0000000\0", 116);
    put(data.length.toString(8).padStart(11, "0") + "\0", 124);
    put("00000000000\0", 136);
    put("        ", 148);
    put("0", 156);
    put("ustar\0" + "00", 257);
    const sum = h.reduce((a, b) => a + b, 0);
    put(sum.toString(8).padStart(6, "0") + "\0 ", 148);
    blocks.push(h, data, new Uint8Array((512 - (data.length % 512)) % 512));
  }
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((a, b) => a + b.length, 0));
  let at = 0;
  for (const b of blocks) out.set(b, at), (at += b.length);
  return out;
}

/** `records` random CIFAR records (label byte + 3072 pixels) from a seeded generator. */
export function cifarBatch(rand: () => number, records: number): Uint8Array {
  const b = new Uint8Array(records * 3073);
  for (let r = 0; r < records; r++) {
    b[r * 3073] = Math.floor(rand() * 10);
    for (let p = 1; p < 3073; p++) b[r * 3073 + p] = Math.floor(rand() * 256);
  }
  return b;
}

/** The files of a fake cifar-10-batches-bin with `per` records per batch, keyed by file name. */
export function cifarFiles(seed: number, per: number): Record<string, Uint8Array> {
  const rand = mulberry32(seed);
  const files: Record<string, Uint8Array> = {
    "batches.meta.txt": new TextEncoder().encode(CIFAR_CLASSES.join("\n") + "\n\n"),
  };
  for (let i = 1; i <= 5; i++) files[`data_batch_${i}.bin`] = cifarBatch(rand, per);
  files["test_batch.bin"] = cifarBatch(rand, per);
  return files;
}

export function prefixed(files: Record<string, Uint8Array>, prefix: string): Record<string, Uint8Array> {
  return Object.fromEntries(Object.entries(files).map(([k, v]) => [prefix + k, v]));
}
