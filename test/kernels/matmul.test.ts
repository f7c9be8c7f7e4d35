import { describe, expect, it } from "vitest";
import {
  chooseKernel,
  chooseVariant,
  matmul,
  matmulBlocksNT,
  matmulOp,
  matmulProblem,
  matmulRef,
  type MatmulTile,
  type MatmulVariant,
} from "../../kernels/matmul.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

// f32 accumulation of K products of values in [-1, 1): error grows like sqrt(K) * eps; we allow 2e-5
// relative to max(|C|, sqrt(K)), the typical size of an entry.
const RTOL = 2e-5;

interface Case {
  M: number;
  N: number;
  K: number;
  batchA?: number;
  batchB?: number;
  transA?: boolean;
  transB?: boolean;
}

async function check(v: MatmulVariant, tile: MatmulTile, c: Case, rand: () => number): Promise<number> {
  const rt = await testRuntime();
  const ba = c.batchA ?? 1;
  const bb = c.batchB ?? 1;
  const aShape = c.transA ? [c.K, c.M] : [c.M, c.K];
  const bShape = c.transB ? [c.N, c.K] : [c.K, c.N];
  const aData = randomF32(rand, ba * c.M * c.K);
  const bData = randomF32(rand, bb * c.K * c.N);
  const a = rt.upload(aData, ba > 1 ? [ba, ...aShape] : aShape);
  const b = rt.upload(bData, bb > 1 ? [bb, ...bShape] : bShape);
  const out = matmul(rt, a, b, { transA: c.transA, transB: c.transB, variant: v, tile });
  const got = await rt.read(out);
  const want = matmulRef(aData, bData, { ...c, batch: Math.max(ba, bb), broadcastA: ba === 1, broadcastB: bb === 1 });
  [a, b, out].forEach((t) => t.release());
  return assertClose(
    got,
    want,
    { rtol: RTOL, scale: Math.sqrt(c.K) },
    `${v.name} ${JSON.stringify(c)} tile ${JSON.stringify(tile)}`,
  );
}

/** Shapes a variant must handle: anything for checked ones; multiples of the tile for exact-fit ones. */
function casesFor(v: MatmulVariant, tile: MatmulTile, rand: () => number): Case[] {
  const odd: Case[] = [
    { M: 1, N: 1, K: 1 },
    { M: 7, N: 13, K: 5 },
    { M: 31, N: 17, K: 29, transA: true },
    { M: 33, N: 65, K: 17, transB: true },
    { M: 19, N: 23, K: 11, transA: true, transB: true },
    { M: randInt(2, 90), N: randInt(2, 90), K: randInt(2, 90), batchA: 3, batchB: 3 },
    { M: 37, N: 41, K: 43, batchA: 2, batchB: 1 },
    { M: 5, N: 97, K: 61, batchA: 1, batchB: 4, transB: true },
    { M: 130, N: 67, K: 257 },
    // A·Bᵀ with long K (weight gradients): split-K territory, odd M, N, K and tails of every length.
    { M: 7, N: 27, K: 1031, transB: true },
    { M: 32, N: 27, K: 4099, transB: true },
    { M: 10, N: 128, K: 128, transB: true },
    { M: 16, N: 9, K: 2050, transB: true },
    { M: 3, N: 5, K: 4096, batchA: 2, batchB: 2, transB: true },
    { M: 9, N: 33, K: 601, batchA: 1, batchB: 3, transB: true },
  ];
  function randInt(lo: number, hi: number) {
    return lo + Math.floor(rand() * (hi - lo + 1));
  }
  const cases = odd.filter((c) =>
    v.supports({ ...c, batch: Math.max(c.batchA ?? 1, c.batchB ?? 1), transA: !!c.transA, transB: !!c.transB }, tile)
  );
  // Multiples of the tile, for exact-fit variants (and as extra coverage for checked ones).
  const tm = (tile.TM ?? 1) * (tile.WG_Y ?? 1);
  const tn = (tile.TN ?? (tile.TV ? 4 * tile.TV : 1)) * (tile.WG_X ?? 1);
  const tk = 4;
  for (const [m, n, k] of [[1, 1, 1], [2, 3, 5], [3, 1, 7]]) {
    const base = [{ M: m * tm, N: n * tn, K: k * tk }, {
      M: m * tm,
      N: n * tn,
      K: k * tk,
      batchA: 2,
      batchB: 2,
    }] as Case[];
    for (const c of [...base, ...base.map((c) => ({ ...c, transB: true }))]) {
      const bShape = c.transB ? [c.N, c.K] : [c.K, c.N];
      const p = matmulProblem(
        c.batchA ? [2, c.M, c.K] : [c.M, c.K],
        c.batchB ? [2, ...bShape] : bShape,
        false,
        !!c.transB,
      );
      if (v.supports(p, tile)) cases.push(c);
    }
  }
  return cases;
}

