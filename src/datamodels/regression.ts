// Datamodels regression (DESIGN.md §2): for every target i, fit Y[:, i] ~ X theta_i + b_i over the
// trained models, with an L2 (ridge) or L1 (lasso) penalty chosen per target on held-out models.
// All n targets are fitted at once, as matrix products on the device:
//  1. one streamed pass over the training models accumulates G' = Xsᵀ Xs and C' = Xsᵀ Ys with
//     Xs = 2X − 1 (±1: exact in f32, and nearly centred already) and Ys = Y − a per-target shift, so the
//     centring below subtracts small numbers; the column sums are kept on the host in float64;
//  2. centring: H = (G' − sx sxᵀ/m) / 4m is the covariance of the 0/1 masks, R = (C' − sx syᵀ/m) / 2m
//     their cross-covariance with the margins (rank-1 updates on the device);
//  3. down the regularisation path, every target's problem ½θᵀHθ − rᵀθ + λ·penalty(θ) is solved with all
//     targets as the columns of one n x n Θ, one matmul H·P per iteration plus O(n²) step kernels:
//     ridge by conjugate gradients (each column its own CG run, in lockstep), lasso by accelerated
//     proximal gradient (FISTA; soft-threshold fused into the step). Warm starts carry Θ down the path,
//     and a path point stops once converged (FitOptions.tolerance);
//  4. after each λ the held-out models stream through: predictions Xh Θ + b, squared error per target,
//     and each target keeps the Θ column, bias and λ with the lowest held-out error so far;
//  5. the kept Θ (targets as columns) is transposed to row = target, cropped and its diagonal zeroed.
// Memory: O(n²) on the device (H, R, Θ, the search direction or extrapolated point, H·P, the CG residual,
// the best Θ: 7 n x n f32 matrices, 730 MiB at n = 5,000) plus O(batch · n) per
// streamed batch; the held-out batches are kept on the device only when they fit a budget.
// The objective per target is the sklearn/glmnet one: (1/2m) Σ_r (y_r − b − x_r·θ)² + λ·P(θ), with
// P = ½|θ|² (l2) or |θ|₁ (l1), x in 0/1 units, so θ is "margin change when example j is included".
import { axpy, scale } from "../../kernels/elementwise.ts";
import { fill } from "../../kernels/fill.ts";
import { gemv } from "../../kernels/gemv.ts";
import { matmul } from "../../kernels/matmul.ts";
import {
  cgDirection,
  cgInit,
  cgStep,
  colAbsMax,
  colDot,
  colSse,
  finalizeWeights,
  proxStep,
  rank1Update,
  selectBest,
} from "../../kernels/regression.ts";
import { mulberry32 } from "../data/dataset.ts";
import type { Runtime, Tensor } from "../gpu/runtime.ts";
import {
  CG_FLOOR,
  cgConverged,
  CHECK_EVERY,
  checkedRows,
  converged,
  type DatamodelFit,
  encodeTrainBatch,
  type FitOptions,
  LIPSCHITZ_MARGIN,
  meanMaskVariance,
  momentum,
  newSums,
  planFit,
  POWER_ITERATIONS,
  POWER_READ_EVERY,
  type RegressionData,
} from "./regression-plan.ts";

export { DEFAULT_RATIOS, paddedSize, planFit } from "./regression-plan.ts";
export type { DatamodelFit, FitOptions, FitPlan, RegressionData } from "./regression-plan.ts";

function heldOutBatch(X: Uint8Array, Y: Float32Array, count: number, n: number, N: number) {
  const xh = new Float32Array(count * N);
  const yh = new Float32Array(count * N);
  for (let r = 0; r < count; r++) {
    for (let j = 0; j < n; j++) {
      xh[r * N + j] = X[r * n + j] ? 1 : 0;
      yh[r * N + j] = Y[r * n + j];
    }
  }
  return { xh, yh };
}

