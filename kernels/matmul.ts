// Matrix multiply: C = op(A) * op(B), op an optional transpose, batched over leading axes.
// Binding contract for a variant's shader: A, B (read), C (read_write), uniform
// { M, N, K, stride_a, stride_b, stride_c } (element strides between batch matrices, 0 = broadcast);
// batch index = workgroup_id.z; overrides WG_X, WG_Y, TRANS_A, TRANS_B; tile sizes as `const NAME: u32`
// lines (specialised by rewriting) or overrides. A variant says which shapes it supports: exact-fit
// variants need multiples of their tile, the checked one runs anything and is the fallback.
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { specialise } from "../src/gpu/specialise.ts";
import { fnv1a } from "../src/math.ts";
import { getTuned, putTuned } from "../src/gpu/tune-cache.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { checkedShader, exactShader, implicitConvShader, type RegblockTile, splitKShader } from "./matmul-codegen.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";
import { transpose } from "./transpose.ts";

export interface MatmulProblem {
  M: number;
  N: number;
  K: number;
  batch: number;
  transA: boolean;
  transB: boolean;
}

export type MatmulTile = Record<string, number>;

export interface MatmulVariant extends Variant {
  /** Candidate tiles for the autotuner; the first is the default before tuning. */
  tiles: MatmulTile[];
  /** The specialised shader for a tile and problem: WGSL source plus override constants. */
  shader(tile: MatmulTile, p: MatmulProblem): { code: string; constants: Record<string, number> };
  supports(p: MatmulProblem, tile: MatmulTile): boolean;
  workgroups(p: MatmulProblem, tile: MatmulTile): [number, number, number];
  /**
   * Which adapters the autotuner times it on: "gpu", real GPUs only (on a software adapter it keeps its first
   * tile and is never the default); "never", none (a fallback: its first tile everywhere). Default: all.
   */
  tune?: "gpu" | "never";
  /** Multi-dispatch variants: record the whole product into `out` (called instead of the single
   * `shader`/`workgroups` dispatch; `shader` and `workgroups` then describe its main pass). */
  run?(rt: Runtime, a: Tensor, b: Tensor, out: Tensor, p: MatmulProblem, tile: MatmulTile): void;
}

export const matmulOp = defineOp<MatmulVariant>("matmul", "C = op(A) op(B), batched; register-blocked");

const ceilDiv = (a: number, b: number) => Math.ceil(a / b);
const memo = <T>(f: (key: string) => T) => {
  const cache = new Map<string, T>();
  return (key: string) => {
    let v = cache.get(key);
    if (v === undefined) cache.set(key, v = f(key));
    return v;
  };
};
const regblockTile = (t: MatmulTile): RegblockTile => ({ TM: t.TM, TV: t.TV, WG_X: t.WG_X });
const exactCode = memo((k) => exactShader(JSON.parse(k)));
/** conv2d.ts's implicit-GEMM convolutions, by their JSON key (tile, BN, POOL). */
export const implicitConvCode = memo((k) => implicitConvShader(JSON.parse(k)));
const checkedCode = memo((k) => checkedShader(JSON.parse(k)));
const plainNN = (p: MatmulProblem) => !p.transA && !p.transB;

// Tiles, largest first: 64x32 and 32x32 win on llvmpipe (kernels/README.md); the small ones suit real GPUs,
// where many invocations per core hide latency instead.
const REGBLOCK_TILES = [
  { TM: 64, TV: 8, WG_X: 8 },
  { TM: 32, TV: 8, WG_X: 8 },
  { TM: 16, TV: 4, WG_X: 8 },
  { TM: 8, TV: 2, WG_X: 32 },
  { TM: 4, TV: 1, WG_X: 64 },
];

matmulOp.register({
  name: "regblock",
  file: "kernels/matmul-codegen.ts (exactShader)",
  code: exactShader(regblockTile(REGBLOCK_TILES[1])),
  description: "exact fit: M % TM, N % (4 TV WG_X), K % 4 all zero; no transposes; vec4 loads, fully unrolled",
  tiles: REGBLOCK_TILES,
  shader: (t) => ({ code: exactCode(JSON.stringify({ TM: t.TM, TV: t.TV })), constants: { WG_X: t.WG_X } }),
  supports: (p, t) => plainNN(p) && p.M % t.TM === 0 && p.N % (4 * t.TV * t.WG_X) === 0 && p.K % 4 === 0,
  workgroups: (p, t) => [p.N / (4 * t.TV * t.WG_X), p.M / t.TM, p.batch],
});

