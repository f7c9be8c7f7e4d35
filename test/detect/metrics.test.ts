import { describe, expect, it } from "vitest";
import { auroc, detectionMetrics, rocCurve, standoutRemoval, tprAtFpr } from "../../src/detect/metrics.ts";
import { mulberry32, testSeed } from "../support/rng.ts";

describe("detection metrics", () => {
  it(
    "AUROC is 1 for a perfect ranking, 0 for a reversed one, 0.5 for ties, and the pairwise probability " +
      "otherwise",
    () => {
      const truth = [true, true, false, false, false];
      expect(auroc([5, 4, 3, 2, 1], truth)).toBe(1);
      expect(auroc([1, 2, 3, 4, 5], truth)).toBe(0);
      expect(auroc([1, 1, 1, 1, 1], truth)).toBe(0.5);
      const rand = mulberry32(testSeed("auroc pairwise"));
      const s = Array.from({ length: 60 }, () => Math.round(rand() * 20));
      const t = s.map(() => rand() < 0.3);
      let wins = 0, pairs = 0;
      for (let i = 0; i < s.length; i++) {
        for (let j = 0; j < s.length; j++) {
          if (t[i] && !t[j]) {
            pairs++;
            wins += s[i] > s[j] ? 1 : s[i] === s[j] ? 0.5 : 0;
          }
        }
      }
      expect(Math.abs(auroc(s, t) - wins / pairs)).toBeLessThan(1e-12);
    },
  );

  it("ROC ends at (1, 1); TPR at 5% FPR and precision/recall at the budget", () => {
    const scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05];
    const truth = [true, false, true, false, false, false, false, false, false, true];
    const roc = rocCurve(scores, truth);
    expect(roc[roc.length - 1]).toEqual({ fpr: 1, tpr: 1 });
    expect(tprAtFpr(scores, truth, 0.05)).toBeGreaterThan(0.33);
    const m = detectionMetrics(scores, truth, [0, 1, 2]);
    expect(m.precision_at_budget).toBeGreaterThan(0.66);
    expect(Math.abs(m.recall_at_budget - 2 / 3)).toBeLessThan(1e-12);
  });

  it("auto removal: the standout class's examples from 1/8 of its top score, highest first, at most n/5", () => {
    const rand = mulberry32(testSeed("standout removal"));
    // Class 3 as the ranking leaves it: a plateau of poisons, a tail above 1/8 of the top, then its clean
    // examples; class 5 holds a natural block scoring higher than anything in class 3, which must stay.
    const n = 1000;
    const labels = Array.from({ length: n }, (_, i) => i % 10);
    const scores = labels.map((c, i) => {
      if (c === 5 && i < 300) return 3 + rand();
      if (c !== 3) return 0.2 * rand();
      return i < 200 ? 2 - 0.001 * i : i < 400 ? 0.3 + 0.1 * rand() : 0.2 * rand();
    });
    const want = labels.map((_, i) => i).filter((i) => labels[i] === 3 && i < 400)
      .sort((a, b) => scores[b] - scores[a]);
    expect(standoutRemoval(scores, labels, 3)).toEqual(want);
    expect(standoutRemoval(scores, labels, 3, { fraction: 0.5 })).toEqual(want.filter((i) => i < 200));
    expect(standoutRemoval(scores, labels, 3, { max: 25 })).toEqual(want.slice(0, 25));
    const flat = labels.map(() => 1); // no structure: the n/5 cap applies
    expect(standoutRemoval(flat, labels.map(() => 0), 0).length).toBe(200);
    expect(standoutRemoval(new Float64Array(n), labels, 3)).toEqual([]); // nothing selected
  });
});
