// Seeded synthetic attribution matrices for the detector tests.
import { mulberry32 } from "../support/rng.ts";

function gauss(rand: () => number): number {
  const u = Math.max(rand(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

/** Dense n x n with independent uniform [-1, 1) entries (rounded to f32). */
export function randomDense(seed: number, n: number): Float32Array {
  const rand = mulberry32(seed);
  return Float32Array.from({ length: n * n }, () => 2 * rand() - 1);
}

export interface Planted {
  n: number;
  r: number;
  U: Float32Array;
  V: Float32Array;
  /** A = U V^T (float64 of the f32 factors), row-major. */
  A: Float64Array;
  block: number[];
}

/**
 * A random rank-(r - 1) matrix plus a planted block: U, V have N(0, 1) entries in r - 1 columns, and the
 * last column is `strength` (times 1 +- 0.2 noise) on the block's rows, 0 elsewhere: A = U V^T gets a
 * strong u v^T component on block x block (rank r in all).
 */
export function planted(seed: number, n = 300, r = 16, blockSize = 20, strength = 3): Planted {
  const rand = mulberry32(seed);
  const U = new Float32Array(n * r);
  const V = new Float32Array(n * r);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < r - 1; j++) {
      U[i * r + j] = gauss(rand) / 2;
      V[i * r + j] = gauss(rand) / 2;
    }
  }
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const block = perm.slice(0, blockSize).sort((a, b) => a - b);
  for (const i of block) {
    U[i * r + r - 1] = strength * (1 + 0.2 * (2 * rand() - 1));
    V[i * r + r - 1] = strength * (1 + 0.2 * (2 * rand() - 1));
  }
  return { n, r, U, V, A: denseOf(U, V, n, r), block };
}

export function denseOf(U: ArrayLike<number>, V: ArrayLike<number>, n: number, r: number): Float64Array {
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let k = 0; k < r; k++) acc += U[i * r + k] * V[j * r + k];
      A[i * n + j] = acc;
    }
  }
  return A;
}

/** Fraction of `top` that lies in `block`. */
export function precision(top: number[], block: number[]): number {
  const b = new Set(block);
  return top.filter((i) => b.has(i)).length / top.length;
}
