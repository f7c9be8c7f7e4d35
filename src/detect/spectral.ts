// Spectral score: the leading eigenvector of the centred, symmetrised attribution matrix
//   M = H ((A + A^T) / 2) H,   H = I - 1 1^T / n   (double centring; A's own diagonal taken as zero),
// by power iteration. The factor version never forms M: one step is q = [V^T x ; U^T x],
// y = (U q_0 + V q_1) / 2 - diag(U V^T) x, then y <- H y, x <- y / |y| (x stays centred).
// "Leading" means the largest algebraic eigenvalue (a planted block of mutually helping examples is a
// large positive one): when the dominant eigenvalue found first is negative, the iteration is rerun on
// M + |lambda| I, whose dominant eigenvalue is then the largest of M.
// Scores: |v_i| (`scores`), and the eigenvector itself signed so that sum_i v_i^3 >= 0 (`vector`: its
// most extreme entries positive), which separates a block from the examples pushed the other way.
import { scale } from "../../kernels/elementwise.ts";
import { searchKernel } from "../../kernels/search.ts";
import type { Runtime, Tensor } from "../gpu/runtime.ts";
import { symmetricEigen } from "../math.ts";
import { Factors } from "./factors.ts";

export interface SpectralOptions {
  /** Most power steps per run (default 300). */
  maxIter?: number;
  /** Stop when successive iterates differ by less than this (2-norm, default 1e-5). */
  tol?: number;
  /** Steps between convergence checks (readbacks) on the device (default 20). */
  checkEvery?: number;
  seed?: number;
}

export interface SpectralResult {
  scores: Float64Array;
  vector: Float64Array;
  eigenvalue: number;
  iterations: number;
}

function startVector(n: number, seed: number): Float64Array {
  let a = (seed ^ 0x5bd1e995) >>> 0;
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    x[i] = ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  }
  return normalise(centre(x));
}

function centre(x: Float64Array): Float64Array {
  const mean = x.reduce((a, b) => a + b, 0) / x.length;
  for (let i = 0; i < x.length; i++) x[i] -= mean;
  return x;
}

function normalise(x: Float64Array): Float64Array {
  const nrm = Math.sqrt(x.reduce((a, b) => a + b * b, 0));
  for (let i = 0; i < x.length; i++) x[i] /= nrm || 1;
  return x;
}

function finish(v: Float64Array, eigenvalue: number, iterations: number): SpectralResult {
  let c3 = 0;
  for (const x of v) c3 += x * x * x;
  if (c3 < 0) { for (let i = 0; i < v.length; i++) v[i] = -v[i]; }
  return { scores: Float64Array.from(v, Math.abs), vector: v, eigenvalue, iterations };
}

/**
 * Dense float64 version, A row-major n x n (the pipeline's for n <= 4,096, and the factor version's twin). Lanczos
 * with full reorthogonalisation from the same start vector, not power iteration: the same leading algebraic
 * eigenpair, in tens of matrix-vector products where power iteration took up to 300 (19 s at n = 4,000 on the host).
 * Stops when the Ritz pair's residual |M v - theta v| falls below tol * max(|theta|, 1); `iterations` counts the
 * products.
 */
export function spectralDense(A: ArrayLike<number>, n: number, opts: SpectralOptions = {}): SpectralResult {
  const maxIter = Math.min(opts.maxIter ?? 300, n);
  const tol = opts.tol ?? 1e-5;
  const S = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) if (i !== j) S[i * n + j] = 0.5 * (A[i * n + j] + A[j * n + i]);
  }
  const apply = (x: Float64Array) => {
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let acc = 0;
      const row = i * n;
      for (let j = 0; j < n; j++) acc += S[row + j] * x[j];
      y[i] = acc;
    }
    return centre(y);
  };
  const Q: Float64Array[] = [startVector(n, opts.seed ?? 1)];
  const alpha: number[] = [];
  const beta: number[] = [];
  let ritz: { theta: number; s: ArrayLike<number> } = { theta: 0, s: [1] };
  for (let j = 0; j < maxIter; j++) {
    const w = apply(Q[j]);
    alpha.push(dot(w, Q[j]));
    // Full reorthogonalisation, twice: the basis stays orthogonal to rounding, so no ghost eigenvalues.
    for (let pass = 0; pass < 2; pass++) {
      for (const q of Q) {
        const c = dot(w, q);
        for (let i = 0; i < n; i++) w[i] -= c * q[i];
      }
    }
    const b = Math.sqrt(dot(w, w));
    const last = b === 0 || j === maxIter - 1;
    // The Ritz pair every 5 steps (an O(j^3) eigensolve), and at the end.
    if (j % 5 === 4 || last) {
      ritz = largestRitz(alpha, beta);
      if (last || b * Math.abs(ritz.s[j]) < tol * Math.max(Math.abs(ritz.theta), 1)) break;
    }
    beta.push(b);
    Q.push(w.map((v) => v / b));
  }
  const v = new Float64Array(n);
  Q.forEach((q, k) => {
    for (let i = 0; i < n; i++) v[i] += ritz.s[k] * q[i];
  });
  return finish(normalise(v), ritz.theta, Q.length);
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** The largest eigenvalue of the symmetric tridiagonal (alpha, beta) and its unit eigenvector. */
function largestRitz(alpha: number[], beta: number[]): { theta: number; s: ArrayLike<number> } {
  const m = alpha.length;
  const T = new Float64Array(m * m);
  alpha.forEach((a, i) => (T[i * m + i] = a));
  for (let i = 0; i + 1 < m; i++) T[i * m + i + 1] = T[(i + 1) * m + i] = beta[i];
  const { values, vectors } = symmetricEigen(T, m);
  return { theta: values[m - 1], s: vectors[m - 1] };
}

/** Factor version on the device: power iteration with A = U V^T, O(n r) per step, never n x n. */
export async function spectralFactors(rt: Runtime, f: Factors, opts: SpectralOptions = {}): Promise<SpectralResult> {
  const maxIter = opts.maxIter ?? 300;
  const tol = opts.tol ?? 1e-5;
  const every = opts.checkEvery ?? 20;
  const n = f.n;
  const diag = f.diagonal();
  const selfd = rt.empty([n]);
  scale(rt, diag, 2, selfd); // spectral_step subtracts selfd/2 * x
  diag.release();
  const q = rt.empty([2 * f.r]);
  const P = rt.empty([n]);
  const stats = rt.empty([2]);
  const run = async (shift: number) => {
    let host = startVector(n, opts.seed ?? 1);
    const x: Tensor = rt.upload(Float32Array.from(host), [n]);
    let it = 0;
    let lambda = 0;
    while (it < maxIter) {
      const steps = Math.min(every, maxIter - it);
      for (let k = 0; k < steps; k++) {
        f.symMatvec(x, q, P);
        searchKernel(rt, "spectral_step", { P, m: x, selfd, stats }, { n, shift });
      }
      it += steps;
      const [xv, st] = await rt.readMany([x, stats]);
      lambda = st[0] - shift;
      let d = 0;
      for (let i = 0; i < n; i++) d += (xv[i] - host[i]) ** 2;
      host = Float64Array.from(xv);
      // A change below tol over `every` steps: converged (per step it is smaller still).
      if (Math.sqrt(d) < tol * every) break;
    }
    x.release();
    return { x: host, lambda, it };
  };
  try {
    let r = await run(0);
    if (r.lambda < 0) r = await run(-r.lambda);
    return finish(r.x, r.lambda, r.it);
  } finally {
    selfd.release();
    q.release();
    P.release();
    stats.release();
  }
}
