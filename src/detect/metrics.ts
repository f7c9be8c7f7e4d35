// Detection metrics against the attack manifest: ROC/AUROC, precision and recall at the removal budget,
// TPR at a fixed FPR. Higher score = more suspicious.

export interface RocPoint {
  fpr: number;
  tpr: number;
}

export interface DetectionMetrics {
  auroc: number;
  precision_at_budget: number;
  recall_at_budget: number;
  tpr_at_5fpr: number;
  flagged: number;
}

/** ROC curve from scores and ground truth (ties share one step). */
export function rocCurve(scores: ArrayLike<number>, positive: ArrayLike<boolean>): RocPoint[] {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b] - scores[a]);
  let P = 0;
  for (let i = 0; i < positive.length; i++) if (positive[i]) P++;
  const N = scores.length - P;
  const pts: RocPoint[] = [{ fpr: 0, tpr: 0 }];
  let tp = 0, fp = 0;
  for (let r = 0; r < idx.length; r++) {
    if (positive[idx[r]]) tp++;
    else fp++;
    if (r === idx.length - 1 || scores[idx[r + 1]] !== scores[idx[r]]) pts.push({ fpr: N ? fp / N : 0, tpr: P ? tp / P : 0 });
  }
  return pts;
}

/** Area under the ROC curve (the probability a poisoned example outscores a clean one; ties count half). */
export function auroc(scores: ArrayLike<number>, positive: ArrayLike<boolean>): number {
  const pts = rocCurve(scores, positive);
  let a = 0;
  for (let i = 1; i < pts.length; i++) a += ((pts[i].fpr - pts[i - 1].fpr) * (pts[i].tpr + pts[i - 1].tpr)) / 2;
  return a;
}

/** Largest TPR with FPR <= maxFpr. */
export function tprAtFpr(scores: ArrayLike<number>, positive: ArrayLike<boolean>, maxFpr = 0.05): number {
  return rocCurve(scores, positive).reduce((best, p) => (p.fpr <= maxFpr + 1e-12 ? Math.max(best, p.tpr) : best), 0);
}

/** Indices of the `budget` highest scores. */
export function topK(scores: ArrayLike<number>, budget: number): number[] {
  return Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[b] - scores[a]).slice(0, budget);
}

export function detectionMetrics(scores: ArrayLike<number>, positive: ArrayLike<boolean>, flagged: readonly number[]): DetectionMetrics {
  let P = 0, hit = 0;
  for (let i = 0; i < positive.length; i++) if (positive[i]) P++;
  for (const i of flagged) if (positive[i]) hit++;
  return {
    auroc: auroc(scores, positive),
    precision_at_budget: flagged.length ? hit / flagged.length : 0,
    recall_at_budget: P ? hit / P : 0,
    tpr_at_5fpr: tprAtFpr(scores, positive, 0.05),
    flagged: flagged.length,
  };
}

/**
 * The default budget: the examples whose score stands out. Sort scores in decreasing order and cut at
 * the largest relative drop s_k / s_{k+1} among ranks min..max (default 1% to 20% of n). A planted
 * block's members share high scores and are followed by a cliff; clean data has no cliff, and the cut
 * then falls wherever the largest (small) drop is, which the report shows.
 */
export function standoutBudget(scores: ArrayLike<number>, opts: { min?: number; max?: number } = {}): number {
  const s = Array.from(scores).sort((a, b) => b - a);
  const n = s.length;
  const lo = Math.max(1, opts.min ?? Math.ceil(n / 100));
  const hi = Math.min(n - 1, opts.max ?? Math.ceil(n / 5));
  const floor = Math.max(1e-12, Math.abs(s[0]) * 1e-6);
  let best = lo, bestRatio = -Infinity;
  for (let k = lo; k <= hi; k++) {
    const ratio = Math.log(Math.max(s[k - 1], floor)) - Math.log(Math.max(s[k], floor));
    if (ratio > bestRatio) {
      bestRatio = ratio;
      best = k;
    }
  }
  return best;
}
