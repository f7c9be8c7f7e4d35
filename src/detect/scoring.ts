// From an attribution to scores: the maximum-sum submatrix search (DESIGN.md section 3) and the
// spectral score, on A's low-rank factors (device) or on a dense A (host), and the LDS of A on held-out
// subset models when there are some. A's diagonal is zero by definition; it is zeroed here, once.
import { type Attribution, buildAttribution, denseAttributionRef } from "../attribution/trak.ts";
import type { Features } from "../attribution/featurize.ts";
import { type HeldOut, heldOutLds } from "../attribution/lds.ts";
import { matmul } from "../../kernels/matmul.ts";
import type { Runtime } from "../gpu/runtime.ts";
import type { Cfg } from "./config.ts";
import { Factors } from "./factors.ts";
import { denseCpuBackend, maxSumSearch, type SearchProgress } from "./search.ts";
import { factorBackend } from "./search-gpu.ts";
import { spectralDense, spectralFactors } from "./spectral.ts";
import { classStandout, denseBlock, type Standout } from "./standout.ts";
import type { OnStage } from "./stages.ts";

/** Zero the diagonal entries of rows [r0, r0 + rows.length / n) of an n-column A. */
export function zeroDiagonal(rows: Float32Array, n: number, r0 = 0): Float32Array {
  for (let i = r0; i < r0 + rows.length / n; i++) rows[(i - r0) * n + i] = 0;
  return rows;
}

/** Features of the ensemble -> A's factors -> search and spectral scores. Releases every phi. */
export async function scoreFeatures(
  rt: Runtime,
  feats: Features[],
  cfg: SearchSettings & { qWeight: boolean },
  onProgress: OnStage,
  onAttributed: () => void = () => {},
  heldOut?: HeldOut,
): Promise<Scored> {
  const { attribution } = await buildAttribution(rt, feats, { qWeight: cfg.qWeight });
  feats.forEach((f) => f.phi.release());
  onAttributed();
  const result = await scoreAttribution(rt, attribution, cfg, onProgress, heldOut);
  attribution.release();
  return result;
}

/** The search's settings, and the training labels the decision rule's classes come from. */
export type SearchSettings = Pick<Cfg, "restarts" | "seed" | "searchBackend"> & { labels: ArrayLike<number> };

/**
 * Search backend by size: the low-rank factors never build A, and are the only option at scale; but on a
 * CPU adapter their gemvs stream all of U and V per swap, so while the dense
 * n x n matrix is small (n <= denseUpTo, 64 MiB at 4096) it is built once and searched on the host.
 */
export async function scoreAttribution(
  rt: Runtime,
  a: Attribution,
  cfg: SearchSettings,
  onProgress: OnStage,
  heldOut?: HeldOut,
): Promise<Scored> {
  const n = a.n;
  const dense = cfg.searchBackend === "dense" || (cfg.searchBackend === "auto" && n <= 4096);
  if (dense) {
    return scoreDense(zeroDiagonal(await a.readBlock(0, n, 0, n), n), n, cfg, onProgress, heldOut);
  }
  const factors = new Factors(rt, [{ U: a.U, V: a.V, offset: 0, rows: n }]);
  const backend = factorBackend(rt, factors);
  const result = await maxSumSearch(backend, searchOptions(cfg, onProgress));
  backend.dispose();
  const spectral = await spectralFactors(rt, factors, { seed: cfg.seed });
  const lds = heldOut &&
    (await heldOutLds(async (r0, r1) => zeroDiagonal(await a.readBlock(r0, r1, 0, n), n, r0), n, heldOut)).lds;
  const [U, V] = await rt.readMany([a.U, a.V]);
  const r = a.U.shape[1];
  const rows = (X: Float32Array, idx: number[]) => {
    const out = new Float32Array(idx.length * r);
    idx.forEach((i, x) => out.set(X.subarray(i * r, (i + 1) * r), x * r));
    return rt.upload(out, [idx.length, r]);
  };
  const standout = await classStandout(cfg.labels, async (idx) => {
    const [Uc, Vc] = [rows(U as Float32Array, idx), rows(V as Float32Array, idx)];
    const block = matmul(rt, Uc, Vc, { transB: true });
    const out = (await rt.read(block)) as Float32Array;
    [Uc, Vc, block].forEach((t) => t.release());
    return out;
  }, { seed: cfg.seed });
  return {
    search: Array.from(result.scores),
    spectral: Array.from(spectral.scores),
    backend: "factors (device)",
    standout,
    ...(lds !== undefined && { lds }),
  };
}

export interface Scored {
  /** The search's ranking (search.ts rankScores). */
  search: number[];
  spectral: number[];
  backend: string;
  /** LDS on the held-out subset models, when there are some. */
  lds?: number;
  /** The decision rule (standout.ts): whether anything stands out from the classes' natural blocks. */
  standout: Standout;
}

/** Search and spectral scores (and the LDS) of a dense n x n A on the host, row = target, diagonal zero. */
export async function scoreDense(
  A: Float32Array,
  n: number,
  cfg: SearchSettings,
  onProgress: OnStage,
  heldOut?: HeldOut,
): Promise<Scored> {
  const backend = denseCpuBackend(A, n);
  const result = await maxSumSearch(backend, searchOptions(cfg, onProgress));
  backend.dispose();
  const spectral = spectralDense(A, n, { seed: cfg.seed });
  const lds = heldOut && (await heldOutLds(async (r0, r1) => A.subarray(r0 * n, r1 * n), n, heldOut)).lds;
  return {
    search: Array.from(result.scores),
    spectral: Array.from(spectral.scores),
    backend: "dense (host)",
    standout: await classStandout(cfg.labels, (idx) => denseBlock(A, n, idx), { seed: cfg.seed }),
    ...(lds !== undefined && { lds }),
  };
}

function searchOptions(cfg: SearchSettings, onProgress: OnStage) {
  return {
    restarts: cfg.restarts,
    seed: cfg.seed,
    onProgress: (p: SearchProgress) =>
      onProgress({
        stage: "search",
        done: p.sizeIndex * p.restarts + p.restart + 1,
        total: p.sizes * p.restarts,
        detail: `size ${p.size}`,
      }),
  };
}

/** Features of the ensemble's models as host arrays (a volunteer job's accepted featurize shards). */
export interface HostFeatures {
  phi: Float32Array;
  margins: Float32Array;
  q: Float32Array;
}

/**
 * Scores from host features: on the device as the pipeline does (the caller autotunes it first, so the tiles
 * and the rounding are the pipeline's), or,
 * with no device (a coordinator on Node), the float64 twin of the attribution and the dense host search.
 */
export async function scoreHostFeatures(
  rt: Runtime | null,
  feats: HostFeatures[],
  n: number,
  k: number,
  cfg: SearchSettings & { qWeight: boolean },
  onProgress: OnStage,
  onAttributed: () => void = () => {},
): Promise<Scored> {
  if (rt) {
    return scoreFeatures(
      rt,
      feats.map((f) => ({ ...f, phi: rt.upload(f.phi, [n, k]), n, k })),
      cfg,
      onProgress,
      onAttributed,
    );
  }
  const A = zeroDiagonal(Float32Array.from(denseAttributionRef(feats, n, k, { qWeight: cfg.qWeight })), n);
  onAttributed();
  return scoreDense(A, n, cfg, onProgress);
}