matmulOp.register({
  name: "regblock-checked",
  file: "kernels/matmul-codegen.ts (checkedShader)",
  code: checkedShader(regblockTile(REGBLOCK_TILES[1])),
  description: "any M, N, K; no transposes; vec4 loads with funnel shifts and masked tails",
  tiles: REGBLOCK_TILES.slice(1),
  shader: (t) => ({ code: checkedCode(JSON.stringify({ TM: t.TM, TV: t.TV })), constants: { WG_X: t.WG_X } }),
  supports: plainNN,
  workgroups: (p, t) => [ceilDiv(p.N, 4 * t.TV * t.WG_X), ceilDiv(p.M, t.TM), p.batch],
});

const SCALAR_CODE = await wgsl("matmul_scalar.wgsl");
const scalarCode = memo((k) => specialise(SCALAR_CODE, JSON.parse(k)));
matmulOp.register({
  name: "scalar",
  file: "wgsl/matmul_scalar.wgsl",
  code: SCALAR_CODE,
  description: "any shape and transpose, scalar loads, TM x TN block per invocation; the universal fallback",
  tune: "never",
  tiles: [
    { TM: 4, TN: 4, WG_X: 8, WG_Y: 8 },
    { TM: 8, TN: 8, WG_X: 8, WG_Y: 4 },
  ],
  shader: (t, p) => ({
    code: scalarCode(JSON.stringify({ TM: t.TM, TN: t.TN })),
    constants: { WG_X: t.WG_X, WG_Y: t.WG_Y, TRANS_A: +p.transA, TRANS_B: +p.transB },
  }),
  supports: () => true,
  workgroups: (p, t) => [ceilDiv(p.N, t.TN * t.WG_X), ceilDiv(p.M, t.TM * t.WG_Y), p.batch],
});

const TILED_CODE = await wgsl("matmul_tiled.wgsl");
/** The tiled shader's constants: the tile and the sizes derived from it (wgsl/matmul_tiled.wgsl). */
function tiledConstants(t: MatmulTile): Record<string, number> {
  const [BM, BN] = [t.TM * t.WG_Y, t.TN * t.WG_X];
  return { ...t, BM, BN, THREADS: t.WG_X * t.WG_Y, AS_STRIDE: BM + 1, AS_SIZE: t.BK * (BM + 1), BS_SIZE: t.BK * BN };
}
const tiledCode = memo((k) => specialise(TILED_CODE, tiledConstants(JSON.parse(k))));
matmulOp.register({
  name: "tiled",
  file: "wgsl/matmul_tiled.wgsl",
  code: TILED_CODE,
  description: "any M, N, K; no transposes; blocks of A and B staged in workgroup memory, TM x TN per invocation",
  tune: "gpu",
  // 64x64, 64x128 and 128x128 blocks of C per workgroup of 256: the shapes that keep a real GPU busy.
  tiles: [
    { TM: 4, TN: 4, BK: 16, WG_X: 16, WG_Y: 16 },
    { TM: 4, TN: 8, BK: 8, WG_X: 16, WG_Y: 16 },
    { TM: 8, TN: 8, BK: 8, WG_X: 16, WG_Y: 16 },
  ],
  shader: (t) => ({ code: tiledCode(JSON.stringify(t)), constants: {} }),
  supports: plainNN,
  workgroups: (p, t) => [ceilDiv(p.N, t.TN * t.WG_X), ceilDiv(p.M, t.TM * t.WG_Y), p.batch],
});

// ---------------------------------------------------------------- split-K A·Bᵀ (weight gradients)

// 32x32 outputs per invocation: few loads per FMA even though lanes split K, not C (kernels/README.md).
const SPLITK_TILES = [
  { TM: 32, TN: 32, WG: 8 },
  { TM: 16, TN: 16, WG: 8 },
  { TM: 8, TN: 8, WG: 16 },
];
/** Aim for this many workgroups (M-blocks x N-blocks x batch x K-splits)... */
const SPLITK_TARGET_WGS = 64;
/** ...but give every invocation at least this many vec4 steps along K. */
const SPLITK_MIN_STEPS = 32;

