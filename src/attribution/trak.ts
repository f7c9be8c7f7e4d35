// TRAK scores as low-rank factors (../../../shared/DESIGN.md, section 2). For models m = 1..M with
// features Phi_m [n, k] and Q_m = 1 - sigmoid(margin):
//   K_m = (Phi_mᵀ Phi_m + lambda_m I)⁻¹   (Gram on the device, Cholesky in float64 on the host),
//   U = [Phi_1 K_1, ..., Phi_M K_M] / M,   V = diag(Qbar) [Phi_1, ..., Phi_M],   both [n, M k],
//   A = U Vᵀ, A[i][j] = attribution of training example j on target i.
// A is never built unless asked: products with vectors, rows, columns and dense blocks are matmuls on the
// factors. Targets outside the training set (LDS) get their own U rows from their features: `targetU`.
import { cholesky } from "../math.ts";
import { blockCopy } from "../../kernels/project.ts";
import { matmul, matmulRef } from "../../kernels/matmul.ts";
import type { Runtime, Tensor } from "../gpu/runtime.ts";
import type { Features } from "./featurize.ts";

export interface KernelOptions {
  /** Ridge term; default lambdaScale * mean diagonal of Phiᵀ Phi. */
  lambda?: number;
  /** Default 1e-2. */
  lambdaScale?: number;
  /** Divide each K_m by its mean absolute entry (reference TRAK's ensemble rescaling). Default false. */
  normalize?: boolean;
  /**
   * Weight each training example's column by Qbar = 1 - p (TRAK's default). Off gives A[i][j] = phi_i K phi_j:
   * a backdoor the model fits perfectly has Q ~ 0 on its poisons, which would hide them. Default true.
   */
  qWeight?: boolean;
}

/** (A + lambda I)⁻¹ for a symmetric positive semi-definite A, through Cholesky: solves L Lᵀ X = I. */
export function ridgeInverse(a: ArrayLike<number>, k: number, lambda: number): Float64Array {
  const m = Float64Array.from(a);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < i; j++) m[i * k + j] = m[j * k + i] = 0.5 * (m[i * k + j] + m[j * k + i]); // exact symmetry
    m[i * k + i] += lambda;
  }
  const L = cholesky(m, k);
  // Linv (lower) by forward substitution, then K = Linvᵀ Linv.
  const Li = new Float64Array(k * k);
  for (let c = 0; c < k; c++) {
    Li[c * k + c] = 1 / L[c * k + c];
    for (let i = c + 1; i < k; i++) {
      let s = 0;
      for (let t = c; t < i; t++) s += L[i * k + t] * Li[t * k + c];
      Li[i * k + c] = -s / L[i * k + i];
    }
  }
  const K = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let t = i; t < k; t++) s += Li[t * k + i] * Li[t * k + j];
      K[i * k + j] = K[j * k + i] = s;
    }
  }
  return K;
}

export interface ModelKernel {
  /** Phiᵀ Phi (float64 copy of the device result). */
  gram: Float64Array;
  lambda: number;
  /** (gram + lambda I)⁻¹, times the normalisation factor when asked. */
  K: Float64Array;
  /** The factor K was multiplied by (1 without normalisation). */
  factor: number;
}

export async function modelKernel(rt: Runtime, phi: Tensor, o: KernelOptions = {}): Promise<ModelKernel> {
  const k = phi.shape[1];
  const g = matmul(rt, phi, phi, { transA: true });
  const gram = Float64Array.from(await rt.read(g));
  g.release();
  return kernelOfGram(gram, k, o);
}

/** K_m from Phi_mᵀ Phi_m (host, float64): the ridge term, the inverse and the optional normalisation. */
export function kernelOfGram(gram: Float64Array, k: number, o: KernelOptions = {}): ModelKernel {
  let trace = 0;
  for (let i = 0; i < k; i++) trace += gram[i * k + i];
  const lambda = o.lambda ?? (o.lambdaScale ?? 1e-2) * (trace / k);
  const K = ridgeInverse(gram, k, lambda > 0 ? lambda : 1e-12);
  let factor = 1;
  if (o.normalize) {
    let s = 0;
    for (const v of K) s += Math.abs(v);
    factor = 1 / (s / K.length);
    for (let i = 0; i < K.length; i++) K[i] *= factor;
  }
  return { gram, lambda, K, factor };
}

