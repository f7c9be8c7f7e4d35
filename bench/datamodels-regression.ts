// Datamodels regression (src/datamodels/regression.ts): targets fitted per second on synthetic masks and
// margins streamed in batches (Y = X θ* + b + noise, 5 effects per target), against its float64 CPU twin
// (the same algorithm step for step) and, for ridge, the device's other solver (APG against CG), in the
// same process. Not a test: times only.
// Sizes (--sizes, default 5000,1000): n examples = targets, with 2,000 models (10% held out). The path
// is 8 λ; iterations per λ default to 100, but at n >= 2,000 only REG_ITERS_BIG (default 2) on
// llvmpipe, where one H·Θ product of n³ multiply-adds takes seconds: the row says how many ran, and
// ms_per_product extrapolates. The twin runs at REG_CPU_N (default 400) with REG_CPU_ITERS (default 10) per λ,
// and the device fit is rerun at that size and iteration count for a like-for-like row.
import { fitDatamodels, type FitOptions, paddedSize } from "../src/datamodels/regression.ts";
import { fitDatamodelsRef } from "../src/datamodels/regression-ref.ts";
import { syntheticRegression } from "../test/datamodels/synthetic.ts";
import { getRuntime, type Runtime } from "../src/gpu/runtime.ts";
import type { BenchReport } from "./harness.ts";
import { env, memoryRss } from "../src/platform.ts";

const MODELS = 2000;
const solverName = (o: FitOptions) => (o.penalty === "l1" ? "l1" : o.ridgeSolver === "apg" ? "l2 apg" : "l2 cg");
const MiB = 2 ** 20;

function rssMiB(): number {
  return (memoryRss() ?? NaN) / MiB;
}

/** Device bytes held at the peak of a fit: H, R, Θ, the extrapolated point, H·Θ, the best Θ (N² each), the
 * finished weights (n²), one streamed batch (xs, xsᵀ, ys and a product temporary) and the held-out cache. */
function deviceMiB(n: number, batch: number, heldOut: number, cg: boolean): number {
  const N = paddedSize(n);
  return ((cg ? 7 : 6) * N * N + n * n + 3 * batch * N + N * N + 2 * heldOut * N) * 4 / MiB;
}

/** n³ products a fit ran: one per iteration, plus one per path point to start CG. */
const products = (opts: FitOptions, itersRun: number, lambdas: number) =>
  itersRun + (opts.penalty !== "l1" && opts.ridgeSolver !== "apg" ? lambdas : 0);

async function timeFit(rt: Runtime, n: number, opts: FitOptions) {
  const data = syntheticRegression({ n, models: MODELS, seed: 7 });
  let gramEnd = 0;
  const t0 = performance.now();
  const fit = await fitDatamodels(rt, data, {
    ...opts,
    onProgress: (_d, _t, detail) => {
      if (detail?.startsWith("Gram")) gramEnd = performance.now();
    },
  });
  await rt.sync();
  const ms = performance.now() - t0;
  fit.weights.release();
  return {
    ms,
    gramMs: gramEnd - t0,
    mse: fit.heldOutMse.reduce((a, b) => a + b, 0) / n,
    itersRun: (fit.pathIterations ?? []).reduce((a, b) => a + b, 0),
  };
}

