import { describe, expect, it } from "vitest";
import { auroc, detectionMetrics, frequencyBudget, rocCurve, tprAtFpr } from "../../src/detect/metrics.ts";
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

  it("the frequency budget takes every plateau at or above a quarter of the top score, at most n/5", () => {
    const rand = mulberry32(testSeed("frequency budget"));
    // Plateaus as the search leaves them: two poison groups around a clean block, then the noise floor.
    const scores = Array.from(
      { length: 1000 },
      (_, i) => (i < 20 ? 1 : i < 60 ? 0.6 : i < 90 ? 0.3 + 0.01 * rand() : 0.2 * rand()),
    );
    const shuffled = scores.map((v, i) => [v, i] as const).sort(() => rand() - 0.5).map(([v]) => v);
    expect(frequencyBudget(shuffled)).toBe(90);
    expect(frequencyBudget(shuffled, { fraction: 0.5 })).toBe(60);
    expect(frequencyBudget(shuffled, { max: 50 })).toBe(50);
    expect(frequencyBudget(Array.from({ length: 1000 }, () => 1))).toBe(200); // no structure: the n/5 cap
    expect(frequencyBudget(new Float64Array(10))).toBe(0); // nothing selected
  });
});
