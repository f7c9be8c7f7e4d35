// Maximum-sum submatrix local search (DESIGN.md section 3): the detector's core.
//
// For a size s the attribution matrix A (n x n, its own diagonal taken as zero) is centred: B = A with
// B[i][i] = d_i = -(s/n) * rowsum_i(A). The objective of a selection S (|S| = s) is f(S) = sum_{i,j in S} B[i][j].
// With R_x, C_x the row and column sums of x over S (in B), every example has a total
//   t_x = R_x + C_x - B[x][x]  (members: what removing x costs)
//   t_x = R_x + C_x + B[x][x]  (non-members: what adding x gains),
// both equal to P_x + d_x with P_x = sum_{j in S, j != x} (A[x][j] + A[j][x]). Swapping member r for
// non-member a changes the objective by exactly  t_a - t_r - B[r][a] - B[a][r]  (the cross term is what
// the public reference code leaves out). Since only A + A^T enters, the search works on the symmetrised
// matrix: the dense backends keep Sym = A + A^T (zero diagonal), the factor backend P = U (V^T 1_S) +
// V (U^T 1_S) with the diagonal U_x.V_x removed.
//
// The local search, per size and random restart (seeded):
//   1. random start of s members;
//   2. epoch: from the current selection, P and the objective (the exact objective of the selection, not a
//      score tracked through the swaps' gains), then make up to min(100, s, n - s) forced swaps:
//      remove the unbarred member with the smallest total, add the unbarred non-member with the largest
//      t_a + ADD_BONUS (s/n) rowsum_a (equal values: the smaller index), bar both for the rest of the
//      epoch, update the totals with the changed row and column; log each swap's exact gain;
//   3. keep the best prefix of the epoch's swaps by cumulative gain (the shortest among equals); an epoch
//      whose best prefix does not gain more than tol = 1e-6 * max |t| seen in the epoch stops the
//      search, and so does an epoch whose recomputed exact objective is not above the previous one
//      (which can only happen through rounding: the previous selection is kept); at most 100 epochs.
// Scores of example i: its frequency, sum over sizes s of (number of solutions of size s containing i) / s;
// its support, sum over sizes of its total t_i against the best solution of size s, z-scored over all n;
// and the ranking, frequency / max frequency + support / max support (see `rankScores`).
//
// The driver below runs on the host and takes every decision (start sets, prefixes, stopping); backends
// only compute an epoch's swap log. The float64 CPU twin (`denseCpuBackend`) is the reference; the device
// backends (search-gpu.ts: dense Sym on the device, or low-rank factors) run the same swaps in f32 and so
// take identical decisions whenever no two candidates' totals are within f32 rounding of each other.

/**
 * Non-members are ranked for addition by their exact gain t_a plus ADD_BONUS (s/n) rowsum_a: a look-ahead
 * towards examples whose influence on all others is large, as a block's members' is. The exact ranking
 * (bonus 0) gets stuck in natural blocks: on planted-block matrices its restarts held a third of the block
 * where the public reference's held most. The reference ranks by R_a + C_a - B[a][a], a bonus of 2 that
 * comes from a sign. The gains stay exact, so every epoch still raises the objective; measured against the
 * reference in `npm run bench -- search`. A larger bonus drifts towards ranking by row sums alone, which
 * fails on blocks whose rows sum like everyone else's.
 */
export const ADD_BONUS = 5;

export interface EpochLog {
  /** Exact objective of the selection the epoch started from (recomputed from P, not from the gains). */
  objective: number;
  removed: Int32Array;
  added: Int32Array;
  /** Exact gain of each swap, in order. */
  gains: Float64Array;
  /** Largest |t_r|, |t_a| of the swaps: the scale of rounding errors in the gains. */
  scale: number;
}

export interface SearchBackend {
  readonly n: number;
  readonly name: string;
  /** Centre for selections of size s. */
  setSize(s: number): void;
  /**
   * From the selection `mask` (1 = member): the exact objective, then `swaps` forced swaps, logged;
   * non-members ranked by t_a + bonus (s/n) rowsum_a.
   */
  epoch(mask: Uint8Array, swaps: number, bonus: number): Promise<EpochLog>;
  /** Totals t_x for a selection at the current size (tests). */
  totals(mask: Uint8Array): Promise<Float64Array>;
  /** Device bytes held by the backend's own state (0 on the CPU). */
  readonly deviceBytes: number;
  dispose(): void;
}

export interface SearchProgress {
  size: number;
  sizeIndex: number;
  sizes: number;
  restart: number;
  restarts: number;
  epochs: number;
  objective: number;
}

