// A fitted datamodels matrix on disk: row blocks of n columns, one safetensors file each, plus the
// per-target bias, lambda and held-out error, and an index; written and read a block at a time.
import { decodeSafetensors, encodeSafetensors } from "../checkpoint/safetensors.ts";
import { joinPath, makeDir, readBytes, readText, writeBytesAtomic } from "../data/io.ts";
import { blockCopy } from "../../kernels/project.ts";
import type { Runtime } from "../gpu/runtime.ts";
import type { DatamodelFit } from "./regression-plan.ts";

const TILE_FORMAT = "datamodel-tiles/1";
export interface TileIndex {
  format: typeof TILE_FORMAT;
  n: number;
  /** Rows per file (the last may hold fewer). */
  rowsPerFile: number;
  files: { r0: number; r1: number; file: string }[];
  /** bias, lambda and heldOutMse per target. */
  meta: string;
}

/**
 * Write the fit's n x n matrix as row blocks of `tile` rows, one safetensors file each (tensor "weights",
 * [rows, n]), plus bias/lambda/heldOutMse in meta.safetensors and an index.json. Row blocks are copied
 * off the device one at a time, so host memory stays O(tile · n).
 */
export async function saveDatamodelTiles(rt: Runtime, fit: DatamodelFit, dir: string, tile = 1024): Promise<void> {
  const { n } = fit;
  if (!Number.isInteger(tile) || tile < 1) {
    throw new Error(`saveDatamodelTiles: tile must be a positive integer, got ${tile}`);
  }
  if (fit.weights.size !== n * n) {
    throw new Error(`saveDatamodelTiles: weights have ${fit.weights.size} elements, expected ${n}²`);
  }
  await makeDir(dir);
  const files: TileIndex["files"] = [];
  for (let r0 = 0; r0 < n; r0 += tile) {
    const r1 = Math.min(n, r0 + tile);
    const block = rt.empty([r1 - r0, n]);
    blockCopy(rt, fit.weights, block, { rows: r1 - r0, cols: n, sr0: r0, sld: n, dld: n });
    const data = (await rt.read(block)) as Float32Array;
    block.release();
    const file = `rows-${String(r0).padStart(7, "0")}.safetensors`;
    await writeBytesAtomic(
      joinPath(dir, file),
      encodeSafetensors({ weights: { dtype: "F32", shape: [r1 - r0, n], data } }, { r0: String(r0), r1: String(r1) }),
    );
    files.push({ r0, r1, file });
  }
  const meta = "meta.safetensors";
  await writeBytesAtomic(
    joinPath(dir, meta),
    encodeSafetensors({
      bias: { dtype: "F32", shape: [n], data: fit.bias },
      lambda: { dtype: "F32", shape: [n], data: fit.lambda },
      heldOutMse: { dtype: "F32", shape: [n], data: fit.heldOutMse },
    }),
  );
  const index: TileIndex = { format: TILE_FORMAT, n, rowsPerFile: tile, files, meta };
  await writeBytesAtomic(joinPath(dir, "index.json"), new TextEncoder().encode(JSON.stringify(index, null, 1)));
}

export interface DatamodelTiles {
  n: number;
  /** Rows [r0, r1) x columns [c0, c1), row-major. */
  readBlock(r0: number, r1: number, c0: number, c1: number): Promise<Float32Array>;
  /** bias, lambda and heldOutMse per target. */
  readMeta(): Promise<{ bias: Float32Array; lambda: Float32Array; heldOutMse: Float32Array }>;
}

export async function loadDatamodelTiles(dir: string): Promise<DatamodelTiles> {
  const indexPath = joinPath(dir, "index.json");
  let index: TileIndex;
  try {
    index = JSON.parse(await readText(indexPath)) as TileIndex;
  } catch (e) {
    throw new Error(`${indexPath}: not a datamodel tile index (${(e as Error).message})`);
  }
  if (index.format !== TILE_FORMAT || !Number.isInteger(index.n) || !Array.isArray(index.files)) {
    throw new Error(`${indexPath}: not a ${TILE_FORMAT} index`);
  }
  const { n } = index;
  let covered = 0;
  for (const f of index.files) {
    if (f.r0 !== covered || !(f.r1 > f.r0) || typeof f.file !== "string" || f.file.includes("/")) {
      throw new Error(`${indexPath}: row blocks do not tile [0, ${n})`);
    }
    covered = f.r1;
  }
  if (covered !== n) throw new Error(`${indexPath}: row blocks cover ${covered} of ${n} rows`);
  let last: { file: string; data: Float32Array } | undefined; // readers usually sweep rows in order
  const rowBlock = async (f: TileIndex["files"][number]) => {
    if (last?.file !== f.file) {
      const path = joinPath(dir, f.file);
      const t = decodeSafetensors(await readBytes(path), path).tensors.weights;
      if (!t || t.dtype !== "F32" || t.shape[0] !== f.r1 - f.r0 || t.shape[1] !== n) {
        throw new Error(`${path}: expected F32 weights [${f.r1 - f.r0}, ${n}]`);
      }
      last = { file: f.file, data: t.data as Float32Array };
    }
    return last.data;
  };
  return {
    n,
    async readBlock(r0, r1, c0, c1) {
      if (
        !(0 <= r0 && r0 <= r1 && r1 <= n && 0 <= c0 && c0 <= c1 && c1 <= n) || ![r0, r1, c0, c1].every(Number.isInteger)
      ) {
        throw new Error(`readBlock: [${r0}, ${r1}) x [${c0}, ${c1}) is not inside ${n} x ${n}`);
      }
      const w = c1 - c0;
      const out = new Float32Array((r1 - r0) * w);
      for (const f of index.files) {
        if (f.r1 <= r0 || f.r0 >= r1) continue;
        const data = await rowBlock(f);
        for (let r = Math.max(r0, f.r0); r < Math.min(r1, f.r1); r++) {
          out.set(data.subarray((r - f.r0) * n + c0, (r - f.r0) * n + c1), (r - r0) * w);
        }
      }
      return out;
    },
    async readMeta() {
      const path = joinPath(dir, index.meta);
      const t = decodeSafetensors(await readBytes(path), path).tensors;
      const get = (k: string) => {
        if (!t[k] || t[k].dtype !== "F32" || t[k].data.length !== n) {
          throw new Error(`${path}: expected F32 ${k} [${n}]`);
        }
        return t[k].data as Float32Array;
      };
      return { bias: get("bias"), lambda: get("lambda"), heldOutMse: get("heldOutMse") };
    },
  };
}