/**
 * Float64 twin of buildAttribution followed by reading all of A, on the host:
 * A[i][j] = (1/M) sum_m phi_{m,i}ᵀ K_m phi_{m,j} Qbar_j, n x n row-major. O(M n² k) time and n² memory:
 * for small n where no device is at hand (a coordinator on Node finishing a volunteer job).
 */
export function denseAttributionRef(
  feats: readonly { phi: ArrayLike<number>; q: ArrayLike<number> }[],
  n: number,
  k: number,
  o: KernelOptions = {},
): Float64Array {
  const M = feats.length;
  if (M === 0) throw new Error("attribution: no models");
  const qbar = new Float64Array(n).fill(o.qWeight === false ? 1 : 0);
  if (o.qWeight !== false) { for (const f of feats) for (let j = 0; j < n; j++) qbar[j] += f.q[j] / M; }
  const A = new Float64Array(n * n);
  for (const f of feats) {
    const { K } = kernelOfGram(matmulRef(f.phi, f.phi, { M: k, N: k, K: n, transA: true }), k, o);
    const U = matmulRef(f.phi, K, { M: n, N: k, K: k });
    const part = matmulRef(U, f.phi, { M: n, N: n, K: k, transB: true });
    for (let i = 0; i < n * n; i++) A[i] += (part[i] * qbar[i % n]) / M;
  }
  return A;
}

export interface AttributionMeta {
  n: number;
  M: number;
  k: number;
  lambdas: number[];
  normalize: boolean;
}

/** A = U Vᵀ, kept as its factors on the device. */
export class Attribution {
  constructor(
    readonly rt: Runtime,
    /** [n, M k] */
    readonly U: Tensor,
    /** [n, M k] */
    readonly V: Tensor,
    /** Qbar per training example. */
    readonly qbar: Float32Array,
    /** K_m on the device (f32, [k, k]), for target rows. */
    readonly kernels: Tensor[],
    readonly meta: AttributionMeta,
  ) {}

  get n(): number {
    return this.meta.n;
  }
  get width(): number {
    return this.meta.M * this.meta.k;
  }

