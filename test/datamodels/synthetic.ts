// Synthetic datamodels regression problems with a known answer, for the regression's tests and benchmark.
import { mulberry32 } from "../../src/data/dataset.ts";
import type { RegressionData } from "../../src/datamodels/regression-plan.ts";

export interface SyntheticRegression extends RegressionData {
  /** Ground truth: target i's nonzero weights (diagonal included) and bias. */
  truth: { cols: Int32Array[]; vals: Float64Array[]; bias: Float64Array };
  /** Dense truth, row i = target i, diagonal zeroed like a fit's weights (only for small n). */
  denseTruth(): Float64Array;
}

/**
 * Random alpha-subset masks and margins Y = X θ*ᵀ + b + noise, with `support` random nonzero
 * off-diagonal weights per target (uniform ±[0.5, 1.5] · effect) and a self weight `selfEffect`
 * (an example's own inclusion moves its margin most, as in real datamodels). Every row is a pure
 * function of (seed, row), so rows() regenerates any batch without storing models x n.
 */
export function syntheticRegression(
  o: {
    n: number;
    models: number;
    support?: number;
    alpha?: number;
    effect?: number;
    selfEffect?: number;
    noise?: number;
    seed: number;
  },
): SyntheticRegression {
  const { n, models, seed } = o;
  const support = Math.min(o.support ?? 5, n - 1);
  const alpha = o.alpha ?? 0.5;
  const effect = o.effect ?? 1;
  const noise = o.noise ?? 0.1;
  const rand = mulberry32(seed);
  const cols: Int32Array[] = [];
  const vals: Float64Array[] = [];
  const bias = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const picked = new Set<number>();
    while (picked.size < support) {
      const j = Math.floor(rand() * n);
      if (j !== i) picked.add(j);
    }
    const c = [i, ...picked];
    cols.push(Int32Array.from(c));
    vals.push(
      Float64Array.from(
        c,
        (j) => (j === i ? o.selfEffect ?? 2 * effect : (rand() < 0.5 ? -1 : 1) * effect * (0.5 + rand())),
      ),
    );
    bias[i] = rand() - 0.5;
  }
  return {
    n,
    models,
    truth: { cols, vals, bias },
    async rows(start, count) {
      if (start < 0 || count < 0 || start + count > models) {
        throw new Error(`rows(${start}, ${count}) outside [0, ${models})`);
      }
      const X = new Uint8Array(count * n);
      const Y = new Float32Array(count * n);
      for (let r = 0; r < count; r++) {
        const rr = mulberry32((seed ^ 0x9e3779b9) + Math.imul(start + r, 0x85ebca6b));
        for (let j = 0; j < n; j++) X[r * n + j] = rr() < alpha ? 1 : 0;
        for (let i = 0; i < n; i++) {
          let y = bias[i];
          const c = cols[i];
          const v = vals[i];
          for (let t = 0; t < c.length; t++) y += X[r * n + c[t]] * v[t];
          // Irwin–Hall(4) noise, unit variance.
          Y[r * n + i] = y + noise * (rr() + rr() + rr() + rr() - 2) * Math.sqrt(3);
        }
      }
      return { X, Y };
    },
    denseTruth() {
      const out = new Float64Array(n * n);
      for (let i = 0; i < n; i++) cols[i].forEach((j, t) => (out[i * n + j] = j === i ? 0 : vals[i][t]));
      return out;
    },
  };
}
