// Low-rank attribution factors A = U V^T (DESIGN.md section 2), both n x r, kept on the device as row
// chunks so that no binding exceeds the adapter's maxStorageBufferBindingSize (128 MiB on llvmpipe:
// 16,384 rows of r = 2,048). Every product the detectors need is a gemv against the chunks; no n x n
// matrix is ever built. The diagonal of U V^T is not part of A (DESIGN.md: the diagonal is zero).
import { axpy, scale as scaleK } from "../../kernels/elementwise.ts";
import { fill } from "../../kernels/fill.ts";
import { gemv } from "../../kernels/gemv.ts";
import { random } from "../../kernels/random.ts";
import { searchKernel } from "../../kernels/search.ts";
import type { Runtime, Tensor } from "../gpu/runtime.ts";

export interface FactorChunk {
  U: Tensor;
  V: Tensor;
  /** First row of this chunk. */
  offset: number;
  rows: number;
}

export class Factors {
  readonly n: number;
  readonly r: number;
  constructor(readonly rt: Runtime, readonly chunks: FactorChunk[]) {
    if (!chunks.length) throw new Error("Factors: no chunks");
    this.r = chunks[0].U.shape[1];
    let off = 0;
    for (const c of chunks) {
      if (c.U.shape.length !== 2 || c.V.shape.length !== 2) throw new Error("Factors: U and V chunks must be 2-D");
      if (c.U.shape[0] !== c.rows || c.V.shape[0] !== c.rows || c.U.shape[1] !== this.r || c.V.shape[1] !== this.r) {
        throw new Error(
          `Factors: chunk at row ${c.offset} has U [${c.U.shape}], V [${c.V.shape}], expected [${c.rows}, ${this.r}]`,
        );
      }
      if (c.offset !== off) throw new Error(`Factors: chunk starts at ${c.offset}, expected ${off}`);
      off += c.rows;
    }
    this.n = off;
  }

  /** Rows per chunk that keep one chunk within the adapter's binding limit. */
  static rowsPerChunk(rt: Runtime, r: number): number {
    return Math.max(1, Math.floor(rt.device.limits.maxStorageBufferBindingSize / (4 * r)));
  }

  /** From whole device tensors (each must fit one binding) or from arrays of row chunks. */
  static of(rt: Runtime, U: Tensor | Tensor[], V: Tensor | Tensor[]): Factors {
    const us = Array.isArray(U) ? U : [U];
    const vs = Array.isArray(V) ? V : [V];
    if (us.length !== vs.length) throw new Error("Factors: U and V have different chunk counts");
    let off = 0;
    return new Factors(
      rt,
      us.map((u, i) => {
        const c = { U: u, V: vs[i], offset: off, rows: u.shape[0] };
        off += c.rows;
        return c;
      }),
    );
  }

  /** Upload host factors (row-major n x r), chunked. */
  static upload(
    rt: Runtime,
    U: Float32Array,
    V: Float32Array,
    n: number,
    r: number,
    rowsPerChunk = Factors.rowsPerChunk(rt, r),
  ): Factors {
    if (U.length !== n * r || V.length !== n * r) throw new Error(`Factors.upload: expected ${n * r} values`);
    const chunks: FactorChunk[] = [];
    for (let off = 0; off < n; off += rowsPerChunk) {
      const rows = Math.min(rowsPerChunk, n - off);
      chunks.push({
        U: rt.upload(U.subarray(off * r, (off + rows) * r), [rows, r]),
        V: rt.upload(V.subarray(off * r, (off + rows) * r), [rows, r]),
        offset: off,
        rows,
      });
    }
    return new Factors(rt, chunks);
  }

  /** Synthetic factors with N(0, scale^2) entries drawn on the device (benchmarks). */
  static random(rt: Runtime, n: number, r: number, seed: number, scale = 1 / Math.sqrt(r)): Factors {
    const per = Factors.rowsPerChunk(rt, r);
    const chunks: FactorChunk[] = [];
    for (let off = 0; off < n; off += per) {
      const rows = Math.min(per, n - off);
      const U0 = random(rt, [rows, r], "normal", { seed, stream: 1, offset: off * r });
      const V0 = random(rt, [rows, r], "normal", { seed, stream: 2, offset: off * r });
      const U = scaleK(rt, U0, scale);
      const V = scaleK(rt, V0, scale);
      U0.release();
      V0.release();
      chunks.push({ U, V, offset: off, rows });
    }
    return new Factors(rt, chunks);
  }

  get deviceBytes(): number {
    return this.chunks.reduce((a, c) => a + c.U.byteLength + c.V.byteLength, 0);
  }

  /**
   * out = (U V^T + V U^T) x, including the diagonal 2 U_i.V_i x_i (callers subtract it); q (2r) receives
   * [V^T x ; U^T x].
   */
  symMatvec(x: Tensor, q: Tensor, out: Tensor): void {
    this.projectInto(x, q);
    this.expandFrom(q, out);
  }

  /** q = [V^T x ; U^T x]. */
  projectInto(x: Tensor, q: Tensor): void {
    const rt = this.rt;
    this.chunks.forEach((c, i) => {
      const beta = i === 0 ? 0 : 1;
      gemv(rt, c.V, x, { trans: true, xOffset: c.offset, out: q, outOffset: 0, beta });
      gemv(rt, c.U, x, { trans: true, xOffset: c.offset, out: q, outOffset: this.r, beta });
    });
  }

  /** out = U q[0:r] + V q[r:2r]. */
  expandFrom(q: Tensor, out: Tensor): void {
    const rt = this.rt;
    for (const c of this.chunks) {
      gemv(rt, c.U, q, { out, outOffset: c.offset, xOffset: 0 });
      gemv(rt, c.V, q, { out, outOffset: c.offset, xOffset: this.r, beta: 1 });
    }
  }

  /** diag[i] = U_i . V_i. */
  diagonal(): Tensor {
    const d = this.rt.empty([this.n]);
    for (const c of this.chunks) {
      searchKernel(
        this.rt,
        "row_dots",
        { Uc: c.U, Vc: c.V, P: d },
        { r: this.r, row_offset: c.offset, rows: c.rows },
        c.rows,
      );
    }
    return d;
  }

  /** rowsum[i] = sum_{j != i} (U V^T)[i][j] = U_i . (V^T 1) - U_i . V_i. */
  rowSums(diag: Tensor): Tensor {
    const rt = this.rt;
    const ones = fill(rt, rt.empty([this.n]), 1);
    const v1 = rt.empty([this.r]);
    this.chunks.forEach((c, i) =>
      gemv(rt, c.V, ones, { trans: true, xOffset: c.offset, out: v1, beta: i === 0 ? 0 : 1 })
    );
    const rs = rt.empty([this.n]);
    for (const c of this.chunks) gemv(rt, c.U, v1, { out: rs, outOffset: c.offset });
    axpy(rt, -1, diag, rs, rs);
    ones.release();
    v1.release();
    return rs;
  }

  release(): void {
    for (const c of this.chunks) {
      c.U.release();
      c.V.release();
    }
  }
}
