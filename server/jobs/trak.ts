// The "trak" job: `npm run detect`'s attribution cut into volunteer shards.
//   train/m             (nondeterministic, spot-checked): ensemble member m -> checkpoint + margins on all n
//   featurize/m/a-b     (deterministic, quorum 2; needs train/m): TRAK features of examples [a, b)
// finish assembles Phi_m and Q_m from the accepted shards and runs the same scoring, baselines, budget,
// evaluation and report code as the single-machine pipeline (src/detect/pipeline.ts). Removal and
// retraining are not part of the job (they need the scores; the plan is fixed up front): "after"
// figures are left empty and the flagged list is the output.
//
// finish uses WebGPU where the coordinator has it (Deno: `npm run serve`), exactly as runDetect does: one
// attribution + search + baselines + one evaluation, the cost of a detect run's last stages. A coordinator
// on Node (Dawn is unreliable here) finishes on the host instead, for n <= HOST_FINISH_MAX: the float64
// twin of the attribution and the same dense search; baselines and model 0's evaluation are left out.
// Spot checks need no device: the float64 twins of the layers run on the host.
import { z } from "zod";
import { uploadDataset } from "../../kernels/batch.ts";
import { marginRef } from "../../kernels/loss.ts";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import { assembleBatchRef } from "../../kernels/batch.ts";
import type { Features } from "../../src/attribution/featurize.ts";
import { seededIndices } from "../../src/data/dataset.ts";
import { topK } from "../../src/detect/metrics.ts";
import {
  type BaselineResult, DetectConfig, evaluateOutcome, keyOf, loadTestSet, type Outcome, removalBudget, runBaselines, type Scored, scoreDense,
  scoreFeatures, type StageProgress, summarize,
} from "../../src/detect/pipeline.ts";
import { denseAttributionRef } from "../../src/attribution/trak.ts";
import { writeReport } from "../../src/detect/report.ts";
import { buildTrainingSet, ensembleSeed, type TrainingSet } from "../../src/detect/training-set.ts";
import { joinPath, makeDir, writeBytesAtomic } from "../../src/data/io.ts";
import { detectRuntime } from "../../src/gpu/device.ts";
import { getRuntime } from "../../src/gpu/runtime.ts";
import { hostModelFromSafetensors, modelFromSafetensors } from "../../src/nn/checkpoint.ts";
import { ModelConfig } from "../../src/nn/models.ts";
import { Recipe } from "../../src/nn/train.ts";
import { FEATURIZE, type FeaturizePayload, TRAIN, type TrainPayload } from "../../src/volunteer/shards.ts";
import { type ArrayValue, defineJobKind, type Inputs, type ShardPlan } from "../job-kind.ts";
import { datasetPath, DEFAULT_DATASET, trainSplit } from "./datasets.ts";

/** Largest job a coordinator without WebGPU finishes on the host (dense float64 A: n² doubles, O(M n² k)). */
export const HOST_FINISH_MAX = 4096;

const TILE = 64; // featurisation tile of the pipeline: shard boundaries on tiles keep the rounding identical

export const TrakSpec = DetectConfig.pick({
  test: true, seed: true, attackConfig: true, model: true, recipe: true, models: true, k: true, projection: true,
  qWeight: true, restarts: true, searchBackend: true, budget: true,
}).extend({
  /** A dataset the coordinator serves (server/jobs/datasets.ts). */
  data: z.string().default(DEFAULT_DATASET),
  train: z.number().int().positive().max(50000).default(4000),
  // label-consistent poisons with a surrogate model trained on the device: not reproducible on every worker.
  attack: z.enum(["none", "badnets", "blended", "sig", "wanet"]).default("badnets"),
  /** Training examples per featurize shard: a multiple of the 64-example tile. */
  shardSize: z.number().int().positive().multipleOf(TILE, "a multiple of 64 (the featurisation tile)").default(512),
  /** Margins re-evaluated on the host (float64 twin) per submitted checkpoint. */
  spotChecks: z.number().int().min(1).default(16),
  maxCheckpointBytes: z.number().int().positive().default(64 << 20),
});
export type TrakSpec = z.output<typeof TrakSpec>;

/** Agreement of two results of the same deterministic shard; see `agree` below for the reasoning. */
export const TOLERANCE = { phiRow: 1e-3, margin: 1e-3, q: 1e-3, spotMargin: 1e-3 };