export interface SearchOptions {
  /**
   * Selection sizes; default: doubling from max(2, ceil(n/100)) up to n/10, plus floor(n/10) itself.
   * (Tiny sizes weigh 1/s each and mostly land in noise: starting at 2 instead of n/100 cut top-20
   * precision on the planted test from ~0.9 to ~0.75.)
   */
  sizes?: number[];
  /** Random restarts per size (default 20). */
  restarts?: number;
  seed?: number;
  /** Most epochs per restart (default 100). */
  maxEpochs?: number;
  /** Most forced swaps per epoch (default 100). */
  swapsPerEpoch?: number;
  /** Relative improvement an epoch must beat (default 1e-6 of the largest total in the epoch). */
  relTol?: number;
  /** Look-ahead bonus for additions (default ADD_BONUS; 0: rank by the exact gain). */
  bonus?: number;
  onProgress?: (p: SearchProgress) => void;
}

export interface Solution {
  size: number;
  restart: number;
  members: Int32Array;
  objective: number;
  epochs: number;
}

export interface SearchResult {
  /** The ranking: frequency and support, each over its maximum, summed. */
  scores: Float64Array;
  /** Sum over sizes of (solutions of size s containing i) / s: the removal budget reads its plateaus. */
  frequency: Float64Array;
  /** Sum over sizes of i's total against the best solution of size s, z-scored over all examples. */
  support: Float64Array;
  solutions: Solution[];
  sizes: number[];
  restarts: number;
}

export function defaultSizes(n: number): number[] {
  const top = Math.max(1, Math.floor(n / 10));
  const sizes: number[] = [];
  for (let s = Math.max(2, Math.ceil(n / 100)); s <= top; s *= 2) sizes.push(s);
  if (!sizes.length || sizes[sizes.length - 1] < top) sizes.push(top);
  return sizes.filter((s) => s >= 1 && s < n);
}

/** mulberry32 seeded by a hash of (seed, size, restart): the start set of one restart. */
export function startSet(n: number, s: number, seed: number, restart: number): Uint8Array {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const v of [s, restart]) h = Math.imul(h ^ v ^ (h >>> 16), 0x85ebca6b) >>> 0;
  let a = h;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const idx = new Int32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  const mask = new Uint8Array(n);
  for (let i = 0; i < s; i++) {
    const j = i + Math.floor(rand() * (n - i));
    const t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
    mask[idx[i]] = 1;
  }
  return mask;
}

/** One local search from `mask` at the backend's current size; mutates and returns the final mask. */
export async function localSearch(
  backend: SearchBackend,
  mask: Uint8Array,
  s: number,
  opts: SearchOptions = {},
): Promise<{ mask: Uint8Array; objective: number; epochs: number }> {
  const maxEpochs = opts.maxEpochs ?? 100;
  const bonus = opts.bonus ?? ADD_BONUS;
  const n = backend.n;
  const K = Math.min(opts.swapsPerEpoch ?? 100, s, n - s);
  const relTol = opts.relTol ?? 1e-6;
  let prevF = -Infinity;
  let prevMask: Uint8Array | undefined;
  let epochs = 0;
  for (let e = 0; e <= maxEpochs; e++) {
    const log = await backend.epoch(mask, e < maxEpochs ? K : 0, bonus);
    if (prevMask && !(log.objective > prevF)) {
      // The applied prefix did not raise the recomputed objective (rounding): keep the previous selection.
      epochs--;
      return { mask: prevMask, objective: prevF, epochs };
    }
    if (e === maxEpochs || K === 0) return { mask, objective: log.objective, epochs };
    const tol = relTol * log.scale;
    let cum = 0;
    let best = tol;
    let bestK = 0;
    for (let k = 0; k < log.gains.length; k++) {
      cum += log.gains[k];
      if (cum > best) {
        best = cum;
        bestK = k + 1;
      }
    }
    if (bestK === 0) return { mask, objective: log.objective, epochs };
    prevMask = mask.slice();
    prevF = log.objective;
    for (let k = 0; k < bestK; k++) {
      mask[log.removed[k]] = 0;
      mask[log.added[k]] = 1;
    }
    epochs++;
  }
  throw new Error("unreachable");
}