describe("matmul", () => {
  for (const v of matmulOp.variants) {
    for (const tile of v.tiles) {
      it(`${v.name} ${JSON.stringify(tile)} matches the float64 twin`, async () => {
        const rand = mulberry32(testSeed(`matmul ${v.name} ${JSON.stringify(tile)}`));
        const cases = casesFor(v, tile, rand);
        expect(cases.length).toBeGreaterThan(2);
        for (const c of cases) expect(await check(v, tile, c, rand)).toBeLessThanOrEqual(RTOL);
      });
    }
  }

  it("rejects mismatched inner sizes with a clear message", async () => {
    const rt = await testRuntime();
    const a = rt.upload(new Float32Array(6), [2, 3]);
    const b = rt.upload(new Float32Array(8), [4, 2]);
    expect(() => matmul(rt, a, b)).toThrow(/inner sizes differ/);
    a.release();
    b.release();
  });

  it("the default path (active variant, with fallback) handles a random odd shape", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("matmul default path"));
    const [M, N, K] = [randInt(rand, 1, 150), randInt(rand, 1, 150), randInt(rand, 1, 150)];
    const aData = randomF32(rand, M * K);
    const bData = randomF32(rand, K * N);
    const out = matmul(rt, rt.upload(aData, [M, K]), rt.upload(bData, [K, N]));
    assertClose(await rt.read(out), matmulRef(aData, bData, { M, N, K }), { rtol: RTOL, scale: Math.sqrt(K) });
  });

  it("the default path takes a smaller tile where the tuned one computes rows past M, and stays exact", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("matmul tile per problem"));
    // 16 output channels (a small conv): no tile of more than 20 rows; 144 rows: a tile that divides it.
    for (const [M, K, N] of [[16, 27, 1000], [144, 32, 512], [16, 4099, 27]]) {
      const transB = K > 4096;
      const p = matmulProblem([M, K], transB ? [N, K] : [K, N], false, transB);
      const { variant, tile } = chooseKernel(p);
      const rows = Math.ceil(M / tile.TM) * tile.TM;
      expect(rows <= 1.25 * M, `${variant.name} ${JSON.stringify(tile)} for M=${M}`).toBe(true);
      const aData = randomF32(rand, M * K);
      const bData = randomF32(rand, K * N);
      const out = matmul(rt, rt.upload(aData, [M, K]), rt.upload(bData, transB ? [N, K] : [K, N]), { transB });
      const want = matmulRef(aData, bData, { M, N, K, transB });
      assertClose(await rt.read(out), want, { rtol: RTOL, scale: Math.sqrt(K) }, `${M}x${K}x${N}`);
    }
  });

  it("matmulBlocksNT multiplies column blocks of wide matrices in place (aligned and unaligned)", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("matmul blocks NT"));
    for (const [M, N, T, batch] of [[16, 16, 64, 5], [3, 5, 1, 7], [4, 8, 13, 3], [2, 3, randInt(rand, 1, 40), 4]]) {
      // a [M, batch*T] and b [N, batch*T]: block i is columns [i*T, (i+1)*T) of each row.
      const aData = randomF32(rand, M * batch * T);
      const bData = randomF32(rand, N * batch * T);
      const out = matmulBlocksNT(rt, rt.upload(aData, [M, batch * T]), rt.upload(bData, [N, batch * T]), {
        M,
        N,
        K: T,
        batch,
        strideA: T,
        strideB: T,
        ldA: batch * T,
        ldB: batch * T,
      });
      const got = await rt.read(out);
      for (let i = 0; i < batch; i++) {
        const block = (d: Float32Array, rows: number) =>
          Float32Array.from({ length: rows * T }, (_, e) => d[Math.floor(e / T) * batch * T + i * T + (e % T)]);
        const want = matmulRef(block(aData, M), block(bData, N), { M, N, K: T, transB: true });
        assertClose(got.subarray(i * M * N, (i + 1) * M * N), want, { rtol: RTOL, scale: Math.sqrt(T) }, `block ${i}`);
      }
    }
    const a = rt.upload(new Float32Array(12), [3, 4]);
    expect(() => matmulBlocksNT(rt, a, a, { M: 3, N: 3, K: 2, batch: 3, strideA: 2, strideB: 2, ldA: 4, ldB: 4 }))
      .toThrow(/reach past/);
  });

  it("A·Bᵀ with a long K (weight gradient) runs split-K on the default path, without a transpose copy", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("matmul splitk default path"));
    const [M, N, K] = [32, 27, 4099];
    expect(chooseVariant(matmulProblem([M, K], [N, K], false, true)).name).toBe("splitk-nt");
    expect(chooseVariant(matmulProblem([512, 4096], [512, 4096], false, true)).name === "splitk-nt").toBe(false);
    const aData = randomF32(rand, M * K);
    const bData = randomF32(rand, N * K);
    const a = rt.upload(aData, [M, K]);
    const b = rt.upload(bData, [N, K]);
    const before = rt.stats.dispatches;
    const out = matmul(rt, a, b, { transB: true });
    expect(rt.stats.dispatches - before).toBe(2); // main pass + reduce; no transpose
    assertClose(await rt.read(out), matmulRef(aData, bData, { M, N, K, transB: true }), {
      rtol: RTOL,
      scale: Math.sqrt(K),
    });
    [a, b, out].forEach((t) => t.release());
  });
  it("the runtime's profiler gives each dispatch's device time by label, and the products stay right", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("matmul profile"));
    const aData = randomF32(rand, 64 * 96);
    const bData = randomF32(rand, 96 * 33);
    const a = rt.upload(aData, [64, 96]);
    const b = rt.upload(bData, [96, 33]);
    const on = rt.startProfile();
    expect(on).toBe(rt.device.features.has("timestamp-query"));
    const outs = [0, 1, 2].map(() => matmul(rt, a, b));
    const square = matmul(rt, a, a.reshape([96, 64]));
    const times = await rt.stopProfile();
    for (const out of outs) {
      assertClose(await rt.read(out), matmulRef(aData, bData, { M: 64, N: 33, K: 96 }), {
        rtol: RTOL,
        scale: Math.sqrt(96),
      });
    }
    if (on) {
      const label = [...times.keys()].find((k) => k.endsWith(" 64x96x33"));
      expect(label).toMatch(/^matmul\//);
      expect(times.get(label!)!.count).toBe(3);
      expect(times.get(label!)!.ms).toBeGreaterThan(0);
      expect([...times.keys()].some((k) => k.endsWith(" 64x96x64"))).toBe(true);
    }
    [a, b, square, ...outs].forEach((t) => t.release());
  });
});