const datasetRef = (s: TrakSpec) => ({ data: s.data, train: s.train, seed: s.seed, attack: s.attack, attackConfig: s.attackConfig });
const trainKey = (m: number) => `${TRAIN}/${m}`;

export function featurizeRanges(n: number, shardSize: number): [number, number][] {
  const out: [number, number][] = [];
  for (let a = 0; a < n; a += shardSize) out.push([a, Math.min(n, a + shardSize)]);
  return out;
}

/** The detect settings this job reproduces (data resolved to the coordinator's local file). */
export function detectConfigOf(s: TrakSpec): z.output<typeof DetectConfig> {
  return DetectConfig.parse({
    data: datasetPath(s.data), train: s.train, test: s.test, seed: s.seed, attack: s.attack, attackConfig: s.attackConfig, model: s.model,
    recipe: s.recipe, models: s.models, k: s.k, projection: s.projection, qWeight: s.qWeight, restarts: s.restarts,
    searchBackend: s.searchBackend, budget: s.budget,
  });
}

const sets = new Map<string, Promise<TrainingSet>>();
function trainingSet(s: TrakSpec): Promise<TrainingSet> {
  const key = keyOf(datasetRef(s));
  let p = sets.get(key);
  if (!p) {
    p = trainSplit(s.data).then((full) => buildTrainingSet(full, datasetRef(s)));
    p.catch(() => sets.delete(key));
    sets.set(key, p);
  }
  return p;
}

function rowsAgree(a: Float32Array, b: Float32Array, rows: number, cols: number, rel: number): boolean {
  for (let r = 0; r < rows; r++) {
    let d = 0, na = 0, nb = 0;
    for (let c = r * cols; c < (r + 1) * cols; c++) {
      d += (a[c] - b[c]) ** 2;
      na += a[c] ** 2;
      nb += b[c] ** 2;
    }
    if (!(Math.sqrt(d) <= rel * Math.sqrt(Math.max(na, nb)) + 1e-12)) return false;
  }
  return true;
}