/** The full search: sizes x restarts, and the scores sum_s count_s(i) / s. */
export async function maxSumSearch(backend: SearchBackend, opts: SearchOptions = {}): Promise<SearchResult> {
  const n = backend.n;
  const sizes = opts.sizes ?? defaultSizes(n);
  const restarts = opts.restarts ?? 20;
  const seed = opts.seed ?? 0;
  const frequency = new Float64Array(n);
  const support = new Float64Array(n);
  const solutions: Solution[] = [];
  for (const [si, s] of sizes.entries()) {
    if (!(s >= 1 && s < n)) throw new Error(`search: size ${s} is out of range for n = ${n}`);
    backend.setSize(s);
    let best: { mask: Uint8Array; objective: number } | undefined;
    for (let r = 0; r < restarts; r++) {
      const res = await localSearch(backend, startSet(n, s, seed, r), s, opts);
      if (!best || res.objective > best.objective) best = { mask: res.mask.slice(), objective: res.objective };
      const members = new Int32Array(s);
      let c = 0;
      for (let i = 0; i < n; i++) {
        if (res.mask[i]) {
          members[c++] = i;
          frequency[i] += 1 / s;
        }
      }
      solutions.push({ size: s, restart: r, members, objective: res.objective, epochs: res.epochs });
      opts.onProgress?.({
        size: s,
        sizeIndex: si,
        sizes: sizes.length,
        restart: r,
        restarts,
        epochs: res.epochs,
        objective: res.objective,
      });
    }
    if (best) addZScores(support, await backend.totals(best.mask));
  }
  return { scores: rankScores(frequency, support), frequency, support, solutions, sizes, restarts };
}

/** into += (t - mean t) / std t (nothing when t is constant). */
function addZScores(into: Float64Array, t: ArrayLike<number>): void {
  const n = t.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += t[i] / n;
  let variance = 0;
  for (let i = 0; i < n; i++) variance += (t[i] - mean) ** 2 / n;
  if (!(variance > 0)) return;
  const sd = Math.sqrt(variance);
  for (let i = 0; i < n; i++) into[i] += (t[i] - mean) / sd;
}

/**
 * The ranking: frequency / max frequency + support / max support. Frequency alone only sees the examples the
 * restarts select, and when they keep settling on the same core of a block, the block's other members score
 * like everyone else. Their totals against the best selection of each size (what adding them would gain)
 * still set them apart. On planted-block matrices whose rows sum like everyone else's, the sum ranked the block
 * at AUROC 0.9998 where frequency alone gave 0.933 and the reference 0.942 (`npm run bench -- search`).
 */
export function rankScores(frequency: Float64Array, support: Float64Array): Float64Array {
  let topF = 0;
  let topS = 0;
  for (let i = 0; i < frequency.length; i++) {
    topF = Math.max(topF, frequency[i]);
    topS = Math.max(topS, support[i]);
  }
  return frequency.map((f, i) => (topF > 0 ? f / topF : 0) + (topS > 0 ? support[i] / topS : 0));
}

// ---------------------------------------------------------------- float64 CPU twin (the reference)

/** Sym = A + A^T with a zero diagonal, and rowsum_i = sum_{j != i} A[i][j], in float64. */
export function symmetrise(A: ArrayLike<number>, n: number): { sym: Float64Array; rowsum: Float64Array } {
  const sym = new Float64Array(n * n);
  const rowsum = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      if (i === j) continue;
      sym[i * n + j] = A[i * n + j] + A[j * n + i];
      rowsum[i] += A[i * n + j];
    }
  }
  return { sym, rowsum };
}

/**
 * One pass of an epoch over the totals: add row `inRow` and subtract row `outRow` (the previous swap's
 * added and removed examples) into P, then pick the next swap into `pick` = [r, a, t_r, t_a]: among the
 * unbarred members (`members[0..count)`) the smallest total, among the rest the largest total plus
 * `offset` (the look-ahead for unbarred non-members, -Infinity for members and barred examples, so the
 * pass over all n has no branch on their state); smaller index on ties. Plain functions over arrays: V8
 * runs them about twice as fast as the same loops in a closure over the backend's state.
 */
function sweep(
  P: Float64Array,
  inRow: Float64Array,
  outRow: Float64Array,
  centre: Float64Array,
  offset: Float64Array,
  members: Int32Array,
  count: number,
  pick: Float64Array,
): void {
  let a = -1;
  let ta = -Infinity;
  let key = -Infinity;
  const n = P.length;
  for (let x = 0; x < n; x++) {
    const p = P[x] + (inRow[x] - outRow[x]);
    P[x] = p;
    const t = p - centre[x];
    const k = t + offset[x];
    if (k > key) {
      key = k;
      ta = t;
      a = x;
    }
  }
  let r = -1;
  let tr = Infinity;
  for (let k = 0; k < count; k++) {
    const x = members[k];
    const t = P[x] - centre[x];
    if (t < tr || (t === tr && x < r)) {
      tr = t;
      r = x;
    }
  }
  pick[0] = r;
  pick[1] = a;
  pick[2] = tr;
  pick[3] = ta;
}

/** P += sign * row. */
function addScaled(P: Float64Array, row: Float64Array, sign: number): void {
  for (let x = 0; x < P.length; x++) P[x] += sign * row[x];
}

/**
 * The reference backend: a dense n x n matrix (row-major), float64 throughout. P is kept between epochs:
 * an epoch starts from the previous one's final selection and adds or subtracts the rows that differ
 * (the swaps its prefix dropped), or sums the s member rows afresh when that is fewer rows.
 */
