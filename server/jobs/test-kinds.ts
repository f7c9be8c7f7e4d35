// Cheap job kinds for the coordinator's own tests and benchmark (server/jobs/ belongs to the real
// kinds; this file is the one exception). "test-matrix" plans:
// - rows/i   deterministic: rows [start, start+count) of a seeded n x n matrix with a planted block
//            (replicated, accepted when two volunteers agree);
// - scale/i  nondeterministic, after rows/i: 2 * rows plus fresh noise in [-1e-3, 1e-3] (spot-checked
//            against rows/i on a random sample of entries);
// and finish runs the maximum-sum submatrix search (src/detect/search.ts, float64 CPU backend) on the
// accepted matrix and writes summary.json with the members found: on the coordinator, or (`finishShard`)
// as the job's finish shard, computed by two volunteers who must agree.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { mulberry32 } from "../../src/data/dataset.ts";
import { denseCpuBackend, maxSumSearch } from "../../src/detect/search.ts";
import {
  type ArraySpec,
  type ArrayValue,
  type Executor,
  FINISH,
  type Inputs,
  type JobKind,
  type JobKindRegistry,
  type ShardPlan,
} from "../../src/protocol/job-kind.ts";

export const TestMatrixSpec = z.object({
  n: z.number().int().min(4).max(4096),
  rowsPerShard: z.number().int().min(1),
  block: z.number().int().min(2),
  seed: z.number().int().nonnegative(),
  /** Plan the nondeterministic scale/i shards too (default true). */
  scale: z.boolean().default(true),
  /** Executors sleep this long per shard (lease expiry and kill tests). */
  slowMs: z.number().int().nonnegative().default(0),
  /** Plan the finish as a shard ("finish", executor "test-finish") instead of running it on the coordinator. */
  finishShard: z.boolean().default(false),
});
export type TestMatrixSpec = z.infer<typeof TestMatrixSpec>;

export interface RowsPayload {
  seed: number;
  n: number;
  start: number;
  count: number;
  block: number;
  slowMs: number;
}

/** The planted block: the first `block` indices of a seeded permutation of 0..n-1. */
export function plantedBlock(seed: number, n: number, block: number): number[] {
  const rand = mulberry32(seed ^ 0x5bd1e995);
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < block; i++) {
    const j = i + Math.floor(rand() * (n - i));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, block).sort((a, b) => a - b);
}

/** Rows [start, start+count) of the matrix: uniform noise in [-1, 1) plus 1.5 inside the planted block. */
export function syntheticRows(p: Omit<RowsPayload, "slowMs">): Float32Array {
  const inBlock = new Uint8Array(p.n);
  for (const i of plantedBlock(p.seed, p.n, p.block)) inBlock[i] = 1;
  const out = new Float32Array(p.count * p.n);
  for (let r = 0; r < p.count; r++) {
    const i = p.start + r;
    const rand = mulberry32((p.seed * 7919 + i * 104729) >>> 0);
    for (let j = 0; j < p.n; j++) out[r * p.n + j] = 2 * rand() - 1 + (inBlock[i] && inBlock[j] ? 1.5 : 0);
  }
  return out;
}

const syntheticRowsValue = (p: RowsPayload): ArrayValue => ({
  dtype: "f32",
  shape: [p.count, p.n],
  data: syntheticRows(p),
});

function shardRanges(spec: TestMatrixSpec): { start: number; count: number }[] {
  const out: { start: number; count: number }[] = [];
  for (let start = 0; start < spec.n; start += spec.rowsPerShard) {
    out.push({ start, count: Math.min(spec.rowsPerShard, spec.n - start) });
  }
  return out;
}

const maxAbsDiff = (a: ArrayValue, b: ArrayValue) => {
  if (a.data.length !== b.data.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i] - b.data[i]));
  return m;
};

export const testMatrix: JobKind<TestMatrixSpec> = {
  name: "test-matrix",
  spec: TestMatrixSpec,
  plan(spec) {
    if (spec.block >= spec.n) throw new Error("block must be smaller than n");
    const shards: ShardPlan[] = [];
    for (const [i, r] of shardRanges(spec).entries()) {
      const payload: RowsPayload = {
        seed: spec.seed,
        n: spec.n,
        start: r.start,
        count: r.count,
        block: spec.block,
        slowMs: spec.slowMs,
      };
      shards.push({
        key: `rows/${i}`,
        kind: "test-rows",
        payload,
        deps: [],
        outputs: { rows: { dtype: "f32", shape: [r.count, spec.n] } },
        deterministic: true,
      });
      if (spec.scale) {
        shards.push({
          key: `scale/${i}`,
          kind: "test-scale",
          payload: { ...payload, dep: `rows/${i}` },
          deps: [`rows/${i}`],
          outputs: { scaled: { dtype: "f32", shape: [r.count, spec.n] } },
          deterministic: false,
        });
      }
    }
    if (spec.finishShard) {
      const file: ArraySpec = { dtype: "u8", shape: [-1] };
      shards.push({
        key: FINISH,
        kind: "test-finish",
        payload: spec,
        deps: shards.map((s) => s.key),
        outputs: { "summary.json": file, "report.html": file },
        maxBytes: 1 << 20,
        deterministic: true,
      });
    }
    return shards;
  },
  agree(shard, a, b) {
    return Object.keys(shard.outputs).every((k) => a[k] && b[k] && maxAbsDiff(a[k], b[k]) <= 1e-6);
  },
  recompute: async (spec, shard, inputs) =>
    shard.key === FINISH
      ? reportArrays(await matrixReport(spec, inputs))
      : { rows: syntheticRowsValue(shard.payload as RowsPayload) },
  async spotCheck(_spec, shard, result, inputs, seed) {
    const p = shard.payload as RowsPayload & { dep: string };
    const x = (await inputs.get(p.dep, "rows")).data;
    const y = result.scaled.data;
    const rand = mulberry32(seed);
    for (let s = 0; s < 16; s++) {
      const i = Math.floor(rand() * y.length);
      if (Math.abs(y[i] - 2 * x[i]) > 1.01e-3) return `scaled[${i}] = ${y[i]} is not 2 * ${x[i]} within 1e-3`;
    }
    return null;
  },
  async finish(spec, inputs, outDir) {
    const { summary, html } = await matrixReport(spec, inputs);
    await writeFile(join(outDir, "summary.json"), JSON.stringify(summary, null, 2));
    await writeFile(join(outDir, "report.html"), html);
    return summary;
  },
};

