// Device backends of the local search (src/detect/search.ts): the swap loop runs entirely on the device,
// which picks each swap itself (select_swap); the host reads back once per epoch: the swap log (removed,
// added, gains) and the exact objective of the epoch's start, all in one readMany.
//   denseGpuBackend:  Sym = A + A^T (n x n, f32, one binding: n <= 5,792 at 128 MiB); a swap costs O(n).
//   factorBackend:    A = U V^T as row-chunked n x r factors; a swap costs two gemvs over U and V,
//                     O(n r); memory O(n r). Never builds an n x n matrix.
import { fill } from "../../kernels/fill.ts";
import { gemv } from "../../kernels/gemv.ts";
import { scale } from "../../kernels/elementwise.ts";
import { searchKernel } from "../../kernels/search.ts";
import type { Runtime, Tensor } from "../gpu/runtime.ts";
import { Factors } from "./factors.ts";
import type { EpochLog, SearchBackend } from "./search.ts";

const MAX_SWAPS = 100;

abstract class DeviceBackend implements SearchBackend {
  abstract readonly name: string;
  protected sn = 0;
  protected P: Tensor;
  protected m?: Tensor;
  protected barred: Tensor;
  protected picks: Tensor;
  protected tvals: Tensor;
  protected gains: Tensor;
  protected stats: Tensor;
  protected own: Tensor[] = [];

  constructor(
    readonly rt: Runtime,
    readonly n: number,
    protected rowsum: Tensor,
    protected selfd: Tensor,
    maxSwaps = MAX_SWAPS,
  ) {
    this.P = rt.empty([n]);
    this.barred = rt.empty([n], "u32");
    this.picks = rt.empty([2 * maxSwaps], "u32");
    this.tvals = rt.empty([2 * maxSwaps]);
    this.gains = rt.empty([maxSwaps]);
    this.stats = rt.empty([2]);
    this.own.push(this.P, this.barred, this.picks, this.tvals, this.gains, this.stats, rowsum, selfd);
  }

  get deviceBytes(): number {
    return this.own.reduce((a, t) => a + t.byteLength, 0) + this.n * 4;
  }

  setSize(s: number): void {
    this.sn = s / this.n;
  }

  /** P from scratch for the selection in this.m. */
  protected abstract computeP(): void;
  /** Swap k, after select_swap picked it: update P (or what it derives from), m, barred, gains[k]. */
  protected abstract swap(k: number): void;

  #load(mask: Uint8Array): void {
    this.m?.release();
    this.m = this.rt.upload(Float32Array.from(mask), [this.n]);
    fill(this.rt, this.barred, 0);
    this.computeP();
  }

  async totals(mask: Uint8Array): Promise<Float64Array> {
    this.#load(mask);
    const [P, rs, sd] = await this.rt.readMany([this.P, this.rowsum, this.selfd]);
    return Float64Array.from({ length: this.n }, (_, x) => P[x] - mask[x] * sd[x] - this.sn * rs[x]);
  }

  async epoch(mask: Uint8Array, swaps: number, bonus: number): Promise<EpochLog> {
    if (swaps > this.gains.size) {
      throw new Error(`search: ${swaps} swaps per epoch, the backend holds ${this.gains.size}`);
    }
    const rt = this.rt;
    this.#load(mask);
    const u = { n: this.n, s_over_n: this.sn, add_bonus: bonus };
    searchKernel(
      rt,
      "objective",
      { P: this.P, m: this.m!, rowsum: this.rowsum, selfd: this.selfd, stats: this.stats },
      u,
    );
    for (let k = 0; k < swaps; k++) {
      searchKernel(rt, "select_swap", {
        P: this.P,
        m: this.m!,
        barred: this.barred,
        rowsum: this.rowsum,
        selfd: this.selfd,
        picks: this.picks,
        tvals: this.tvals,
      }, { ...u, k });
      this.swap(k);
    }
    const [picks, tvals, gains, stats] = (await rt.readMany([this.picks, this.tvals, this.gains, this.stats])) as [
      Uint32Array,
      Float32Array,
      Float32Array,
      Float32Array,
    ];
    const removed = new Int32Array(swaps);
    const added = new Int32Array(swaps);
    let sc = 0;
    for (let k = 0; k < swaps; k++) {
      removed[k] = picks[2 * k];
      added[k] = picks[2 * k + 1];
      if (removed[k] >= this.n || added[k] >= this.n) throw new Error(`search: swap ${k} found no candidate`);
      sc = Math.max(sc, Math.abs(tvals[2 * k]), Math.abs(tvals[2 * k + 1]));
    }
    return { objective: stats[0], removed, added, gains: Float64Array.from(gains.subarray(0, swaps)), scale: sc };
  }

  dispose(): void {
    this.m?.release();
    this.m = undefined;
    for (const t of this.own) t.release();
    this.own = [];
  }
}