export async function run(args: { sizes?: number[]; log?: (s: string) => void }): Promise<BenchReport> {
  const rt = await getRuntime();
  const bigIters = Number(env("REG_ITERS_BIG") ?? 2);
  const cpuN = Number(env("REG_CPU_N") ?? 400);
  const cpuIters = Number(env("REG_CPU_ITERS") ?? 10);
  const penalties = (env("REG_PENALTIES") ?? "l2,l1").split(",") as ("l1" | "l2")[];
  const lambdas = 8;
  const heldOut = MODELS / 10;
  const batchRows = 256;
  const rows: Record<string, number | string>[] = [];
  const push = (r: Record<string, number | string>) => {
    rows.push(r);
    args.log?.(JSON.stringify(r));
  };
  for (const n of args.sizes ?? [5000, 1000]) {
    const iterations = n >= 2000 ? bigIters : 100;
    const configs: FitOptions[] = penalties.flatMap((penalty) =>
      penalty === "l2" && n < 2000 ? [{ penalty }, { penalty, ridgeSolver: "apg" as const }] : [{ penalty }]
    );
    for (const c of configs) {
      const opts: FitOptions = { ...c, iterations, batchRows, seed: 1 };
      const r = await timeFit(rt, n, opts);
      const prods = products(opts, r.itersRun, lambdas);
      push({
        impl: "device",
        n,
        models: MODELS,
        penalty: solverName(opts),
        lambdas,
        iters: iterations,
        iters_run: r.itersRun,
        products: prods,
        ms: r.ms,
        gram_ms: r.gramMs,
        ms_per_product: (r.ms - r.gramMs) / prods,
        targets_per_s: (n * 1000) / r.ms,
        device_MiB: deviceMiB(n, batchRows, heldOut, solverName(opts) === "l2 cg"),
        rss_MiB: rssMiB(),
        mse: r.mse,
      });
    }
  }
  // Like for like with the float64 twin (same plan, same iterations), at a size the host can run.
  for (const penalty of penalties) {
    const opts: FitOptions = { penalty, iterations: cpuIters, tolerance: 0, batchRows, seed: 1 };
    const g = await timeFit(rt, cpuN, opts);
    const prods = products(opts, g.itersRun, lambdas);
    push({
      impl: "device",
      n: cpuN,
      models: MODELS,
      penalty: solverName(opts),
      lambdas,
      iters: cpuIters,
      iters_run: g.itersRun,
      products: prods,
      ms: g.ms,
      gram_ms: g.gramMs,
      ms_per_product: (g.ms - g.gramMs) / prods,
      targets_per_s: (cpuN * 1000) / g.ms,
      device_MiB: deviceMiB(cpuN, batchRows, heldOut, penalty === "l2"),
      rss_MiB: rssMiB(),
      mse: g.mse,
    });
    const data = syntheticRegression({ n: cpuN, models: MODELS, seed: 7 });
    const t0 = performance.now();
    const c = await fitDatamodelsRef(data, opts);
    const ms = performance.now() - t0;
    push({
      impl: "CPU f64 twin",
      n: cpuN,
      models: MODELS,
      penalty: solverName(opts),
      lambdas,
      iters: cpuIters,
      iters_run: c.pathIterations.reduce((a, b) => a + b, 0),
      products: prods,
      ms,
      gram_ms: "-",
      ms_per_product: "-",
      targets_per_s: (cpuN * 1000) / ms,
      device_MiB: 0,
      rss_MiB: rssMiB(),
      mse: c.heldOutMse.reduce((a, b) => a + b, 0) / cpuN,
    });
  }
  return {
    adapter: rt.adapterName,
    rows,
    notes: [
      `models ${MODELS} (${heldOut} held out), batches of ${batchRows} models, ${lambdas} λ. penalty: l2 cg ` +
      `(ridge by conjugate gradients, the default), l2 apg (ridge by accelerated proximal gradient), l1 (lasso, APG).`,
      `iters: most iterations per λ (n >= 2000: REG_ITERS_BIG=${bigIters}; the default fit allows 100); ` +
      `iters_run: ` +
      `over the whole path (tolerance 1e-4 stops early; the twin rows run every iteration); products: n³ matrix ` +
      `products (iterations + one per λ to start CG).`,
      "ms includes the synthetic data generation on the host (both rows); gram_ms: the streamed Gram pass; " +
      "ms_per_product: the rest (solve, held-out selection, convergence checks) per n³ product.",
      "device_MiB: peak device bytes from tensor sizes; rss_MiB: process RSS after the row (llvmpipe's buffers " +
      "live in it); mse: mean held-out MSE (noise variance 0.01).",
    ],
  };
}
