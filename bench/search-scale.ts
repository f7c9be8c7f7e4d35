// `npm run bench -- search-scale`: the local search (src/detect/search.ts) at n = 5,000 / 20,000 / 50,000 on
// synthetic low-rank factors
// (r = k*M = 2,048, N(0, 1/r) entries drawn on the device), against the dense O(n^2) backends where the
// matrix fits: the device dense backend needs Sym (n^2 f32) in one binding (n <= 5,792 at llvmpipe's
// 128 MiB), the float64 CPU twin needs 2 n^2 doubles on the host. Not a test: times only.
// Per n: one search of `restarts` restarts at each of `sizes` (default: n/100 and n/10, 1 restart; the
// epoch cap bounds n = 50,000). Reports wall time, epochs, swaps, ms per swap, device bytes held by the
// backend + factors (computed from tensor sizes) and the process RSS after the run.
import { matmul } from "../kernels/matmul.ts";
import { Factors } from "../src/detect/factors.ts";
import { denseCpuBackend, maxSumSearch, type SearchBackend, type SearchOptions } from "../src/detect/search.ts";
import { denseGpuBackend, factorBackend } from "../src/detect/search-gpu.ts";
import { getRuntime, type Runtime } from "../src/gpu/runtime.ts";
import type { BenchReport } from "./harness.ts";
import { env, memoryRss } from "../src/platform.ts";

const R = 2048;
const MiB = 2 ** 20;

function rssMiB(): number {
  return (memoryRss() ?? NaN) / MiB;
}

async function timeSearch(rt: Runtime | undefined, b: SearchBackend, opts: SearchOptions) {
  let epochs = 0;
  let swaps = 0;
  const wrapped: SearchBackend = {
    n: b.n,
    name: b.name,
    get deviceBytes() {
      return b.deviceBytes;
    },
    setSize: (s) => b.setSize(s),
    totals: (m) => b.totals(m),
    dispose: () => b.dispose(),
    epoch: async (m, k, bonus) => {
      epochs++;
      swaps += k;
      return b.epoch(m, k, bonus);
    },
  };
  const t0 = performance.now();
  const res = await maxSumSearch(wrapped, opts);
  if (rt) await rt.sync();
  const ms = performance.now() - t0;
  const best = Math.max(...res.solutions.map((s) => s.objective));
  return { ms, epochs, swaps, best };
}

export async function run(args: { sizes?: number[]; log?: (s: string) => void }): Promise<BenchReport> {
  const rt = await getRuntime();
  const restarts = Number(env("SEARCH_RESTARTS") ?? 1);
  const maxEpochs = Number(env("SEARCH_MAX_EPOCHS") ?? 100);
  const rows: Record<string, number | string>[] = [];
  const notes: string[] = [];
  for (const n of args.sizes ?? [5000, 20000, 50000]) {
    const sizes = [Math.ceil(n / 100), Math.floor(n / 10)];
    const cap = n >= 50000 ? Math.min(maxEpochs, Number(env("SEARCH_MAX_EPOCHS_50K") ?? 3)) : maxEpochs;
    const opts: SearchOptions = {
      sizes,
      restarts,
      seed: 1,
      maxEpochs: cap,
      onProgress: (p) =>
        args.log?.(`n=${n} s=${p.size} restart ${p.restart}: ${p.epochs} epochs, objective ${p.objective.toFixed(1)}`),
    };
    const config = `sizes ${sizes.join("+")} x ${restarts} restart${restarts > 1 ? "s" : ""}${
      cap < 100 ? `, <= ${cap} epochs` : ""
    }`;
    const f = Factors.random(rt, n, R, 7);
    await rt.sync();
    const fb = factorBackend(rt, f);
    const r1 = await timeSearch(rt, fb, opts);
    rows.push({
      n,
      backend: "factors (device)",
      config,
      ms: r1.ms,
      epochs: r1.epochs,
      swaps: r1.swaps,
      ms_per_swap: r1.ms / Math.max(1, r1.swaps),
      device_MiB: (f.deviceBytes + fb.deviceBytes) / MiB,
      rss_MiB: rssMiB(),
      best_objective: r1.best,
    });
    args.log?.(JSON.stringify(rows[rows.length - 1]));
    fb.dispose();
    const denseBytes = n * n * 4;
    if (
      denseBytes <= rt.device.limits.maxStorageBufferBindingSize &&
      n * R * 4 <= rt.device.limits.maxStorageBufferBindingSize
    ) {
      const c = f.chunks[0];
      const t0 = performance.now();
      const A = matmul(rt, c.U, c.V, { transB: true });
      const db = denseGpuBackend(rt, A, n);
      await rt.sync();
      const buildMs = performance.now() - t0;
      const r2 = await timeSearch(rt, db, opts);
      rows.push({
        n,
        backend: "dense (device)",
        config,
        ms: r2.ms,
        build_ms: buildMs,
        epochs: r2.epochs,
        swaps: r2.swaps,
        ms_per_swap: r2.ms / Math.max(1, r2.swaps),
        device_MiB: (f.deviceBytes + db.deviceBytes + denseBytes) / MiB,
        rss_MiB: rssMiB(),
        best_objective: r2.best,
      });
      args.log?.(JSON.stringify(rows[rows.length - 1]));
      db.dispose();
      const Ah = await rt.read(A);
      A.release();
      const t1 = performance.now();
      const cb = denseCpuBackend(Ah, n);
      const r3 = await timeSearch(undefined, cb, opts);
      rows.push({
        n,
        backend: "dense (CPU f64 twin)",
        config,
        ms: r3.ms,
        build_ms: performance.now() - t1 - r3.ms,
        epochs: r3.epochs,
        swaps: r3.swaps,
        ms_per_swap: r3.ms / Math.max(1, r3.swaps),
        device_MiB: 0,
        rss_MiB: rssMiB(),
        best_objective: r3.best,
      });
      args.log?.(JSON.stringify(rows[rows.length - 1]));
    } else {
      const why = `dense n=${n}: does not fit (Sym needs ${
        (denseBytes / MiB).toFixed(0)
      } MiB in one binding, the adapter allows ${(rt.device.limits.maxStorageBufferBindingSize / MiB).toFixed(0)} MiB)`;
      rows.push({ n, backend: "dense (device)", config: "does not fit", ms: "-" });
      notes.push(why);
    }
    f.release();
  }
  notes.push(
    `r = ${R}; device_MiB: factors + search state (+ A and Sym for dense), from tensor sizes; rss_MiB: process RSS ` +
      `after the run (llvmpipe's buffers live in it).`,
  );
  return { adapter: rt.adapterName, rows, notes };
}