/** K-splits S and vec4 steps per invocation for a problem. */
export function splitKPlan(p: MatmulProblem, t: MatmulTile): { S: number; chunk: number } {
  const nkb = Math.max(1, ceilDiv(p.K, 4));
  const blocks = ceilDiv(p.M, t.TM) * ceilDiv(p.N, t.TN) * p.batch;
  const want = Math.min(
    ceilDiv(SPLITK_TARGET_WGS, blocks),
    Math.floor(nkb / (t.WG * SPLITK_MIN_STEPS)),
    Math.floor(65535 / p.batch),
  );
  const chunk = ceilDiv(nkb, Math.max(1, want) * t.WG);
  return { S: ceilDiv(nkb, chunk * t.WG), chunk };
}

const splitKCode = memo((k) => splitKShader(JSON.parse(k)));
/** Where A's and B's rows lie: batch strides and row strides, in elements. */
interface SplitKLayout {
  stride_a: number;
  stride_b: number;
  ld_a: number;
  ld_b: number;
}
const splitKTileCode = (t: MatmulTile, p: MatmulProblem, l: SplitKLayout) =>
  splitKCode(JSON.stringify({
    TM: t.TM,
    TN: t.TN,
    WG: t.WG,
    ALIGNED: [p.K, l.stride_a, l.stride_b, l.ld_a, l.ld_b].every((v) => v % 4 === 0) ? 1 : 0,
  }));
const splitKWorkgroups = (
  p: MatmulProblem,
  t: MatmulTile,
): [number, number, number] => [ceilDiv(p.N, t.TN), ceilDiv(p.M, t.TM), p.batch * splitKPlan(p, t).S];

/** Record C = A·Bᵀ by split-K: the partial products, then their sum into `out`. */
function splitKRun(rt: Runtime, a: Tensor, b: Tensor, out: Tensor, p: MatmulProblem, t: MatmulTile, l: SplitKLayout) {
  const { S, chunk } = splitKPlan(p, t);
  const code = splitKTileCode(t, p, l);
  const uniforms = { M: p.M, N: p.N, K: p.K, ...l, stride_c: p.M * p.N, S, chunk, total: p.batch * p.M * p.N };
  // One partial block of C per invocation: no workgroup barrier (with a large register tile live across
  // it, a barrier is slow on llvmpipe: kernels/README.md), then a second pass sums them.
  const partial = rt.empty([p.batch, S * t.WG, p.M, p.N]);
  rt.dispatch({
    label: "matmul/splitk-nt",
    code,
    buffers: { A: a, B: b, P: partial },
    uniforms,
    workgroups: splitKWorkgroups(p, t),
  });
  rt.dispatch({
    label: "matmul/splitk-nt.reduce",
    code,
    entryPoint: "reduce",
    buffers: { P: partial, C: out },
    uniforms,
    workgroups: grid1d(uniforms.total, 64),
  });
  partial.release();
}

export const splitKVariant = matmulOp.register({
  name: "splitk-nt",
  file: "kernels/matmul-codegen.ts (splitKShader)",
  code: splitKShader({ ...SPLITK_TILES[0], ALIGNED: 0 }),
  description:
    "C = A·Bᵀ (transB only), any M, N, K, batch; TM x TN block per invocation, K split over workgroups, vec4 loads " +
    "along K (A's uniform), second pass sums the splits",
  tiles: SPLITK_TILES,
  shader: (t, p) => ({ code: splitKTileCode(t, p, contiguous(p, p.batch, p.batch)), constants: {} }),
  supports: (p) => p.transB && !p.transA,
  workgroups: splitKWorkgroups,
  run(rt, a, b, out, p, t) {
    splitKRun(rt, a, b, out, p, t, contiguous(p, batchOf(a.shape), batchOf(b.shape)));
  },
});

/** The layout of contiguous operands: batch matrices back to back (stride 0 when broadcast). */
function contiguous(p: MatmulProblem, batchA: number, batchB: number): SplitKLayout {
  return {
    stride_a: batchA === 1 ? 0 : p.M * p.K,
    stride_b: batchB === 1 ? 0 : p.N * p.K,
    ld_a: p.K,
    ld_b: p.K,
  };
}

