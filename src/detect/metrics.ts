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
    if (r === idx.length - 1 || scores[idx[r + 1]] !== scores[idx[r]]) {
      pts.push({ fpr: N ? fp / N : 0, tpr: P ? tp / P : 0 });
    }
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

export function detectionMetrics(
  scores: ArrayLike<number>,
  positive: ArrayLike<boolean>,
  flagged: readonly number[],
): DetectionMetrics {
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

/** The share of the standout class's top score an example needs for the auto budget (standoutRemoval). */
export const REMOVAL_FRACTION = 1 / 8;

/**
 * The auto budget's removal: the examples of class `cls` (the class that stands out) whose score is at least
 * `fraction` (default REMOVAL_FRACTION) of the class's top score, highest first, at most `max` (default n/5). The
 * ranking (search.ts rankScores) puts the poisons the restarts settle on in plateaus near the top, and the
 * rest of them in a tail that mixes with the class's clean examples; a cut deep into that tail leaves few
 * poisons to keep the backdoor alive, at the cost of some clean examples of one class (README "Budget").
 */
export function standoutRemoval(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  cls: number,
  opts: { fraction?: number; max?: number } = {},
): number[] {
  const n = scores.length;
  const fraction = opts.fraction ?? REMOVAL_FRACTION;
  const members = Array.from({ length: n }, (_, i) => i).filter((i) => labels[i] === cls);
  const top = Math.max(...members.map((i) => scores[i]));
  if (!(top > 0)) return []; // no example of the class was ever selected
  return members
    .filter((i) => scores[i] >= fraction * top)
    .sort((a, b) => scores[b] - scores[a])
    .slice(0, Math.min(n, opts.max ?? Math.ceil(n / 5)));
}