export const trak = defineJobKind<TrakSpec>({
  name: "trak",
  spec: TrakSpec as unknown as z.ZodType<TrakSpec>,

  plan(s) {
    // Decode the data set now, at job creation: the first spot check would otherwise block the
    // coordinator's event loop for seconds (gunzip) while volunteers hold short leases.
    trainingSet(s).catch(() => {});
    const n = Math.min(s.train, 50000);
    const dataset = datasetRef(s);
    const shards: ShardPlan[] = [];
    for (let m = 0; m < s.models; m++) {
      const payload: TrainPayload = { dataset, model: ModelConfig.parse(s.model), recipe: Recipe.parse(s.recipe), m, seed: ensembleSeed(s.seed, m) };
      shards.push({
        key: trainKey(m), kind: TRAIN, payload, deps: [], deterministic: false, maxBytes: s.maxCheckpointBytes,
        outputs: { checkpoint: { dtype: "u8", shape: [-1] }, margins: { dtype: "f32", shape: [n] } },
      });
    }
    for (let m = 0; m < s.models; m++) {
      for (const [a, b] of featurizeRanges(n, s.shardSize)) {
        const payload: FeaturizePayload = {
          dataset, checkpoint: trainKey(m), k: s.k, projection: s.projection, seed: s.seed, modelIndex: m, start: a, end: b, batchSize: TILE,
        };
        shards.push({
          key: `${FEATURIZE}/${m}/${a}-${b}`, kind: FEATURIZE, payload, deps: [trainKey(m)], deterministic: true,
          outputs: { phi: { dtype: "f32", shape: [b - a, s.k] }, margins: { dtype: "f32", shape: [b - a] }, q: { dtype: "f32", shape: [b - a] } },
        });
      }
    }
    return shards;
  },

  /**
   * Two volunteers' features of the same examples under the same accepted checkpoint. On one adapter
   * they are bitwise equal (same kernels, tiles and order). Across GPUs only the summation order of the
   * matmuls changes: each phi entry sums ~10^3-10^4 products over layers, positions and the projection,
   * so f32 reorderings move a row by ~1e-6-1e-5 of its norm (u = 6e-8, error ~ u sqrt(terms) typically,
   * u * terms at worst ~ 1e-3). A row relative error of 1e-3 admits that and rejects any real change
   * (a different checkpoint, example or seed changes rows by O(1)). Margins: 1e-3 (1 + |m|); Q = 1 -
   * sigmoid(m) moves at most |dm|/4, so 1e-3 absolute.
   */
  agree(shard, a, b) {
    const names = Object.keys(shard.outputs);
    for (const name of names) if (!a[name] || !b[name] || a[name].data.length !== b[name].data.length) return false;
    if (shard.kind !== FEATURIZE) return names.every((k) => a[k].data.every((v, i) => v === b[k].data[i]));
    const [rows, cols] = shard.outputs.phi.shape;
    if (!rowsAgree(a.phi.data as Float32Array, b.phi.data as Float32Array, rows, cols, TOLERANCE.phiRow)) return false;
    const ma = a.margins.data, mb = b.margins.data, qa = a.q.data, qb = b.q.data;
    for (let i = 0; i < rows; i++) {
      if (!(Math.abs(ma[i] - mb[i]) <= TOLERANCE.margin * (1 + Math.abs(ma[i])))) return false;
      if (!(Math.abs(qa[i] - qb[i]) <= TOLERANCE.q)) return false;
    }
    return true;
  },

  /**
   * A submitted checkpoint must be a model of the job's architecture, and the margins claimed for a
   * random sample of examples must be what that checkpoint gives: recomputed in float64 on the host
   * (the layers' CPU twins, eval mode), within 1e-3 (1 + |m|) of the device's f32 value (observed f32 vs
   * f64 differences on these models: ~1e-6).
   */
  async spotCheck(s, shard, result, _inputs: Inputs, seed) {
    if (shard.kind !== TRAIN) return null;
    let model;
    try {
      model = hostModelFromSafetensors(result.checkpoint.data as Uint8Array, shard.key, s.model).model;
    } catch (e) {
      return (e as Error).message;
    }
    const { train } = await trainingSet(s);
    const claimed = result.margins.data as Float32Array;
    if (claimed.length !== train.n) return `${shard.key}: ${claimed.length} margins for ${train.n} examples`;
    const count = Math.min(s.spotChecks, train.n);
    const idx = seededIndices(train.n, count, seed >>> 0);
    const r = Recipe.parse({}); // evaluate()'s normalisation
    const { x, y } = assembleBatchRef(train.images, train.labels, train.c, train.h, train.w, idx, { start: 0, size: count, mean: r.mean, std: r.std, pad: 0, flip: false, seed: 0, stream: 0 });
    const logits = model.net.forwardRef({ shape: [train.c, count, train.h, train.w], data: x }, "eval");
    const ref = marginRef(logits.data, y, model.classes, count).value;
    for (let j = 0; j < count; j++) {
      const got = claimed[idx[j]];
      if (!(Math.abs(got - ref[j]) <= TOLERANCE.spotMargin * (1 + Math.abs(ref[j])))) {
        return `${shard.key}: claimed margin ${got} of example ${idx[j]} is not the checkpoint's (${ref[j].toPrecision(6)})`;
      }
    }
    return null;
  },

  async finish(s, inputs, outDir, onProgress = () => {}) {
    const t0 = performance.now();
    const stageSeconds: Record<string, number> = {};
    let mark = t0;
    const stage = (name: string) => {
      const now = performance.now();
      stageSeconds[name] = (stageSeconds[name] ?? 0) + (now - mark) / 1000;
      mark = now;
    };
    const cfg = detectConfigOf(s);
    const { train, poisoned } = await trainingSet(s);
    const n = train.n;
    const onDevice = detectRuntime() !== "node";
    if (!onDevice && n > HOST_FINISH_MAX) {
      throw new Error(`this coordinator runs on Node, where the trak finish has no WebGPU (Dawn is unreliable here) and works on the host in float64 up to n = ${HOST_FINISH_MAX} examples; this job has ${n}: run the coordinator under Deno (npm run serve)`);
    }
    stage("data");

    onProgress(`assembling features of ${s.models} models`);
    const hostFeats: { phi: Float32Array; margins: Float32Array; q: Float32Array }[] = [];
    for (let m = 0; m < s.models; m++) {
      const phi = new Float32Array(n * s.k);
      const margins = new Float32Array(n);
      const q = new Float32Array(n);
      for (const [a, b] of featurizeRanges(n, s.shardSize)) {
        const key = `${FEATURIZE}/${m}/${a}-${b}`;
        const get = async (name: string): Promise<ArrayValue> => inputs.get(key, name);
        phi.set((await get("phi")).data as Float32Array, a * s.k);
        margins.set((await get("margins")).data as Float32Array, a);
        q.set((await get("q")).data as Float32Array, a);
      }
      hostFeats.push({ phi, margins, q });
    }
    let lastSize = "";
    const searchProgress = (p: StageProgress) => {
      if (p.detail && p.detail !== lastSize) onProgress(`search ${(lastSize = p.detail)}`);
    };
    const rt = onDevice ? await getRuntime() : null;
    let scored: Scored;
    if (rt) {
      await autotuneMatmul(rt);
      const feats: Features[] = hostFeats.map((f) => ({ ...f, phi: rt.upload(f.phi, [n, s.k]), n, k: s.k }));
      stage("attribute");
      scored = await scoreFeatures(rt, feats, cfg, searchProgress);
    } else {
      // Node: the float64 twin of the attribution, then the pipeline's dense host search.
      const A = Float32Array.from(denseAttributionRef(hostFeats, n, s.k, { qWeight: cfg.qWeight }));
      for (let i = 0; i < n; i++) A[i * n + i] = 0; // as scoreAttribution: A's diagonal is zero by definition
      stage("attribute");
      scored = await scoreDense(A, n, cfg, searchProgress);
    }
    const scores = Float64Array.from(scored.search);
    const spectral = Float64Array.from(scored.spectral);
    stage("search");
    const flagged = topK(scores, removalBudget(cfg, scores));

    // Baselines and model 0's clean accuracy / attack success need the device; without one they stay empty.
    let baselines: BaselineResult = {};
    let before: Outcome = { clean_acc: NaN, asr: cfg.attack === "none" ? null : NaN };
    if (rt) {
      onProgress("baselines and evaluation of model 0");
      const model0 = modelFromSafetensors(rt, (await inputs.get(trainKey(0), "checkpoint")).data as Uint8Array, trainKey(0)).model;
      const deviceTrain = uploadDataset(rt, train.images, train.labels, n, train.c, train.h, train.w);
      baselines = await runBaselines(rt, model0, deviceTrain, train, poisoned, cfg.seed);
      stage("baselines");
      const test = await loadTestSet(cfg);
      const deviceTest = uploadDataset(rt, test.images, test.labels, test.n, test.c, test.h, test.w);
      before = await evaluateOutcome(rt, model0, deviceTest, test, cfg);
      [deviceTrain.pixels, deviceTrain.labels, deviceTest.pixels, deviceTest.labels].forEach((t) => t.release());
      model0.params.forEach((p) => p.value.release());
      stage("evaluate");
    }

    const adapter = rt?.adapterName ?? "host (float64; no WebGPU in this coordinator)";
    const summary = summarize({
      cfg, scores, spectral, flagged, baselines, poisoned, before, n, adapter, stageSeconds,
      after: { clean_acc: NaN, asr: before.asr === null ? null : NaN }, // no retraining in the job
      seconds: (performance.now() - t0) / 1000,
    });
    await makeDir(outDir);
    await writeReport({ summary, scores, spectral, baselineScores: Object.fromEntries(Object.entries(baselines).map(([k, b]) => [k, b.scores])), train, poisonedSet: poisoned ? new Set(poisoned) : null }, outDir);
    await writeBytesAtomic(joinPath(outDir, "scores.json"), new TextEncoder().encode(JSON.stringify({ search: scored.search, spectral: scored.spectral, backend: scored.backend })));
    onProgress(`done: auroc ${summary.auroc?.toFixed(3) ?? "n/a"}, ${flagged.length} flagged`);
    return {
      auroc: summary.auroc, precision_at_budget: summary.precision_at_budget, recall_at_budget: summary.recall_at_budget, tpr_at_5fpr: summary.tpr_at_5fpr,
      flagged: summary.flagged, clean_acc_before: rt ? summary.clean_acc_before : null, asr_before: rt ? summary.asr_before : null, n, adapter,
      baselines: Object.fromEntries(Object.entries(summary.baselines).map(([k, b]) => [k, { auroc: b.auroc }])),
      spectral_auroc: summary.spectral_score?.auroc ?? null, seconds: summary.seconds, files: ["summary.json", "report.html", "scores.json"],
    };
  },
});