/**
 * C[i] = A_i · B_iᵀ, [batch, M, N], for blocks A_i [M, K] of `a` starting at element i * strideA with rows
 * `ldA` apart (likewise B_i of `b`): per-example column blocks of wide [M, batch * K] matrices, multiplied in
 * place by split-K without copying them out.
 */
export function matmulBlocksNT(
  rt: Runtime,
  a: Tensor,
  b: Tensor,
  o: { M: number; N: number; K: number; batch: number; strideA: number; strideB: number; ldA: number; ldB: number },
): Tensor {
  const p: MatmulProblem = { M: o.M, N: o.N, K: o.K, batch: o.batch, transA: false, transB: true };
  const last = (i: number, stride: number, ld: number, rows: number) => i * stride + (rows - 1) * ld + o.K;
  if (last(o.batch - 1, o.strideA, o.ldA, o.M) > a.size || last(o.batch - 1, o.strideB, o.ldB, o.N) > b.size) {
    throw new Error(`matmulBlocksNT: blocks ${JSON.stringify(o)} reach past [${a.shape}] or [${b.shape}]`);
  }
  const out = rt.empty([o.batch, o.M, o.N], "f32");
  const layout = { stride_a: o.strideA, stride_b: o.strideB, ld_a: o.ldA, ld_b: o.ldB };
  splitKRun(rt, a, b, out, p, tileForProblem(splitKVariant, p)!, layout);
  return out;
}

/**
 * Where split-K A·Bᵀ beats copying Bᵀ (O(N K)) and running the faster NN kernel: few rows (M < 256), B much
 * taller than A (N >= 4M: the copy dominates), or a very long K. The measurements behind these bounds are
 * in kernels/README.md.
 */
export function splitKWins(p: MatmulProblem): boolean {
  return p.transB && !p.transA && (p.M < 256 || p.N >= 4 * p.M || p.K >= 16 * Math.max(p.M, p.N));
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  out?: Tensor;
  /** Run this variant instead of the active one (tests and benchmarks). */
  variant?: MatmulVariant;
  tile?: MatmulTile;
}

function batchOf(shape: readonly number[]): number {
  return shape.slice(0, -2).reduce((a, b) => a * b, 1);
}

/** The uniform struct every matmul variant shares: sizes and element strides between batch matrices. */
function contractUniforms(p: MatmulProblem, a: Tensor, b: Tensor) {
  const { stride_a, stride_b } = contiguous(p, batchOf(a.shape), batchOf(b.shape));
  return { M: p.M, N: p.N, K: p.K, stride_a, stride_b, stride_c: p.M * p.N };
}

/** The matrix problem for tensors a, b (2-D, or batched with equal or broadcast (1) leading sizes). */
export function matmulProblem(
  aShape: readonly number[],
  bShape: readonly number[],
  transA = false,
  transB = false,
): MatmulProblem & { outShape: number[] } {
  if (aShape.length < 2 || bShape.length < 2) throw new Error(`matmul needs matrices, got [${aShape}] and [${bShape}]`);
  const [ar, ac] = aShape.slice(-2);
  const [br, bc] = bShape.slice(-2);
  const M = transA ? ac : ar;
  const K = transA ? ar : ac;
  const Kb = transB ? bc : br;
  const N = transB ? br : bc;
  if (K !== Kb) {
    throw new Error(`matmul: inner sizes differ, [${aShape}]${transA ? "ᵀ" : ""} x [${bShape}]${transB ? "ᵀ" : ""}`);
  }
  const ba = batchOf(aShape);
  const bb = batchOf(bShape);
  if (ba !== bb && ba !== 1 && bb !== 1) throw new Error(`matmul: batch sizes ${ba} and ${bb} do not broadcast`);
  const lead = (ba >= bb ? aShape : bShape).slice(0, -2);
  return { M, N, K, batch: Math.max(ba, bb), transA, transB, outShape: [...lead, M, N] };
}

/** Tiles chosen by `autotuneMatmul`, per variant, for this process's adapter. */
const tuned = new Map<string, MatmulTile>();
export const tileFor = (v: MatmulVariant): MatmulTile => tuned.get(v.name) ?? v.tiles[0];

/** The fastest variant on this adapter at the tuning size (`autotuneMatmul`), unless one was chosen by name. */
let fastest: MatmulVariant | undefined;

/** Largest share of a tile's rows that may lie past M before a smaller tile is taken. */
const MAX_ROW_WASTE = 0.25;