/** The finish of a test-matrix job from its accepted shards: the search's best block, and a one-line report. */
async function matrixReport(spec: TestMatrixSpec, inputs: Inputs) {
  const n = spec.n;
  const A = new Float64Array(n * n);
  let scaledTotal = 0;
  for (const [i, r] of shardRanges(spec).entries()) {
    A.set((await inputs.get(`rows/${i}`, "rows")).data, r.start * n);
    if (spec.scale) { for (const v of (await inputs.get(`scale/${i}`, "scaled")).data) scaledTotal += v; }
  }
  const res = await maxSumSearch(denseCpuBackend(A, n), { sizes: [spec.block], restarts: 4, seed: spec.seed });
  const best = res.solutions.reduce((a, b) => (b.objective > a.objective ? b : a));
  let total = 0;
  for (const v of A) total += v;
  const summary = {
    members: [...best.members],
    objective: best.objective,
    planted: plantedBlock(spec.seed, n, spec.block),
    matrixTotal: total,
    scaledTotal,
  };
  return { summary, html: `<!doctype html><title>test-matrix</title><p>members: ${summary.members.join(", ")}</p>` };
}

const utf8 = (s: string): ArrayValue => {
  const data = new TextEncoder().encode(s);
  return { dtype: "u8", shape: [data.length], data };
};

const reportArrays = (r: Awaited<ReturnType<typeof matrixReport>>): Record<string, ArrayValue> => ({
  "summary.json": utf8(JSON.stringify(r.summary, null, 2)),
  "report.html": utf8(r.html),
});

/** "test-bench": independent nondeterministic shards with a tiny output and a trivial spot check, so a
 *  round trip measures the coordinator (lease, upload, submit, check, accept) and nothing else. */
export const TestBenchSpec = z.object({
  shards: z.number().int().min(1).max(1_000_000),
  len: z.number().int().min(1).max(1 << 20).default(16),
});
export const testBench: JobKind<z.infer<typeof TestBenchSpec>> = {
  name: "test-bench",
  spec: TestBenchSpec,
  plan: (spec) =>
    Array.from(
      { length: spec.shards },
      (_, i) => ({
        key: `b/${i}`,
        kind: "test-bench",
        payload: { i, len: spec.len },
        deps: [],
        outputs: { x: { dtype: "f32", shape: [spec.len] } },
        deterministic: false,
      }),
    ),
  agree: () => true,
  async spotCheck(_spec, shard, result) {
    const { i } = shard.payload as { i: number };
    return result.x.data[0] === i ? null : `x[0] = ${result.x.data[0]}, expected ${i}`;
  },
  async finish(spec, inputs) {
    let total = 0;
    for (let i = 0; i < spec.shards; i++) total += (await inputs.get(`b/${i}`, "x")).data[0];
    return { total };
  },
};

export const TEST_KINDS: JobKindRegistry = new Map<string, JobKind<unknown>>([[testMatrix.name, testMatrix], [
  testBench.name,
  testBench,
]]);

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), reject(signal.reason)), { once: true });
  });

/** Honest executors for the test kinds (the worker loop runs them). The payloads are this file's own plans. */
export const testExecutors: Record<string, Executor> = {
  "test-bench": async (payload) => {
    const p = payload as { i: number; len: number };
    const x = new Float32Array(p.len);
    x[0] = p.i;
    return { x: { dtype: "f32", shape: [p.len], data: x } };
  },
  "test-rows": async (payload, _inputs, ctx) => {
    const p = payload as RowsPayload;
    if (p.slowMs) await sleep(p.slowMs, ctx.signal);
    ctx.onProgress(1);
    return { rows: syntheticRowsValue(p) };
  },
  "test-finish": async (payload, inputs) => reportArrays(await matrixReport(TestMatrixSpec.parse(payload), inputs)),
  "test-scale": async (payload, inputs, ctx) => {
    const p = payload as RowsPayload & { dep: string };
    if (p.slowMs) await sleep(p.slowMs, ctx.signal);
    const x = (await inputs.get(p.dep, "rows")).data;
    const y = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) y[i] = 2 * x[i] + (Math.random() * 2 - 1) * 1e-3;
    ctx.onProgress(1);
    return { scaled: { dtype: "f32", shape: [p.count, p.n], data: y } };
  },
};
