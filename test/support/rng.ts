import { mulberry32 } from "../../src/data/dataset.ts";
import { env } from "../../src/platform.ts";
export { mulberry32 };

// Seeded test data. Every test prints its seed; rerun one with TEST_SEED=<seed>.
export function testSeed(name: string): number {
  const fixed = env("TEST_SEED");
  const seed = fixed ? Number(fixed) : (Math.random() * 2 ** 32) >>> 0;
  console.log(`[seed] ${name}: ${seed} (rerun with TEST_SEED=${seed})`);
  return seed;
}

/** Uniform in [lo, hi), rounded to f32 so the CPU twin sees exactly what the GPU sees. */
export function randomF32(rand: () => number, n: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rand();
  return out;
}

export function randInt(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}