export function denseCpuBackend(A: ArrayLike<number>, n: number): SearchBackend {
  if (A.length !== n * n) throw new Error(`denseCpuBackend: ${A.length} values for n = ${n}`);
  const { sym, rowsum } = symmetrise(A, n);
  let sn = 0;
  const P = new Float64Array(n);
  const centre = new Float64Array(n);
  const offset = new Float64Array(n);
  const members = new Int32Array(n);
  const zeros = new Float64Array(n);
  // The selection P sums; null until the first epoch.
  let held: Uint8Array | null = null;
  const addRow = (j: number, sign: number) => addScaled(P, sym.subarray(j * n, (j + 1) * n), sign);
  const prep = (mask: Uint8Array) => {
    let members = 0;
    let differ = 0;
    for (let x = 0; x < n; x++) {
      members += mask[x];
      if (held && held[x] !== mask[x]) differ++;
    }
    if (held && differ < members) {
      for (let x = 0; x < n; x++) if (held[x] !== mask[x]) addRow(x, mask[x] ? 1 : -1);
    } else {
      P.fill(0);
      for (let j = 0; j < n; j++) if (mask[j]) addRow(j, 1);
    }
    held = mask.slice();
  };
  return {
    n,
    name: "dense-cpu-f64",
    deviceBytes: 0,
    setSize(s: number) {
      sn = s / n;
      for (let x = 0; x < n; x++) centre[x] = sn * rowsum[x];
    },
    async totals(mask: Uint8Array) {
      prep(mask);
      return Float64Array.from({ length: n }, (_, x) => P[x] - centre[x]);
    },
    async epoch(mask0: Uint8Array, swaps: number, bonus: number): Promise<EpochLog> {
      prep(mask0);
      const mask = held!;
      let objective = 0;
      // The unbarred members, and each example's offset (see sweep); both change as swaps bar examples.
      let count = 0;
      for (let x = 0; x < n; x++) {
        if (mask[x]) {
          objective += 0.5 * P[x] - centre[x];
          members[count++] = x;
          offset[x] = -Infinity;
        } else offset[x] = bonus * sn * rowsum[x];
      }
      const removed = new Int32Array(swaps);
      const added = new Int32Array(swaps);
      const gains = new Float64Array(swaps);
      let scale = 0;
      const pick = new Float64Array(4);
      let r = -1;
      let a = -1;
      const row = (j: number) => (j < 0 ? zeros : sym.subarray(j * n, (j + 1) * n));
      for (let k = 0; k < swaps; k++) {
        sweep(P, row(a), row(r), centre, offset, members, count, pick);
        r = pick[0];
        a = pick[1];
        if (r < 0 || a < 0) throw new Error("search: no eligible swap (more swaps than members or non-members)");
        const tr = pick[2];
        const ta = pick[3];
        gains[k] = ta - tr - sym[r * n + a];
        scale = Math.max(scale, Math.abs(ta), Math.abs(tr));
        removed[k] = r;
        added[k] = a;
        mask[r] = 0;
        mask[a] = 1;
        offset[a] = -Infinity;
        members[members.indexOf(r)] = members[--count];
      }
      // The last swap's rows, with nothing left to pick.
      if (swaps > 0) sweep(P, row(a), row(r), centre, offset.fill(-Infinity), members, 0, pick);
      return { objective, removed, added, gains, scale };
    },
    dispose() {},
  };
}

/** f(S) on the centred matrix, by brute force from A (float64). */
export function centredObjective(A: ArrayLike<number>, n: number, members: ArrayLike<number>): number {
  const s = members.length;
  let f = 0;
  for (const i of Array.from(members)) {
    let rs = 0;
    for (let j = 0; j < n; j++) if (j !== i) rs += A[i * n + j];
    for (const j of Array.from(members)) f += i === j ? -(s / n) * rs : A[i * n + j];
  }
  return f;
}

/** The optimum over all C(n, s) selections (tiny n only). */
export function exhaustiveBest(A: ArrayLike<number>, n: number, s: number): { objective: number; members: number[] } {
  let best = -Infinity;
  let bestSet: number[] = [];
  const cur: number[] = [];
  const rec = (start: number) => {
    if (cur.length === s) {
      const f = centredObjective(A, n, cur);
      if (f > best) {
        best = f;
        bestSet = cur.slice();
      }
      return;
    }
    for (let i = start; i <= n - (s - cur.length); i++) {
      cur.push(i);
      rec(i + 1);
      cur.pop();
    }
  };
  rec(0);
  return { objective: best, members: bestSet };
}

/** Indices of the k highest scores (ties: smaller index first). */
export function topK(scores: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: scores.length }, (_, i) => i)
    .sort((a, b) => scores[b] - scores[a] || a - b)
    .slice(0, k);
}
