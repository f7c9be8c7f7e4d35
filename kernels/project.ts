// TRAK's dense random projection, Phi[n, :] += (1/sqrt k) G[n, :] R, with R[p, j] a +-1 Rademacher entry
// regenerated on the fly from the counter-based generator and never stored:
//   R[p, j] = sign(rngCombine(rngBits(seed, model, pOffset + p), j)),
// p the parameter's index in the model's concatenated weight vector. The result is the same on every
// adapter up to float rounding. Also: the explicit R (baseline and tests), and a strided block copy used
// to assemble and slice the attribution factors.
// Binding contract (wgsl/project_dense.wgsl, RANDOM_LIB prepended): G (read), partial, phi (read_write) f32;
// uniform { N, P, k, seed, model, p_offset, chunk, S, row0, scale }; entries `project` (16x16, grid
// [k/64, N/64, S]), `reduce` and `generate` (256, flat). wgsl/block_copy.wgsl: src, w (read), dst
// (read_write); uniform { rows, cols, sr0, sc0, sld, dr0, dc0, dld, use_w, accumulate, alpha }.
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { RANDOM_LIB, rngBits, rngCombine } from "./random.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";

export const projectOp = defineOp<Variant>(
  "project",
  "TRAK dense projection with on-the-fly Rademacher R; split over parameters",
);
projectOp.register({
  name: "default",
  file: "wgsl/project_dense.wgsl",
  code: RANDOM_LIB + (await wgsl("project_dense.wgsl")),
});

export const blockCopyOp = defineOp<Variant>(
  "block_copy",
  "strided 2-D block copy with scale and optional row weights",
);
blockCopyOp.register({ name: "default", file: "wgsl/block_copy.wgsl", code: await wgsl("block_copy.wgsl") });

const TP = 16;
const TN = 64;
const TJ = 64;

export interface ProjectOptions {
  seed: number;
  model: number;
  /** Index of G's first column in the model's concatenated weight vector. */
  pOffset: number;
  /** Aim for about this many workgroups (splitting P); a real GPU wants hundreds. Default 256. */
  targetWorkgroups?: number;
}

/** Splits S of the parameter axis and parameters per split. */
export function projectPlan(N: number, P: number, k: number, target = 256): { S: number; chunk: number } {
  const tiles = Math.ceil(k / TJ) * Math.ceil(N / TN);
  const chunks = Math.max(1, Math.ceil(P / TP));
  // At least 4 chunks (64 parameters) per split, so the partial sums stay small next to the work.
  const want = Math.max(1, Math.min(Math.ceil(target / tiles), Math.floor(chunks / 4), 65535));
  const chunk = Math.ceil(chunks / want) * TP;
  return { S: Math.ceil(P / chunk), chunk };
}

/**
 * Partial projections of G [N, P] (one example per row): partial [S, N, k] with S splits of P. Sum them
 * into Phi with `accumulateRows`. Most callers want `projectDense`.
 */
export function projectPartials(rt: Runtime, G: Tensor, k: number, o: ProjectOptions): Tensor {
  if (G.shape.length !== 2) throw new Error(`project: G must be [N, P], got [${G.shape}]`);
  if (k % 4 !== 0) throw new Error(`project: k must be a multiple of 4, got ${k}`);
  const [N, P] = G.shape;
  const { S, chunk } = projectPlan(N, P, k, o.targetWorkgroups);
  const partial = rt.empty([S, N, k]);
  const v = projectOp.active;
  rt.dispatch({
    label: `project.project/${v.name}`,
    code: v.code,
    entryPoint: "project",
    buffers: { G, partial },
    uniforms: uniforms({ N, P, k, seed: o.seed, model: o.model, p_offset: o.pOffset, chunk, S }),
    workgroups: [Math.ceil(k / TJ), Math.ceil(N / TN), S],
  });
  return partial;
}

/** phi[row0 + n, :] += scale * sum_s partial[s, n, :] (partial [S, N, k] or [N, k]; phi [rows, k]). */
export function accumulateRows(rt: Runtime, partial: Tensor, phi: Tensor, row0: number, scale: number): void {
  const k = phi.shape[phi.shape.length - 1];
  const N = partial.shape.length === 3 ? partial.shape[1] : partial.size / k;
  const S = partial.size / (N * k);
  if (!Number.isInteger(S) || partial.size !== S * N * k) {
    throw new Error(`accumulateRows: partial [${partial.shape}] does not match k = ${k}`);
  }
  if ((row0 + N) * k > phi.size) {
    throw new Error(`accumulateRows: rows ${row0}..${row0 + N} overflow phi [${phi.shape}]`);
  }
  const v = projectOp.active;
  rt.dispatch({
    label: `project.reduce/${v.name}`,
    code: v.code,
    entryPoint: "reduce",
    buffers: { partial, phi },
    uniforms: uniforms({ N, k, S, row0, scale }),
    workgroups: grid1d(N * k, 256),
  });
}

