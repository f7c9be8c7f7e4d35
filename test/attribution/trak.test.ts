import { describe, expect, it } from "vitest";
import { buildAttribution, ridgeInverse } from "../../src/attribution/trak.ts";
import type { Features } from "../../src/attribution/featurize.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randomF32, testSeed } from "../support/rng.ts";

describe("TRAK kernel", () => {
  it("K (PhiᵀPhi + lambda I) = I", async () => {
    await testRuntime(); // prints the adapter, as every test file does
    const rand = mulberry32(testSeed("kernel"));
    for (const [n, k] of [[40, 24], [9, 16]]) { // n < k: the Gram matrix is singular, lambda makes it definite
      const phi = randomF32(rand, n * k);
      const gram = new Float64Array(k * k);
      for (let i = 0; i < n; i++) {
        for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) gram[a * k + b] += phi[i * k + a] * phi[i * k + b];
      }
      const lambda = 0.05 * n;
      const K = ridgeInverse(gram, k, lambda);
      const prod = new Float64Array(k * k);
      for (let a = 0; a < k; a++) {
        for (let b = 0; b < k; b++) {
          let s = 0;
          for (let t = 0; t < k; t++) s += K[a * k + t] * (gram[t * k + b] + (t === b ? lambda : 0));
          prod[a * k + b] = s;
        }
      }
      assertClose(
        prod,
        Float64Array.from({ length: k * k }, (_, i) => (i % (k + 1) === 0 ? 1 : 0)),
        { rtol: 1e-9 },
        `K (G + lambda I), n=${n} k=${k}`,
      );
    }
  });
});

/** Dense A from the formula, in float64: A[i][j] = (1/M) sum_m phi_mi K_m phi_mj Qbar_j. */
function denseA(phis: Float32Array[], Ks: Float64Array[], qbar: Float32Array, n: number, k: number): Float64Array {
  const M = phis.length;
  const A = new Float64Array(n * n);
  for (let m = 0; m < M; m++) {
    const pk = new Float64Array(n * k);
    for (let i = 0; i < n; i++) {
      for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) pk[i * k + b] += phis[m][i * k + a] * Ks[m][a * k + b];
    }
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let b = 0; b < k; b++) s += pk[i * k + b] * phis[m][j * k + b];
        A[i * n + j] += (s * qbar[j]) / M;
      }
    }
  }
  return A;
}

describe("attribution factors", () => {
  for (const normalize of [false, true]) {
    it(`low-rank products equal the dense A${normalize ? " (normalised K)" : ""}`, async () => {
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`factors normalize=${normalize}`));
      const [n, k, M] = [37, 12, 3];
      const phis = Array.from({ length: M }, () => randomF32(rand, n * k));
      const feats: Features[] = phis.map((p) => {
        const margins = randomF32(rand, n, -3, 3);
        return {
          phi: rt.upload(p, [n, k]),
          margins,
          q: Float32Array.from(margins, (v) => 1 - 1 / (1 + Math.exp(-v))),
          n,
          k,
        };
      });
      const { attribution: a, kernels } = await buildAttribution(rt, feats, { lambdaScale: 0.1, normalize });
      const Ks = kernels.map((x) => Float64Array.from(Float32Array.from(x.K)));
      const A = denseA(phis, Ks, a.qbar, n, k);
      const scale = Math.max(...A.map(Math.abs));
      const tol = { rtol: 2e-5, scale };
      // Whole A and a block.
      assertClose(await a.readBlock(0, n, 0, n), A, tol, "dense A");
      const [r0, r1, c0, c1] = [3, 20, 7, 36];
      const blk = await a.readBlock(r0, r1, c0, c1);
      const want = new Float64Array((r1 - r0) * (c1 - c0));
      for (let i = r0; i < r1; i++) for (let j = c0; j < c1; j++) want[(i - r0) * (c1 - c0) + j - c0] = A[i * n + j];
      assertClose(blk, want, tol, "block");
      // Products with a vector, rows and columns.
      const v = randomF32(rand, n);
      const Av = new Float64Array(n);
      const ATv = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          Av[i] += A[i * n + j] * v[j];
          ATv[j] += A[i * n + j] * v[i];
        }
      }
      assertClose(await a.times(v), Av, { rtol: 2e-5, scale: scale * n }, "A v");
      assertClose(await a.timesT(v), ATv, { rtol: 2e-5, scale: scale * n }, "Aᵀ v");
      assertClose(await a.row(5), A.subarray(5 * n, 6 * n), tol, "row 5");
      assertClose(await a.column(11), Float64Array.from({ length: n }, (_, i) => A[i * n + 11]), tol, "column 11");
      expect(a.meta.lambdas.length).toBe(M);
      a.release();
      feats.forEach((f) => f.phi.release());
    });
  }
});
