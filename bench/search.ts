// `npm run bench -- search`: ranking quality of the local search (src/detect/search.ts) against the public
// reference algorithm (src/detect/search-reference.ts) on the same planted-block matrices, sizes and start
// sets. Matrices (src/detect/planted.ts): n = 5,000 (or --sizes), rank 10, N(0, 1) entries, a block of 3% of
// n raised by +2.0; "planted" as is, "balanced" with the block's row and column sums evened out, so that
// only the block's structure gives it away; SEARCH_MATRICES seeds of each (default 3), SEARCH_RESTARTS
// restarts per size (default 100). Per backend and matrix: AUROC of the scores against the block (ours: also
// of its selection frequencies alone, auroc_frequency), precision at the block size, mean |S ∩ block| of the
// restarts per size, and wall time. Both run on the host in float64 totals (the reference keeps its matrix in
// f32, as its code does).
import { auroc } from "../src/detect/metrics.ts";
import { plantedMatrix } from "../src/detect/planted.ts";
import { referenceSearch } from "../src/detect/search-reference.ts";
import { denseCpuBackend, maxSumSearch, topK } from "../src/detect/search.ts";
import { env } from "../src/platform.ts";
import { type BenchReport, median } from "./harness.ts";

interface Found {
  scores: Float64Array;
  /** Ours: the selection frequencies alone (the ranking adds support). */
  frequency?: Float64Array;
  solutions: { size: number; members: Int32Array }[];
}

/** f(S) of the centred matrix: the sum over S x S off the diagonal, less (s/n) of the members' row sums. */
function objective(A: Float32Array, n: number, rowsum: Float64Array, members: Int32Array): number {
  let f = 0;
  for (const i of members) {
    f -= (members.length / n) * rowsum[i];
    for (const j of members) if (i !== j) f += A[i * n + j];
  }
  return f;
}

export async function run(args: { sizes?: number[]; log?: (s: string) => void }): Promise<BenchReport> {
  const restarts = Number(env("SEARCH_RESTARTS") ?? 100);
  const matrices = Number(env("SEARCH_MATRICES") ?? 3);
  const rows: Record<string, number | string>[] = [];
  const notes: string[] = [];
  for (const n of args.sizes ?? [5000]) {
    const sizes: number[] = [];
    for (let s = Math.max(2, Math.round(n / 500)); s <= n / 5; s *= 2) sizes.push(s);
    const blockSize = Math.round(0.03 * n);
    const kinds = [false, true].flatMap((balanced) =>
      Array.from({ length: matrices }, (_, i) => ({ balanced, seed: 11 + i }))
    );
    for (const { balanced, seed } of kinds) {
      const matrix = balanced ? "balanced" : "planted";
      const { A, block } = plantedMatrix({ n, rank: 10, block: blockSize, strength: 2, balanced, seed });
      const inBlock = Array.from({ length: n }, () => false);
      for (const i of block) inBlock[i] = true;
      const rowsum = new Float64Array(n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) rowsum[i] += A[i * n + j];
      const measure = (backend: string, found: Found, ms: number) => {
        const row: Record<string, number | string> = {
          backend,
          matrix,
          seed,
          n,
          auroc: auroc(found.scores, inBlock),
          precision_at_block: topK(found.scores, blockSize).filter((i) => inBlock[i]).length / blockSize,
          ms,
        };
        if (found.frequency) row.auroc_frequency = auroc(found.frequency, inBlock);
        const objectives: string[] = [];
        for (const s of sizes) {
          const of = found.solutions.filter((x) => x.size === s);
          const hits = of.reduce((a, x) => a + x.members.filter((i) => inBlock[i]).length, 0) / of.length;
          row[`hits_${s}`] = hits;
          const f = of.reduce((a, x) => a + objective(A, n, rowsum, x.members), 0) / of.length;
          objectives.push(`${s}: ${f.toFixed(0)}`);
        }
        notes.push(`${backend}, ${matrix} ${seed} (n = ${n}): mean objective per size ${objectives.join(", ")}`);
        rows.push(row);
        args.log?.(JSON.stringify(row));
      };
      const progress = (name: string) => (p: { size: number; restart: number }) => {
        if (p.restart === restarts - 1) args.log?.(`${name} ${matrix} ${seed} n=${n}: size ${p.size} done`);
      };
      let t0 = performance.now();
      const ours = await maxSumSearch(denseCpuBackend(A, n), {
        sizes,
        restarts,
        seed: 1,
        onProgress: progress("ours"),
      });
      measure("ours", ours, performance.now() - t0);
      t0 = performance.now();
      const ref = referenceSearch(A, n, { sizes, restarts, seed: 1, onProgress: progress("reference") });
      measure("reference", ref, performance.now() - t0);
    }
    notes.push(
      `n = ${n}: block ${blockSize}, sizes ${sizes.join(", ")}, ${restarts} restarts per size (SEARCH_RESTARTS), ` +
        `the same start sets for both; hits_S: mean |S ∩ block| of the restarts at size S.`,
    );
    for (const matrix of ["planted", "balanced"]) {
      const of = (backend: string) => rows.filter((r) => r.n === n && r.matrix === matrix && r.backend === backend);
      const mean = (rs: typeof rows, k: string) => rs.reduce((a, r) => a + Number(r[k]), 0) / rs.length;
      const [ours, ref] = [of("ours"), of("reference")];
      notes.push(
        `${matrix}, mean of ${ours.length}: AUROC ${mean(ours, "auroc").toFixed(5)} (ours; by frequency alone ` +
          `${mean(ours, "auroc_frequency").toFixed(5)}) vs ` +
          `${mean(ref, "auroc").toFixed(5)} (reference), precision ${mean(ours, "precision_at_block").toFixed(3)} vs ` +
          `${mean(ref, "precision_at_block").toFixed(3)}, median time ratio ` +
          `${(median(ref.map((r) => Number(r.ms))) / median(ours.map((r) => Number(r.ms)))).toFixed(1)}x`,
      );
    }
  }
  return { adapter: "host (float64 totals)", rows, notes };
}