/** phi[row0 + n, :] += (1/sqrt k) G[n, :] R: the dense projection of a tile of per-example gradients. */
export function projectDense(rt: Runtime, G: Tensor, phi: Tensor, row0: number, o: ProjectOptions): void {
  const k = phi.shape[phi.shape.length - 1];
  const partial = projectPartials(rt, G, k, o);
  accumulateRows(rt, partial, phi, row0, 1 / Math.sqrt(k));
  partial.release();
}

/** The explicit +-1 rows [p0, p0 + rows) of R (unscaled), as [rows, k]: the baseline and tests. */
export function generateR(
  rt: Runtime,
  rows: number,
  k: number,
  o: { seed: number; model: number; pOffset: number },
): Tensor {
  const out = rt.empty([rows, k]);
  const v = projectOp.active;
  rt.dispatch({
    label: `project.generate/${v.name}`,
    code: v.code,
    entryPoint: "generate",
    buffers: { partial: out },
    uniforms: uniforms({ P: rows, k, seed: o.seed, model: o.model, p_offset: o.pOffset }),
    workgroups: grid1d(rows * k, 256),
  });
  return out;
}

function uniforms(
  u: Partial<Record<"N" | "P" | "k" | "seed" | "model" | "p_offset" | "chunk" | "S" | "row0" | "scale", number>>,
) {
  return {
    N: 0,
    P: 0,
    k: 0,
    chunk: 0,
    S: 1,
    row0: 0,
    scale: 1,
    ...u,
    seed: (u.seed ?? 0) >>> 0,
    model: (u.model ?? 0) >>> 0,
    p_offset: (u.p_offset ?? 0) >>> 0,
  };
}

export interface BlockCopy {
  rows: number;
  cols: number;
  /** Source block origin and row length (leading dimension). */
  sr0?: number;
  sc0?: number;
  sld: number;
  dr0?: number;
  dc0?: number;
  dld: number;
  alpha?: number;
  /** Per-source-row weights (indexed by absolute source row). */
  w?: Tensor;
  accumulate?: boolean;
}

/** dst[dr0 + r, dc0 + c] (+)= alpha * w[sr0 + r] * src[sr0 + r, sc0 + c]. */
export function blockCopy(rt: Runtime, src: Tensor, dst: Tensor, b: BlockCopy): Tensor {
  const { rows, cols } = b;
  const [sr0, sc0, dr0, dc0] = [b.sr0 ?? 0, b.sc0 ?? 0, b.dr0 ?? 0, b.dc0 ?? 0];
  if ((sr0 + rows - 1) * b.sld + sc0 + cols > src.size || sc0 + cols > b.sld) {
    throw new Error(`blockCopy: source block out of range of [${src.shape}]`);
  }
  if ((dr0 + rows - 1) * b.dld + dc0 + cols > dst.size || dc0 + cols > b.dld) {
    throw new Error(`blockCopy: destination block out of range of [${dst.shape}]`);
  }
  if (src.buffer === dst.buffer) throw new Error("blockCopy: src and dst must differ");
  const v = blockCopyOp.active;
  rt.dispatch({
    label: `block_copy/${v.name}`,
    code: v.code,
    buffers: { src, w: b.w ?? src, dst },
    uniforms: {
      rows,
      cols,
      sr0,
      sc0,
      sld: b.sld,
      dr0,
      dc0,
      dld: b.dld,
      use_w: b.w ? 1 : 0,
      accumulate: b.accumulate ? 1 : 0,
      alpha: b.alpha ?? 1,
    },
    workgroups: grid1d(rows * cols, 256),
  });
  return dst;
}

// ---------------------------------------------------------------- TypeScript twins

/** R[p, j] for p in [pOffset, pOffset + rows): +-1 (unscaled), row-major [rows, k]. */
export function projectionMatrixRef(
  rows: number,
  k: number,
  o: { seed: number; model: number; pOffset: number },
): Float64Array {
  const out = new Float64Array(rows * k);
  for (let p = 0; p < rows; p++) {
    const h = rngBits(o.seed, o.model, o.pOffset + p);
    for (let j = 0; j < k; j++) out[p * k + j] = rngCombine(h, j) & 0x80000000 ? -1 : 1;
  }
  return out;
}

/** (1/sqrt k) G R in float64, G [N, P]. */
export function projectDenseRef(
  G: ArrayLike<number>,
  N: number,
  P: number,
  k: number,
  o: { seed: number; model: number; pOffset: number },
): Float64Array {
  const R = projectionMatrixRef(P, k, o);
  const out = new Float64Array(N * k);
  const s = 1 / Math.sqrt(k);
  for (let n = 0; n < N; n++) {
    for (let p = 0; p < P; p++) {
      const g = G[n * P + p];
      if (g === 0) continue;
      for (let j = 0; j < k; j++) out[n * k + j] += g * R[p * k + j] * s;
    }
  }
  return out;
}
