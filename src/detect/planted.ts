// Synthetic attribution matrices with a planted block: what the search is measured on (bench/search.ts,
// the search tests). A = U V^T with U, V of N(0, r^-1/2) entries in r columns, so entries are about
// N(0, 1), plus `strength` on block x block. With `balanced`, each block row and column also gives up
// strength * b / (n - b) on every entry outside the block: its sums match everyone else's on average, so
// only the block structure, not a row's total, tells the block apart.
import { mulberry32 } from "../data/dataset.ts";

export interface PlantedOptions {
  n: number;
  rank: number;
  block: number;
  strength: number;
  balanced?: boolean;
  seed: number;
}

/** Row-major n x n f32 matrix with a zero diagonal, and the block's indices (ascending). */
export function plantedMatrix(o: PlantedOptions): { A: Float32Array; block: number[] } {
  const { n, rank: r, strength } = o;
  const rand = mulberry32(o.seed);
  const gauss = () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
  const sd = r ** -0.25;
  const U = Float64Array.from({ length: n * r }, () => gauss() * sd);
  const V = Float64Array.from({ length: n * r }, () => gauss() * sd);
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  const block = idx.slice(0, o.block).sort((a, b) => a - b);
  const inBlock = new Uint8Array(n);
  for (const i of block) inBlock[i] = 1;
  const give = o.balanced ? (strength * o.block) / (n - o.block) : 0;
  const A = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      if (i === j) continue;
      let a = 0;
      for (let k = 0; k < r; k++) a += U[i * r + k] * V[j * r + k];
      const both = inBlock[i] && inBlock[j];
      A[i * n + j] = a + (both ? strength : (inBlock[i] || inBlock[j]) ? -give : 0);
    }
  }
  return { A, block };
}
