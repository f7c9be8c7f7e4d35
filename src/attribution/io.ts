// On-disk formats of attribution results (src/attribution/README.md): the factors as one safetensors file,
// and dense blocks of A as safetensors streamed band by band (the header is known before any data).
import { decodeSafetensors, encodeSafetensors, type Tensor as StTensor } from "../checkpoint/safetensors.ts";
import { readBytes, writeBytesAtomic } from "../data/io.ts";
import type { Attribution } from "./trak.ts";

export const FACTORS_FORMAT = "webgpu-backdoor-detect/trak-factors@1";
export const BLOCK_FORMAT = "webgpu-backdoor-detect/attribution-block@1";

export interface FactorsMeta {
  seed: number;
  k: number;
  method: string;
  models: string[];
  [key: string]: unknown;
}

/** Write U, V, Qbar, per-model Q, margins and K to a safetensors file (one readback). */
export async function saveFactors(
  path: string,
  a: Attribution,
  perModel: { q: Float32Array; margins: Float32Array }[],
  meta: FactorsMeta,
): Promise<void> {
  const { U, V, K } = await a.read();
  const { n, M, k } = a.meta;
  const tensors: Record<string, StTensor> = {
    U: { dtype: "F32", shape: [n, M * k], data: U },
    V: { dtype: "F32", shape: [n, M * k], data: V },
    Qbar: { dtype: "F32", shape: [n], data: a.qbar },
    Q: { dtype: "F32", shape: [M, n], data: concat(perModel.map((p) => p.q)) },
    margins: { dtype: "F32", shape: [M, n], data: concat(perModel.map((p) => p.margins)) },
    K: { dtype: "F32", shape: [M, k, k], data: concat(K) },
  };
  const metadata: Record<string, string> = {
    format: FACTORS_FORMAT,
    n: String(n),
    M: String(M),
    lambda: JSON.stringify(a.meta.lambdas),
    normalize: String(a.meta.normalize),
  };
  for (const [key, v] of Object.entries(meta)) metadata[key] = typeof v === "string" ? v : JSON.stringify(v);
  await writeBytesAtomic(path, encodeSafetensors(tensors, metadata));
}

export async function loadFactors(path: string) {
  const f = decodeSafetensors(await readBytes(path), path);
  if (f.metadata.format !== FACTORS_FORMAT) {
    throw new Error(`${path}: not a TRAK factors file (format ${f.metadata.format ?? "missing"})`);
  }
  return f;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Dense A[r0:r1, c0:c1] to a safetensors file with one F32 tensor "A" of shape [r1 - r0, c1 - c0] and
 * metadata { format, r0, r1, c0, c1 }, computed and written in row bands so host memory stays at one band.
 */
export async function exportDenseBlock(
  path: string,
  a: Attribution,
  block: { r0?: number; r1?: number; c0?: number; c1?: number } = {},
  bandRows = 256,
): Promise<void> {
  const { r0 = 0, r1 = a.n, c0 = 0, c1 = a.n } = block;
  const rows = r1 - r0;
  const cols = c1 - c0;
  const bytes = rows * cols * 4;
  const header = {
    __metadata__: { format: BLOCK_FORMAT, r0: String(r0), r1: String(r1), c0: String(c0), c1: String(c1) },
    A: { dtype: "F32", shape: [rows, cols], data_offsets: [0, bytes] },
  };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const hlen = Math.ceil(json.length / 8) * 8;
  const head = new Uint8Array(8 + hlen).fill(0x20, 8);
  const view = new DataView(head.buffer);
  view.setUint32(0, hlen, true);
  view.setUint32(4, Math.floor(hlen / 2 ** 32), true);
  head.set(json, 8);
  const { open, rename } = await import("node:fs/promises");
  const tmp = `${path}.tmp-${Date.now()}`;
  const fh = await open(tmp, "w");
  try {
    await fh.write(head);
    for await (const band of a.bands(r0, r1, c0, c1, bandRows)) {
      await fh.write(new Uint8Array(band.data.buffer, band.data.byteOffset, band.data.byteLength));
    }
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}