class DenseGpu extends DeviceBackend {
  readonly name = "dense-gpu";
  constructor(rt: Runtime, n: number, private sym: Tensor, rowsum: Tensor) {
    super(rt, n, rowsum, fill(rt, rt.empty([n]), 0));
    this.own.push(sym);
  }
  protected computeP(): void {
    gemv(this.rt, this.sym, this.m!, { out: this.P });
  }
  protected swap(k: number): void {
    searchKernel(
      this.rt,
      "finish_dense",
      {
        Sym: this.sym,
        picks: this.picks,
        tvals: this.tvals,
        P: this.P,
        gains: this.gains,
        m: this.m!,
        barred: this.barred,
      },
      { n: this.n, k },
      this.n,
    );
  }
}

/**
 * Dense backend on the device: A is an n x n row-major matrix (host array or device tensor; its own
 * diagonal is ignored). Builds Sym = A + A^T (n^2 floats) once.
 */
export function denseGpuBackend(rt: Runtime, A: Float32Array | Float64Array | Tensor, n: number): SearchBackend {
  const a = A instanceof Float32Array || A instanceof Float64Array ? rt.upload(Float32Array.from(A), [n, n]) : A;
  if (a.size !== n * n) throw new Error(`denseGpuBackend: A has ${a.size} elements, expected ${n}^2`);
  const sym = rt.empty([n, n]);
  searchKernel(rt, "symmetrise", { Uc: a, rows: sym }, { n }, n);
  const rowsum = rt.empty([n]);
  searchKernel(rt, "dense_rowsum", { Uc: a, P: rowsum }, { n }, n);
  if (a !== A) a.release();
  return new DenseGpu(rt, n, sym, rowsum);
}

class FactorGpu extends DeviceBackend {
  readonly name = "factor-gpu";
  private q: Tensor;
  private rows: Tensor;
  constructor(rt: Runtime, private f: Factors, rowsum: Tensor, selfd: Tensor) {
    super(rt, f.n, rowsum, selfd);
    this.q = rt.empty([2 * f.r]);
    this.rows = rt.empty([4 * f.r]);
    this.own.push(this.q, this.rows);
  }
  protected computeP(): void {
    this.f.symMatvec(this.m!, this.q, this.P);
  }
  protected swap(k: number): void {
    const { rt, f } = this;
    for (const c of f.chunks) {
      searchKernel(rt, "gather_rows", { Uc: c.U, Vc: c.V, picks: this.picks, rows: this.rows }, {
        r: f.r,
        k,
        row_offset: c.offset,
        rows: c.rows,
      }, f.r);
    }
    searchKernel(rt, "finish_factor", {
      rows: this.rows,
      tvals: this.tvals,
      picks: this.picks,
      gains: this.gains,
      q: this.q,
      m: this.m!,
      barred: this.barred,
    }, { r: f.r, k });
    f.expandFrom(this.q, this.P);
  }
}

/** Factor backend: A = U V^T (diagonal excluded), the factors row-chunked on the device (not released here). */
export function factorBackend(rt: Runtime, f: Factors): SearchBackend {
  const diag = f.diagonal();
  const rowsum = f.rowSums(diag);
  const selfd = scale(rt, diag, 2);
  diag.release();
  return new FactorGpu(rt, f, rowsum, selfd);
}