/**
 * The tile for a problem: the tuned one (timed at 1024²), unless it does not fit the shape or more than a
 * quarter of its rows lie past M (rows computed from junk and never stored); then the largest smaller tile of
 * the variant that fits without that waste, else the tuned one if it fits. Undefined when none fits.
 */
function tileForProblem(v: MatmulVariant, p: MatmulProblem): MatmulTile | undefined {
  const tuned = tileFor(v);
  const waste = (t: MatmulTile) => (t.TM ? (ceilDiv(p.M, t.TM) * t.TM - p.M) / p.M : 0);
  const smaller = v.tiles.filter((t) => t !== tuned && t.TM !== undefined && t.TM < tuned.TM);
  return [tuned, ...smaller].find((t) => v.supports(p, t) && waste(t) <= MAX_ROW_WASTE) ??
    (v.supports(p, tuned) ? tuned : undefined);
}

/**
 * Pick the kernel for a problem: the chosen variant (by name, else the autotuner's fastest, else the first
 * registered) if one of its tiles fits the shape, else split-K where it wins, else the first that fits.
 */
export function chooseKernel(p: MatmulProblem): { variant: MatmulVariant; tile: MatmulTile } {
  const active = (matmulOp.chosenName ? undefined : fastest) ?? matmulOp.active;
  const order = [active, ...(splitKWins(p) ? [splitKVariant] : []), ...matmulOp.variants];
  for (const variant of order) {
    const tile = tileForProblem(variant, p);
    if (tile) return { variant, tile };
  }
  throw new Error(`no matmul variant supports ${JSON.stringify(p)}`);
}

export const chooseVariant = (p: MatmulProblem): MatmulVariant => chooseKernel(p).variant;

/** From this many multiply-adds, a transposed operand is worth copying so a fast NN variant can run. */
const TRANSPOSE_COPY_FROM = 1 << 18;

export function matmul(rt: Runtime, a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const p = matmulProblem(a.shape, b.shape, opts.transA, opts.transB);
  const chosen = opts.variant ? undefined : chooseKernel(p);
  if (chosen && (p.transA || p.transB) && p.M * p.N * p.K >= TRANSPOSE_COPY_FROM) {
    const nn = { ...p, transA: false, transB: false };
    if (chosen.variant !== splitKVariant && chosen.variant !== chooseVariant(nn)) {
      // Transposes cost O(size) against the product's O(M N K): copy, then run the fast kernel.
      const at = p.transA ? transpose(rt, a) : a;
      const bt = p.transB ? transpose(rt, b) : b;
      const out = matmul(rt, at, bt, { out: opts.out });
      if (at !== a) at.release();
      if (bt !== b) bt.release();
      return out;
    }
  }
  const v = opts.variant ?? chosen!.variant;
  const tile = opts.tile ?? chosen?.tile ?? tileFor(v);
  if (!v.supports(p, tile)) {
    throw new Error(
      `matmul variant "${v.name}" does not support ${JSON.stringify(p)} with tile ${JSON.stringify(tile)}`,
    );
  }
  const out = opts.out ?? rt.empty(p.outShape, "f32");
  if (out.size !== p.batch * p.M * p.N) {
    throw new Error(`matmul: out has ${out.size} elements, expected [${p.outShape}]`);
  }
  if (v.run) {
    v.run(rt, a, b, out, p, tile);
    return out;
  }
  const { code, constants } = v.shader(tile, p);
  rt.dispatch({
    label: `matmul/${v.name} ${p.M}x${p.K}x${p.N}${p.batch > 1 ? ` batch ${p.batch}` : ""}`,
    code,
    constants,
    buffers: { A: a, B: b, C: out },
    uniforms: contractUniforms(p, a, b),
    workgroups: v.workgroups(p, tile),
  });
  return out;
}

/**
 * Time every candidate tile of every variant on a square problem and keep the fastest per variant.
 * Results are cached per adapter (and shader source) on disk, so this costs seconds once per machine.
 */
