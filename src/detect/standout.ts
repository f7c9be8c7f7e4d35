// The decision rule: does the strongest block of A stand out from the blocks clean data make?
//
// A backdoor's poisons all carry the target label (that is what a backdoor teaches), so they sit in one
// class's rows and columns of A. Clean data have natural blocks too (a set of similar horses supports
// each other), but every class has some, and a natural block also supports the rest of its class (they
// are all horses), where poisons, drawn from other classes, do not. So, in each class c and for each size
// s, the same local search finds the best block S within A[c][c], and its isolation is
//   iso_c(s) = m(S, S) / median over j in c \ S of m(S, j)
// with m the mean symmetrised attribution (A + A^T) / 2 over the pairs (the denominator kept >= 1% of the
// numerator; the median, so that the rest of a block larger than s does not count as the class). A class
// stands out by R_c = median over sizes of iso_c(s) / median over classes of iso(s): an isolated block at
// most sizes, not one that peaks at one size. The data stand out when max_c R_c >=
// STANDOUT_RATIO; below it the tool flags nothing (unless the user sets --budget): removing a natural block
// costs accuracy and can strengthen a weak backdoor. Sizes: doubling from 10 while s <= n_c / 2 of the
// smallest class. Calibration: README, "When nothing stands out".
import { median } from "../math.ts";
import { denseCpuBackend, maxSumSearch } from "./search.ts";

/** max_c R_c at which the data stand out. */
export const STANDOUT_RATIO = 5;

export interface Standout {
  /** max_c R_c (NaN: too few classes to compare). */
  ratio: number;
  threshold: number;
  standsOut: boolean;
  /** The class with the largest R_c. */
  cls: number;
  /** The block sizes searched in every class. */
  sizes: number[];
  /** R_c per class (NaN: a class too small to search). */
  ratios: number[];
}

/**
 * The rule on A's class blocks. `blockOf(idx)` returns A[idx][idx] (row-major, |idx|^2 values, any
 * diagonal); `labels[i]` is example i's class; classes with fewer than 4 examples are left out.
 */
export async function classStandout(
  labels: ArrayLike<number>,
  blockOf: (idx: number[]) => Promise<Float32Array> | Float32Array,
  opts: { restarts?: number; seed?: number; threshold?: number } = {},
): Promise<Standout> {
  const threshold = opts.threshold ?? STANDOUT_RATIO;
  const members = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i];
    if (!members.has(c)) members.set(c, []);
    members.get(c)!.push(i);
  }
  const classes = [...members.keys()].filter((c) => members.get(c)!.length >= 4).sort((a, b) => a - b);
  const K = Math.max(-1, ...members.keys()) + 1;
  const none: Standout = { ratio: NaN, threshold, standsOut: false, cls: -1, sizes: [], ratios: [] };
  if (classes.length < 3) return none;
  const smallest = Math.min(...classes.map((c) => members.get(c)!.length));
  const sizes: number[] = [];
  for (let s = Math.min(10, Math.floor(smallest / 2)); s <= smallest / 2; s *= 2) sizes.push(Math.max(2, s));
  const isolation = new Map<number, number[]>();
  for (const c of classes) {
    const idx = members.get(c)!;
    const m = idx.length;
    const block = Float32Array.from(await blockOf(idx));
    for (let i = 0; i < m; i++) block[i * m + i] = 0;
    const res = await maxSumSearch(denseCpuBackend(block, m), {
      sizes,
      restarts: opts.restarts ?? 10,
      seed: opts.seed ?? 0,
    });
    isolation.set(
      c,
      sizes.map((s) => {
        const best = res.solutions.filter((x) => x.size === s).reduce((a, b) => (b.objective > a.objective ? b : a));
        const inS = new Uint8Array(m);
        for (const a of best.members) inS[a] = 1;
        let inside = 0;
        const ties: number[] = []; // each non-member's mean tie to the block
        for (let b = 0; b < m; b++) {
          let t = 0;
          for (const a of best.members) t += block[a * m + b] + block[b * m + a];
          if (inS[b]) inside += t;
          else ties.push(t / (2 * s));
        }
        const mIn = inside / (2 * s * (s - 1)), mAcross = median(ties);
        return mIn / Math.max(mAcross, Math.abs(mIn) / 100);
      }),
    );
  }
  const typical = sizes.map((_, si) => median(classes.map((c) => isolation.get(c)![si])));
  const ratios = new Array<number>(K).fill(NaN);
  for (const c of classes) {
    ratios[c] = median(isolation.get(c)!.map((v, si) => (typical[si] > 0 ? v / typical[si] : Infinity)));
  }
  const cls = classes.reduce((a, b) => (ratios[b] > ratios[a] ? b : a));
  return { ratio: ratios[cls], threshold, standsOut: ratios[cls] >= threshold, cls, sizes, ratios };
}

/** A[idx][idx] of a dense row-major n x n matrix. */
export function denseBlock(A: ArrayLike<number>, n: number, idx: number[]): Float32Array {
  const m = idx.length;
  const out = new Float32Array(m * m);
  for (let a = 0; a < m; a++) {
    const row = idx[a] * n;
    for (let b = 0; b < m; b++) out[a * m + b] = A[row + idx[b]];
  }
  return out;
}
