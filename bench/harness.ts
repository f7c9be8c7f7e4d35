// Shared benchmark plumbing: median timing and table/JSON output. Benchmarks are not tests: they time
// our code against a peer in the same process on the same adapter.
export interface BenchReport {
  adapter: string;
  rows: Record<string, number | string>[];
  notes?: string[];
  /** More top-level fields of the JSON output. */
  extra?: Record<string, unknown>;
}

import { median } from "../src/math.ts";
export { median };

/**
 * Median milliseconds per call of `runBatch(reps)`, which must do `reps` calls and wait for a completed
 * readback. The batch size grows until one sample takes >= minMs, amortising the ~11 ms readback.
 */
export async function timeMs(
  runBatch: (reps: number) => Promise<void>,
  opts: { samples?: number; minMs?: number } = {},
): Promise<number> {
  const samples = opts.samples ?? 5;
  const minMs = opts.minMs ?? 250;
  await runBatch(1); // warm-up: compile and first-touch
  let reps = 1;
  for (;;) {
    const t0 = performance.now();
    await runBatch(reps);
    const ms = performance.now() - t0;
    if (ms >= minMs || reps >= 256) break;
    reps = Math.min(256, Math.ceil((reps * minMs * 1.2) / Math.max(ms, 1)));
  }
  const times: number[] = [];
  for (let s = 0; s < samples; s++) {
    const t0 = performance.now();
    await runBatch(reps);
    times.push((performance.now() - t0) / reps);
  }
  return median(times);
}

export function printReport(title: string, r: BenchReport, json: boolean): void {
  if (json) {
    console.log(JSON.stringify({ adapter: r.adapter, rows: r.rows, ...r.extra }));
    return;
  }
  console.log(`${title} on ${r.adapter}`);
  const cols = [...new Set(r.rows.flatMap((x) => Object.keys(x)))];
  const fmt = (
    v: unknown,
  ) => (typeof v === "number" ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2)) : String(v ?? ""));
  const widths = cols.map((c) => Math.max(c.length, ...r.rows.map((x) => fmt(x[c]).length)));
  const line = (cells: string[]) => "| " + cells.map((c, i) => c.padStart(widths[i])).join(" | ") + " |";
  console.log(line(cols));
  console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
  for (const row of r.rows) console.log(line(cols.map((c) => fmt(row[c]))));
  for (const n of r.notes ?? []) console.log(n);
}
