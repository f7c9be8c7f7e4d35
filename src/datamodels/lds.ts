// LDS of an n x n attribution whose targets are the training examples themselves (datamodels, or TRAK's A
// read densely), scored on held-out subset models: for target i, predicted margin of subset S is
// sum_{j in S} A[i][j], actual is the held-out model's margin on i, and the Spearman correlation runs over
// the held-out models whose subset leaves i out. Leaving those out keeps the comparison fair: A's diagonal is
// zero by definition, and a model trained on i itself fits i whatever the other examples do, which no
// attribution of other examples can predict. (With separate target images, as in src/attribution/lds.ts,
// every subset leaves the target out.)
import { spearman } from "../attribution/lds.ts";
import { maskBits } from "./masks.ts";
import type { DatamodelStore } from "./store.ts";

export interface HeldOut {
  /** S masks, n bytes each. */
  masks: Uint8Array[];
  /** S x n actual margins on the training examples. */
  margins: Float32Array[];
}

/**
 * `readRows(r0, r1)` gives rows r0..r1-1 of A (row = target), row-major. Targets with fewer than
 * `minSubsets` subsets that leave them out are skipped.
 */
export async function heldOutLds(readRows: (r0: number, r1: number) => Promise<Float32Array>, n: number, h: HeldOut, opts: { rowBlock?: number; minSubsets?: number } = {}): Promise<{ lds: number; perTarget: Float64Array; targets: number }> {
  const S = h.masks.length;
  const minSubsets = opts.minSubsets ?? 3;
  const block = opts.rowBlock ?? 256;
  const perTarget = new Float64Array(n).fill(NaN);
  const members = h.masks.map((m) => Uint32Array.from(Array.from(m.entries()).filter(([, v]) => v).map(([j]) => j)));
  for (let r0 = 0; r0 < n; r0 += block) {
    const r1 = Math.min(n, r0 + block);
    const rows = await readRows(r0, r1);
    for (let i = r0; i < r1; i++) {
      const row = rows.subarray((i - r0) * n, (i - r0 + 1) * n);
      const pred: number[] = [];
      const actual: number[] = [];
      for (let s = 0; s < S; s++) {
        if (h.masks[s][i]) continue;
        let p = 0;
        for (const j of members[s]) p += row[j];
        pred.push(p);
        actual.push(h.margins[s][i]);
      }
      if (pred.length >= minSubsets) perTarget[i] = spearman(pred, actual);
    }
  }
  const valid = perTarget.filter((v) => !Number.isNaN(v));
  return { lds: valid.length ? valid.reduce((a, b) => a + b, 0) / valid.length : NaN, perTarget, targets: valid.length };
}

/** Held-out models 0..count-1 of a store (all of them must be stored). */
export async function storedHeldOut(store: DatamodelStore, count: number): Promise<HeldOut> {
  const order = store.stored("heldout");
  const masks: Uint8Array[] = [];
  const margins: Float32Array[] = [];
  const n = store.n;
  const L = store.recordLength;
  const { models, margins: all } = await store.records("heldout", 0, order.length);
  models.forEach((m, r) => {
    if (m >= count) return;
    masks.push(maskBits(store.spec, "heldout", m));
    margins.push(all.slice(r * L, r * L + n));
  });
  if (masks.length !== count) throw new Error(`datamodels: ${masks.length} of the ${count} held-out models are stored; train the rest first`);
  return { masks, margins };
}