  /** A v on the device: v [n] or [n, c] -> [n, c] = U (Vᵀ v). */
  timesDevice(v: Tensor, rows: Tensor = this.U): Tensor {
    const w = matmul(this.rt, this.V, v.reshape([this.n, v.size / this.n]), { transA: true });
    const out = matmul(this.rt, rows, w);
    w.release();
    return out;
  }
  /** Aᵀ v on the device: [n, c] = V (Uᵀ v). */
  timesTDevice(v: Tensor): Tensor {
    const w = matmul(this.rt, this.U, v.reshape([this.n, v.size / this.n]), { transA: true });
    const out = matmul(this.rt, this.V, w);
    w.release();
    return out;
  }
  async times(v: ArrayLike<number>): Promise<Float32Array> {
    return this.#host((t) => this.timesDevice(t), v);
  }
  async timesT(v: ArrayLike<number>): Promise<Float32Array> {
    return this.#host((t) => this.timesTDevice(t), v);
  }
  /** Row i of A: the attributions of every training example on target i. */
  async row(i: number): Promise<Float32Array> {
    return (await this.readBlock(i, i + 1, 0, this.n));
  }
  /** Column j of A: the attribution of training example j on every target. */
  async column(j: number): Promise<Float32Array> {
    return (await this.readBlock(0, this.n, j, j + 1));
  }
  async #host(f: (t: Tensor) => Tensor, v: ArrayLike<number>): Promise<Float32Array> {
    if (v.length !== this.n) throw new Error(`attribution: vector of ${v.length} for n = ${this.n}`);
    const t = this.rt.upload(Float32Array.from(v), [this.n, 1]);
    const out = f(t);
    const host = (await this.rt.read(out)) as Float32Array;
    [t, out].forEach((x) => x.release());
    return host;
  }

  /** Rows [r0, r1) of a factor as a new [r1 - r0, M k] tensor. */
  rows(factor: Tensor, r0: number, r1: number): Tensor {
    const out = this.rt.empty([r1 - r0, this.width]);
    return blockCopy(this.rt, factor, out, {
      rows: r1 - r0,
      cols: this.width,
      sr0: r0,
      sld: this.width,
      dld: this.width,
    });
  }

  /** Dense block A[r0:r1, c0:c1] on the device. */
  block(r0: number, r1: number, c0: number, c1: number): Tensor {
    if (!(0 <= r0 && r0 < r1 && r1 <= this.n && 0 <= c0 && c0 < c1 && c1 <= this.n)) {
      throw new Error(`attribution: bad block [${r0}, ${r1}) x [${c0}, ${c1}) for n = ${this.n}`);
    }
    const u = r0 === 0 && r1 === this.n ? this.U : this.rows(this.U, r0, r1);
    const v = c0 === 0 && c1 === this.n ? this.V : this.rows(this.V, c0, c1);
    const out = matmul(this.rt, u, v, { transB: true });
    if (u !== this.U) u.release();
    if (v !== this.V) v.release();
    return out;
  }
  async readBlock(r0: number, r1: number, c0: number, c1: number): Promise<Float32Array> {
    const b = this.block(r0, r1, c0, c1);
    const host = (await this.rt.read(b)) as Float32Array;
    b.release();
    return host;
  }

  /** Stream A[r0:r1, c0:c1] in row bands of at most `bandRows` rows (each computed by one tiled matmul). */
  async *bands(
    r0: number,
    r1: number,
    c0: number,
    c1: number,
    bandRows = 256,
  ): AsyncGenerator<{ r0: number; r1: number; data: Float32Array }> {
    for (let a = r0; a < r1; a += bandRows) {
      const b = Math.min(r1, a + bandRows);
      yield { r0: a, r1: b, data: await this.readBlock(a, b, c0, c1) };
    }
  }

  /** Factors and per-example data for saving. */
  async read(): Promise<{ U: Float32Array; V: Float32Array; K: Float32Array[] }> {
    const [U, V, ...K] = (await this.rt.readMany([this.U, this.V, ...this.kernels])) as Float32Array[];
    return { U, V, K };
  }

  /** U rows for targets outside the training set: [Phi_t1 K_1, ..., Phi_tM K_M] / M. */
  targetU(targets: readonly Tensor[]): Tensor {
    return assembleU(this.rt, targets, this.kernels, this.meta.k);
  }

  release(): void {
    [this.U, this.V, ...this.kernels].forEach((t) => t.release());
  }
}

function assembleU(rt: Runtime, phis: readonly Tensor[], kernels: readonly Tensor[], k: number): Tensor {
  const M = phis.length;
  const n = phis[0].shape[0];
  const U = rt.empty([n, M * k]);
  phis.forEach((phi, m) => {
    const pk = matmul(rt, phi, kernels[m]);
    blockCopy(rt, pk, U, { rows: n, cols: k, sld: k, dc0: m * k, dld: M * k, alpha: 1 / M });
    pk.release();
  });
  return U;
}

/** Build A's factors from the features of an ensemble (each Features from one model on the same examples). */
export async function buildAttribution(
  rt: Runtime,
  feats: readonly Features[],
  o: KernelOptions = {},
): Promise<{ attribution: Attribution; kernels: ModelKernel[] }> {
  const M = feats.length;
  if (M === 0) throw new Error("attribution: no models");
  const { n, k } = feats[0];
  if (feats.some((f) => f.n !== n || f.k !== k)) {
    throw new Error("attribution: every model must featurise the same examples with the same k");
  }
  const mk: ModelKernel[] = [];
  for (const f of feats) mk.push(await modelKernel(rt, f.phi, o));
  const kernels = mk.map((m) => rt.upload(Float32Array.from(m.K), [k, k]));
  const qbar = new Float32Array(n);
  if (o.qWeight === false) qbar.fill(1);
  else for (const f of feats) for (let i = 0; i < n; i++) qbar[i] += f.q[i] / M;
  const q = rt.upload(qbar, [n]);
  const U = assembleU(rt, feats.map((f) => f.phi), kernels, k);
  const V = rt.empty([n, M * k]);
  feats.forEach((f, m) => blockCopy(rt, f.phi, V, { rows: n, cols: k, sld: k, dc0: m * k, dld: M * k, w: q }));
  q.release();
  const meta = { n, M, k, lambdas: mk.map((m) => m.lambda), normalize: !!o.normalize };
  return { attribution: new Attribution(rt, U, V, qbar, kernels, meta), kernels: mk };
}
