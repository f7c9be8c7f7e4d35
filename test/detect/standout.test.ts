// The decision rule (src/detect/standout.ts) on synthetic class-structured matrices: every class supports
// itself (+0.3 on same-class pairs) and has natural blocks (a rank-16 within-class component over N(0, 1)
// noise); a planted block of 30 examples in one class, raised by +6 and without the class's support (as
// poisons drawn from other classes), must stand out, and the clean matrix must not. Measured over 150 seeds:
// clean ratios 1.04-2.11, planted 7.2-23.4 (+4: from 5.0).
import { describe, expect, it } from "vitest";
import { classStandout, denseBlock, STANDOUT_RATIO } from "../../src/detect/standout.ts";
import { harm } from "../../src/detect/summary.ts";
import { mulberry32, testSeed } from "../support/rng.ts";

function classMatrix(seed: number, plant: number, n = 600, K = 6) {
  const rand = mulberry32(seed);
  const g = () => Math.sqrt(-2 * Math.log(Math.max(rand(), 1e-12))) * Math.cos(2 * Math.PI * rand());
  const labels = Uint8Array.from({ length: n }, (_, i) => i % K);
  const r = 16;
  const U = Array.from({ length: n * r }, g), V = Array.from({ length: n * r }, g);
  const block = new Set(Array.from({ length: 30 }, (_, t) => (t * K + 3 * K) % n)); // class 0, shuffled start
  const A = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      if (i === j) continue;
      let a = g();
      if (labels[i] === labels[j]) { for (let t = 0; t < r; t++) a += 0.35 * U[i * r + t] * V[j * r + t]; }
      const inBlock = block.has(i) && block.has(j), across = block.has(i) !== block.has(j);
      // A class supports itself on average (+0.3); poisons, drawn from other classes, do not support it.
      if (labels[i] === labels[j] && !(plant && across)) a += 0.3;
      A[i * n + j] = a + (inBlock ? plant : 0);
    }
  }
  return { A, n, labels };
}

describe("decision rule: does the strongest block stand out from the classes' own?", () => {
  it(`clean class-structured matrix: ratio below ${STANDOUT_RATIO}, nothing stands out`, async () => {
    const seed = testSeed("standout clean");
    const { A, n, labels } = classMatrix(seed, 0);
    const st = await classStandout(labels, (idx) => denseBlock(A, n, idx));
    console.log(`[standout clean] ratio ${st.ratio.toFixed(2)} (class ${st.cls})`);
    expect(st.ratio).toBeLessThan(STANDOUT_RATIO);
    expect(st.standsOut).toBe(false);
    expect(st.ratios.length).toBe(6);
    expect(st.sizes).toEqual([10, 20, 40]);
  });

  it("a +6 block of 30 in class 0 stands out, and the rule names class 0", async () => {
    const seed = testSeed("standout planted");
    const { A, n, labels } = classMatrix(seed, 6);
    const st = await classStandout(labels, (idx) => denseBlock(A, n, idx));
    console.log(`[standout planted] ratio ${st.ratio.toFixed(2)} (class ${st.cls})`);
    expect(st.standsOut).toBe(true);
    expect(st.cls).toBe(0);
    expect(st.ratios[0]).toBe(Math.max(...st.ratios));
  });

  it("too few classes to compare: no decision (ratio NaN), never 'stands out'", async () => {
    const { A, n } = classMatrix(1, 3, 60);
    const st = await classStandout(new Uint8Array(n).map((_, i) => i % 2), (idx) => denseBlock(A, n, idx));
    expect(Number.isNaN(st.ratio)).toBe(true);
    expect(st.standsOut).toBe(false);
  });
});

describe("harm warnings", () => {
  it("warn when removal lowered clean accuracy or raised the ASR, and not otherwise", () => {
    expect(harm({ clean_acc: 0.5, asr: 0.2 }, { clean_acc: 0.45, asr: 0.8 }, 100)).toEqual([
      "removing the 100 flagged examples lowered clean accuracy by 5.0 points (50.0% -> 45.0%)",
      "the attack success rate rose after removal (20.0% -> 80.0%)",
    ]);
    expect(harm({ clean_acc: 0.5, asr: 0.9 }, { clean_acc: 0.51, asr: 0.1 }, 100)).toEqual([]);
    expect(harm({ clean_acc: 0.5, asr: null }, { clean_acc: 0.4, asr: null }, 0)).toEqual([]);
  });
});