const padVec = (v: ArrayLike<number>, N: number) => {
  const out = new Float32Array(N);
  for (let i = 0; i < v.length; i++) out[i] = v[i];
  return out;
};

export async function fitDatamodels(rt: Runtime, data: RegressionData, opts: FitOptions = {}): Promise<DatamodelFit> {
  const plan = planFit(data, opts);
  const { n, N, train: m, heldOut, batchRows } = plan;
  const maxBinding = rt.device.limits.maxStorageBufferBindingSize;
  if (N * N * 4 > maxBinding) {
    throw new Error(
      `fitDatamodels: n = ${n} needs ${N} x ${N} f32 matrices (${
        (N * N * 4 / 2 ** 20).toFixed(0)
      } MiB) in one binding; ` +
        `this adapter allows ${(maxBinding / 2 ** 20).toFixed(0)} MiB (n up to about ${
          Math.floor(Math.sqrt(maxBinding / 4) / 256) * 256
        })`,
    );
  }
  const trainBatches = Math.ceil(m / batchRows);
  const heldBatches = Math.ceil(heldOut / batchRows);
  const total = trainBatches + plan.ratios.length * (plan.iterations + 1);
  let done = 0;
  const progress = (detail: string) => opts.onProgress?.(done, total, detail);

  // 1. Streamed Gram and cross product.
  const sums = newSums(n);
  let G: Tensor | undefined;
  let C: Tensor | undefined;
  for (let b = 0; b < trainBatches; b++) {
    const start = b * batchRows;
    const count = Math.min(batchRows, m - start);
    const { X, Y } = await checkedRows(data, start, count);
    const bP = Math.ceil(count / 4) * 4;
    const enc = encodeTrainBatch(X, Y, count, n, N, bP, sums, b === 0);
    const xs = rt.upload(enc.xs, [bP, N]);
    const xsT = rt.upload(enc.xsT, [N, bP]);
    const ys = rt.upload(enc.ys, [bP, N]);
    if (!G || !C) {
      G = matmul(rt, xsT, xs);
      C = matmul(rt, xsT, ys);
    } else {
      const t = matmul(rt, xsT, xs);
      axpy(rt, 1, t, G, G);
      matmul(rt, xsT, ys, { out: t });
      axpy(rt, 1, t, C, C);
      t.release();
    }
    xs.release();
    xsT.release();
    ys.release();
    await rt.sync(); // bounds the queued uploads to one batch
    done++;
    progress(`Gram: ${start + count}/${m} models`);
  }
  const H = G!;
  const R = C!;

  // 2. Centring.
  const sxT = rt.upload(padVec(sums.sx, N), [N]);
  const syT = rt.upload(padVec(sums.sy, N), [N]);
  rank1Update(rt, H, sxT, sxT, 1 / (4 * m), -1 / m);
  rank1Update(rt, R, sxT, syT, 1 / (2 * m), -1 / m);
  sxT.release();
  syT.release();
  const xbar = Array.from(sums.sx, (s) => (s / m + 1) / 2);
  const ybar = Array.from(sums.sy, (s, j) => sums.shift[j] + s / m);
  const negXbar = rt.upload(padVec(xbar.map((x) => -x), N), [N]);

  // Step size from H's largest eigenvalue (power method; a few readbacks).
  const L = (await largestEigenvalue(rt, H, n, plan.seed)) * LIPSCHITZ_MARGIN;

  // Per-target penalty scale.
  let lamScale: Float32Array;
  if (plan.penalty === "l1") {
    const t = colAbsMax(rt, R, n, { offDiagonal: true });
    lamScale = (await rt.read(t)) as Float32Array;
    t.release();
  } else {
    lamScale = new Float32Array(n).fill(meanMaskVariance(sums, m));
  }

  // Held-out batches: on the device if they fit the budget, else re-streamed per λ.
  const cacheBudget = opts.heldOutCacheBytes ?? 256 * 2 ** 20;
  const cached: { xh: Tensor; yh: Tensor; count: number }[] | undefined = heldOut * N * 8 <= cacheBudget
    ? []
    : undefined;
  const loadHeld = async (b: number) => {
    const start = m + b * batchRows;
    const count = Math.min(batchRows, heldOut - b * batchRows);
    const { X, Y } = await checkedRows(data, start, count);
    const h = heldOutBatch(X, Y, count, n, N);
    return { xh: rt.upload(h.xh, [count, N]), yh: rt.upload(h.yh, [count, N]), count };
  };
  if (cached) { for (let b = 0; b < heldBatches; b++) cached.push(await loadHeld(b)); }

  // 3-4. The path.
  const theta = fill(rt, rt.empty([N, N]), 0);
  const yExt = rt.empty([N, N]); // APG: the extrapolated point; CG: the search direction
  const hy = rt.empty([N, N]);
  // CG: per-target state. Padded columns stay zero (their r is zero: no step), but the step kernels index
  // per-column vectors by every column, so those have N entries.
  const cg = plan.cg
    ? {
      theta,
      pdir: yExt,
      res: rt.empty([N, N]),
      rr: rt.empty([N]),
      rrNew: rt.empty([N]),
      pap: rt.empty([N]),
      r0: colDot(rt, R, R, 0, N),
      floor2: CG_FLOOR ** 2,
    }
    : undefined;
  const r0 = cg ? ((await rt.read(cg.r0)) as Float32Array) : undefined;
  const sel = {
    best: fill(rt, rt.empty([n]), Infinity),
    bestTheta: fill(rt, rt.empty([N, N]), 0),
    bestBias: fill(rt, rt.empty([n]), 0),
    choice: fill(rt, rt.empty([n]), 0),
  };
  const sse = rt.empty([n]);
  const pathIterations: number[] = [];
  for (let t = 0; t < plan.ratios.length; t++) {
    const ratio = plan.ratios[t];
    const ridge = plan.penalty === "l2" ? ratio * lamScale[0] : 0;
    const lam1 = rt.upload(plan.penalty === "l1" ? padVec(lamScale.map((s) => s * ratio), N) : new Float32Array(N), [
      N,
    ]);
    const Lt = L + ridge;
    const beta = momentum(plan, Lt, ridge);
    let k = 0;
    if (cg) {
      // Warm start: the residual of the previous λ's solution under this λ.
      matmul(rt, H, theta, { out: hy });
      cgInit(rt, cg, R, hy, ridge);
      colDot(rt, cg.res, cg.res, 0, N, cg.rr);
    } else scale(rt, theta, 1, yExt); // warm start, momentum reset
    while (cg && k < plan.iterations) {
      matmul(rt, H, cg.pdir, { out: hy });
      colDot(rt, cg.pdir, hy, ridge, N, cg.pap);
      cgStep(rt, cg, hy, cg.rr, cg.pap, ridge);
      colDot(rt, cg.res, cg.res, 0, N, cg.rrNew);
      cgDirection(rt, cg, cg.rr, cg.rrNew);
      [cg.rr, cg.rrNew] = [cg.rrNew, cg.rr];
      k++;
      if (k % CHECK_EVERY === 0 && k < plan.iterations) {
        const stop = plan.tolerance > 0 && cgConverged(plan, await rt.read(cg.rr), r0!);
        if (plan.tolerance === 0) await rt.sync();
        done = trainBatches + t * (plan.iterations + 1) + k;
        progress(`λ ${t + 1}/${plan.ratios.length}: CG iteration ${k}/${plan.iterations}`);
        if (stop) break;
      }
    }
    while (!cg && k < plan.iterations) {
      matmul(rt, H, yExt, { out: hy });
      proxStep(rt, { hy, r: R, lam1, theta, y: yExt }, { step: 1 / Lt, ridge, beta: beta(k) });
      k++;
      if (k % CHECK_EVERY === 0 && k < plan.iterations) {
        let stop = false;
        if (plan.tolerance > 0) {
          const s = colAbsMax(rt, hy, n, { offDiagonal: true });
          const w = colAbsMax(rt, theta, n, { offDiagonal: true });
          const [sh, wh] = await rt.readMany([s, w]);
          s.release();
          w.release();
          stop = converged(plan, sh, wh);
        } else await rt.sync();
        done = trainBatches + t * (plan.iterations + 1) + k;
        progress(`λ ${t + 1}/${plan.ratios.length}: iteration ${k}/${plan.iterations}`);
        if (stop) break;
      }
    }
    pathIterations.push(k);
    done = trainBatches + t * (plan.iterations + 1) + plan.iterations;
    // Held-out error per target: bias = ȳ − Θᵀx̄, predictions Xh Θ + bias.
    const bias = rt.upload(padVec(ybar, N), [N]);
    gemv(rt, theta, negXbar, { trans: true, out: bias, beta: 1 });
    fill(rt, sse, 0);
    for (let b = 0; b < heldBatches; b++) {
      const h = cached ? cached[b] : await loadHeld(b);
      const pred = matmul(rt, h.xh, theta);
      colSse(rt, pred, h.yh, bias, sse, { rows: h.count, n });
      pred.release();
      if (!cached) {
        h.xh.release();
        h.yh.release();
      }
    }
    selectBest(rt, theta, sse, bias, sel, t, n);
    bias.release();
    lam1.release();
    await rt.sync();
    done++;
    progress(`λ ${t + 1}/${plan.ratios.length} done`);
  }

  // 5. Row = target, diagonal zeroed.
  const weights = finalizeWeights(rt, sel.bestTheta, n);
  const [best, bestBias, choice] = await rt.readMany([sel.best, sel.bestBias, sel.choice]);
  for (const t of [H, R, theta, yExt, hy, sse, negXbar, sel.best, sel.bestTheta, sel.bestBias, sel.choice]) t.release();
  if (cg) { for (const t of [cg.res, cg.rr, cg.rrNew, cg.pap, cg.r0]) t.release(); }
  for (const h of cached ?? []) {
    h.xh.release();
    h.yh.release();
  }
  const lambda = new Float32Array(n);
  const heldOutMse = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    const c = choice[j];
    lambda[j] = plan.ratios[c] * (plan.penalty === "l1" ? lamScale[j] : lamScale[0]);
    heldOutMse[j] = best[j] / heldOut;
  }
  return { n, weights, bias: bestBias as Float32Array, lambda, heldOutMse, pathIterations };
}

