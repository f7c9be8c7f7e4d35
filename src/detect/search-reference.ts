// A transcription of the public reference search (MadryLab, "Rethinking Backdoor Attacks",
// `compute_scores.py`), kept as a second backend to measure ours against on the same input. It follows
// the reference step by step, including what differs from search.ts:
// - the centred matrix is stored in f32 (the reference casts A to float32), the totals in float64;
// - every example's total is R_x + C_x - B[x][x] over the selection, members and non-members alike, so a
//   non-member's total carries -d_x where the exact addition gain has +d_x; a swap's gain is
//   t_a - t_r with no cross term;
// - after each swap, every total also shifts by B[r][r] - B[a][a] (the same for all; it cancels in gains);
// - each epoch makes 100 forced moves (once every member is barred, the remaining moves gain -inf and
//   change nothing kept), keeps the best prefix with threshold 0, and then stops when
//   2 (sum_{x,y in S} B[x][y] - sum_{i < s} B[i][i]) is not above the previous epoch's value (0 at first);
//   the last epoch's selection is returned even then.
// Start sets come from startSet (the reference draws them with np.random.choice).
import { startSet } from "./search.ts";

export interface ReferenceOptions {
  sizes: number[];
  restarts: number;
  seed?: number;
  onProgress?: (p: { size: number; sizeIndex: number; restart: number }) => void;
}

/** The reference search on a dense A (row-major, diagonal zero): per-size masks and sum_s count_s(i) / s. */
export function referenceSearch(
  A: ArrayLike<number>,
  n: number,
  opts: ReferenceOptions,
): { scores: Float64Array; solutions: { size: number; members: Int32Array }[] } {
  if (A.length !== n * n) throw new Error(`referenceSearch: ${A.length} values for n = ${n}`);
  const rowsum = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (i !== j) rowsum[i] += A[i * n + j];
  const B = Float32Array.from(A as ArrayLike<number>);
  const scores = new Float64Array(n);
  const solutions: { size: number; members: Int32Array }[] = [];
  for (const [sizeIndex, s] of opts.sizes.entries()) {
    if (!(s >= 1 && s < n)) throw new Error(`search: size ${s} is out of range for n = ${n}`);
    for (let i = 0; i < n; i++) B[i * n + i] = -rowsum[i] * (s / n);
    for (let r = 0; r < opts.restarts; r++) {
      const mask = startSet(n, s, opts.seed ?? 0, r);
      const members = optimize(B, n, Int32Array.from(indicesOf(mask)));
      for (const i of members) scores[i] += 1 / s;
      solutions.push({ size: s, members: Int32Array.from(members).sort() });
      opts.onProgress?.({ size: s, sizeIndex, restart: r });
    }
  }
  return { scores, solutions };
}

function indicesOf(mask: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < mask.length; i++) if (mask[i]) out.push(i);
  return out;
}

/** total_sum: R_x + C_x - B[x][x] over the selection, for every x. */
function totalSum(B: Float32Array, n: number, sel: Int32Array): Float64Array {
  const t = new Float64Array(n);
  for (const y of sel) {
    for (let x = 0; x < n; x++) t[x] += B[x * n + y] + B[y * n + x];
  }
  for (let x = 0; x < n; x++) t[x] -= B[x * n + x];
  return t;
}

/** compute_score: 2 (sum over S x S - the first s diagonal entries). */
function selectionScore(B: Float32Array, n: number, sel: Int32Array): number {
  let f = 0;
  for (const x of sel) for (const y of sel) f += B[x * n + y];
  for (let i = 0; i < sel.length; i++) f -= B[i * n + i];
  return 2 * f;
}

function optimize(B: Float32Array, n: number, start: Int32Array): Int32Array {
  let current = start;
  let last = 0;
  const inSel = new Uint8Array(n);
  const veto = new Uint8Array(n);
  for (let epoch = 0; epoch < 100; epoch++) {
    const sel = current.slice();
    let bestState = sel.slice();
    let bestScore = 0;
    let diff = 0;
    veto.fill(0);
    inSel.fill(0);
    for (const x of sel) inSel[x] = 1;
    const t = totalSum(B, n, sel);
    for (let move = 0; move < 100 && diff !== -Infinity; move++) {
      // np.argmin / np.argmax over ascending indices: the first of equal values wins.
      let r = -1;
      let a = -1;
      let tr = Infinity;
      let ta = -Infinity;
      for (let x = 0; x < n; x++) {
        if (inSel[x]) {
          const v = veto[x] ? Infinity : t[x];
          if (r < 0 || v < tr) [r, tr] = [x, v];
        } else {
          const v = veto[x] ? -Infinity : t[x];
          if (a < 0 || v > ta) [a, ta] = [x, v];
        }
      }
      const delta = ta - tr;
      sel[sel.indexOf(r)] = a;
      inSel[r] = 0;
      inSel[a] = 1;
      const shift = B[r * n + r] - B[a * n + a];
      for (let x = 0; x < n; x++) t[x] += B[x * n + a] - B[x * n + r] + B[a * n + x] - B[r * n + x] + shift;
      veto[a] = veto[r] = 1;
      diff += delta;
      if (diff > bestScore) {
        bestScore = diff;
        bestState = sel.slice();
      }
    }
    current = bestState;
    const score = selectionScore(B, n, current);
    if (score <= last) break;
    last = score;
  }
  return current;
}