export async function autotuneMatmul(
  rt: Runtime,
  opts: { size?: number; reps?: number; force?: boolean; log?: (s: string) => void } = {},
): Promise<Map<string, MatmulTile>> {
  const size = opts.size ?? 1024; // large enough to fill two CPU cores with 64x32 tiles
  const reps = opts.reps ?? 5;
  const a = rt.upload(new Float32Array(size * size).fill(0.5), [size, size]);
  const b = rt.upload(new Float32Array(size * size).fill(0.25), [size, size]);
  let quickest: { v: MatmulVariant; ms: number } | undefined;
  // On llvmpipe or SwiftShader a workgroup barrier is a loop over the invocations: shared-memory tiling loses.
  const software = /llvmpipe|lavapipe|swiftshader/i.test(rt.adapterName);
  for (const v of matmulOp.variants) {
    if (v.tiles.length === 1 || v.tune === "never" || (v.tune === "gpu" && software)) {
      tuned.set(v.name, v.tiles[0]); // nothing to choose between, or not worth a compile and a timing here
      continue;
    }
    const key = `matmul|${rt.adapterName}|${v.name}|${size}|${fnv1a(v.code)}`;
    const cached = opts.force ? undefined : await getTuned(key);
    const cachedMs = cached && (await getTuned(`${key}|ms`))?.ms;
    if (cached && cachedMs !== undefined) {
      tuned.set(v.name, cached);
      if (!quickest || cachedMs < quickest.ms) quickest = { v, ms: cachedMs };
      continue;
    }
    let best: { tile: MatmulTile; ms: number } | undefined;
    for (const tile of v.tiles) {
      const p = matmulProblem(a.shape, b.shape);
      if (!v.supports(p, tile)) continue;
      // A GPU finishes a product far sooner than a sync returns: time enough of them per sync.
      let inner = 1;
      const run = () => {
        for (let i = 0; i < inner; i++) matmul(rt, a, b, { variant: v, tile }).release();
      };
      run(); // compile + warm
      await rt.sync();
      let t0 = performance.now();
      run();
      await rt.sync();
      inner = Math.min(64, Math.max(1, Math.ceil(50 / (performance.now() - t0))));
      const samples: number[] = [];
      let spent = 0;
      for (let r = 0; r < reps; r++) {
        t0 = performance.now();
        run();
        await rt.sync();
        const ms = (performance.now() - t0) / inner;
        samples.push(ms);
        spent += ms;
        // Stop early on a clear loser, or on a slow kernel already timed twice (a fresh clone tunes
        // before its first job, and the scalar variant takes over a second per 1024^3 on a CPU).
        if ((best && ms > 2 * best.ms) || (r >= 1 && spent > 1000)) break;
      }
      const ms = samples.sort((x, y) => x - y)[samples.length >> 1]; // median: the machine may be busy
      opts.log?.(
        `autotune ${v.name} ${JSON.stringify(tile)}: ${ms.toFixed(2)} ms (${
          ((2 * size ** 3) / ms / 1e6).toFixed(1)
        } GFLOP/s)`,
      );
      if (!best || ms < best.ms) best = { tile, ms };
      // Tiles run largest first, and time is U-shaped in the tile size: past twice the best, it only grows.
      if (ms > 2 * best.ms) break;
    }
    if (best) {
      tuned.set(v.name, best.tile);
      await putTuned(key, best.tile);
      await putTuned(`${key}|ms`, { ms: best.ms });
      if (!quickest || best.ms < quickest.ms) quickest = { v, ms: best.ms };
    }
  }
  a.release();
  b.release();
  fastest = quickest?.v;
  opts.log?.(`autotune: ${fastest?.name ?? matmulOp.active.name} is the fastest at ${size}^2 on this adapter`);
  return tuned;
}

// ---------------------------------------------------------------- CPU twin (float64)

export function matmulRef(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  p: {
    M: number;
    N: number;
    K: number;
    batch?: number;
    transA?: boolean;
    transB?: boolean;
    broadcastA?: boolean;
    broadcastB?: boolean;
  },
): Float64Array {
  const { M, N, K } = p;
  const batch = p.batch ?? 1;
  const out = new Float64Array(batch * M * N);
  for (let bt = 0; bt < batch; bt++) {
    const ao = p.broadcastA ? 0 : bt * M * K;
    const bo = p.broadcastB ? 0 : bt * K * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = p.transA ? a[ao + k * M + i] : a[ao + i * K + k];
          const bv = p.transB ? b[bo + j * K + k] : b[bo + k * N + j];
          s += av * bv;
        }
        out[bt * M * N + i * N + j] = s;
      }
    }
  }
  return out;
}