/** Largest eigenvalue of the symmetric PSD [N, N] H (first n coordinates), by the power method. */
async function largestEigenvalue(rt: Runtime, H: Tensor, n: number, seed: number): Promise<number> {
  const N = H.shape[0];
  const rand = mulberry32(seed);
  let host: Float32Array = new Float32Array(N);
  for (let i = 0; i < n; i++) host[i] = rand() - 0.5;
  let est = 0;
  for (let round = 0; round < POWER_ITERATIONS / POWER_READ_EVERY; round++) {
    let norm = 0;
    for (let i = 0; i < n; i++) norm += host[i] * host[i];
    norm = Math.sqrt(norm);
    if (!(norm > 0)) return est; // H = 0 (no variation in the masks)
    for (let i = 0; i < n; i++) host[i] /= norm;
    let v = rt.upload(host, [N]);
    for (let k = 0; k < POWER_READ_EVERY; k++) {
      const w = gemv(rt, H, v);
      if (k === 0) {
        // |H v| for the unit v: the estimate (a lower bound that converges to the top eigenvalue).
        const [wv] = await rt.readMany([w]);
        let s = 0;
        for (let i = 0; i < n; i++) s += wv[i] * wv[i];
        est = Math.max(est, Math.sqrt(s));
      }
      v.release();
      v = w;
    }
    host = (await rt.read(v)) as Float32Array;
    v.release();
  }
  return est;
}
