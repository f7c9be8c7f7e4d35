// The detection pipeline: data (+ attack) -> train the ensemble -> TRAK factors -> maximum-sum submatrix
// scores (+ spectral score) -> baselines -> flag -> remove and retrain -> evaluate -> summary. Every
// stage's output is cached on disk under a key that hashes the settings it depends on, so a rerun with
// one changed setting redoes only what that setting touches.
import { z } from "zod";
import { applyTrigger, ATTACKS, type AttackName } from "../attacks/index.ts";
import { uploadDataset, type DeviceDataset } from "../../kernels/batch.ts";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import { buildAttribution, type Attribution } from "../attribution/trak.ts";
import { featurize, type Features } from "../attribution/featurize.ts";
import { loadCifar10 } from "../data/cifar.ts";
import { type Dataset, seededSubset, subset } from "../data/dataset.ts";
import { buildTrainingSet, ensembleSeed } from "./training-set.ts";
import { joinPath, makeDir, pathKind, readText, writeBytesAtomic } from "../data/io.ts";
import type { Runtime } from "../gpu/runtime.ts";
import { loadModel, saveModel } from "../nn/checkpoint.ts";
import { buildModel, type Model, ModelConfig } from "../nn/models.ts";
import { evaluate, Recipe, trainModel } from "../nn/train.ts";
import { activationClustering, penultimate, spectralSignatures } from "./baselines.ts";
import { Factors } from "./factors.ts";
import { detectionMetrics, type DetectionMetrics, frequencyBudget, rocCurve, topK } from "./metrics.ts";
import { denseCpuBackend, maxSumSearch, type SearchProgress } from "./search.ts";
import { factorBackend } from "./search-gpu.ts";
import { spectralDense, spectralFactors } from "./spectral.ts";
import { heldOutLds, type HeldOut, storedHeldOut } from "../datamodels/lds.ts";
import { fitDatamodels } from "../datamodels/regression.ts";
import { DatamodelStore } from "../datamodels/store.ts";
import { trainSubsetModels } from "../datamodels/train.ts";

export const DEFAULT_DATA = new URL("../../../shared/datasets/cifar-10-binary.tar.gz", import.meta.url).pathname;

export const DetectConfig = z.object({
  data: z.string().default(DEFAULT_DATA),
  /** Training examples drawn (seeded) from the training split; the full test split is always used. */
  train: z.number().int().positive().default(4000),
  /** Test images for clean accuracy and ASR (seeded subset; default the whole test split). */
  test: z.number().int().positive().optional(),
  seed: z.number().int().default(0),
  attack: z.enum(["none", ...ATTACKS]).default("badnets"),
  attackConfig: z.record(z.string(), z.unknown()).default({ rate: 0.05 }),
  model: ModelConfig.prefault({ kind: "small-cnn", input: [3, 32, 32], classes: 10, widths: [16, 32, 64] }),
  // No crop or flip by default: they move and mirror a corner patch, and short CPU runs then fail to
  // learn the backdoor at all (nothing to detect). GPU-sized runs can turn them on.
  recipe: Recipe.prefault({ epochs: 4, batchSize: 64, lr: 0.05, cropPad: 0, flip: false }),
  /**
   * Where A comes from: TRAK (projected gradients of an ensemble trained on the whole set) or datamodels
   * (dmModels models, each trained on a random dmAlpha-subset, and a regression of their margins on the masks).
   */
  attribution: z.enum(["trak", "datamodels"]).default("trak"),
  /** Models in the TRAK ensemble (datamodels runs train one, for the baselines and the "before" outcome). */
  models: z.number().int().min(1).default(2),
  dmModels: z.number().int().min(4).default(1000),
  dmAlpha: z.number().gt(0).lte(1).default(0.5),
  dmPenalty: z.enum(["l2", "l1"]).default("l2"),
  /** Held-out subset models for the LDS of A (0: none); both attributions are scored on the same ones. */
  ldsModels: z.number().int().min(0).default(0),
  k: z.number().int().positive().default(256),
  projection: z.enum(["dense", "factored"]).default("factored"),
  /** Weight attributions by Qbar = 1 - p, as TRAK does (see KernelOptions.qWeight). */
  qWeight: z.boolean().default(false),
  /** Random restarts per search size: 50 keeps the ranking stable from seed to seed (10 did not at n = 2,000). */
  restarts: z.number().int().positive().default(50),
  /** auto: a dense matrix on the host while n <= 4096 (faster on CPU adapters), else the factors. */
  searchBackend: z.enum(["auto", "factors", "dense"]).default("auto"),
  /**
   * Examples removed: "auto" takes every example scored at least 1/4 of the top score, at most n/5
   * (metrics.ts frequencyBudget; poisons left behind keep a backdoor alive, a few clean examples cost
   * little); or a count.
   */
  budget: z.union([z.literal("auto"), z.number().int().min(0)]).default("auto"),
  /** Also remove and retrain for each baseline (one more training run each). */
  retrainBaselines: z.boolean().default(false),
  cache: z.string().default(".cache/detect"),
  out: z.string().default("report"),
});
export type DetectConfig = z.input<typeof DetectConfig>;
export type Cfg = z.output<typeof DetectConfig>;

export interface Outcome {
  clean_acc: number;
  asr: number | null;
}

export interface DetectorRow extends DetectionMetrics {
  name: string;
  after?: Outcome;
}

export interface Summary {
  auroc: number | null;
  precision_at_budget: number | null;
  recall_at_budget: number | null;
  tpr_at_5fpr: number | null;
  flagged: number[];
  asr_before: number | null;
  asr_after: number | null;
  clean_acc_before: number;
  clean_acc_after: number;
  seconds: number;
  baselines: Record<string, Omit<DetectorRow, "name">>;
  spectral_score: DetectionMetrics | null;
  stage_seconds: Record<string, number>;
  /** LDS of A on `ldsModels` held-out subset models (src/datamodels/lds.ts), when asked for. */
  lds: number | null;
  config: Cfg;
  adapter: string;
  n: number;
  poisoned: number[] | null;
}

export interface StageProgress {
  stage: string;
  done: number;
  total: number;
  detail?: string;
}

export interface DetectResult {
  summary: Summary;
  /** For the report. */
  scores: Float64Array;
  spectral: Float64Array;
  baselineScores: Record<string, Float64Array>;
  train: Dataset;
  poisonedSet: Set<number> | null;
}

/** Stable short hash of a JSON-able value (FNV-1a over the canonical JSON). */
export function keyOf(v: unknown): string {
  const s = JSON.stringify(v, (_, x) => (x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort()) : x));
  let h = 0x811c9dc5, h2 = 0x01000193;
  for (let i = 0; i < s.length; i++) {
    h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    h2 = Math.imul(h2 ^ s.charCodeAt(i), 0x5bd1e995);
  }
  return (h >>> 0).toString(16).padStart(8, "0") + (h2 >>> 0).toString(16).padStart(8, "0");
}

async function cachedJson<T>(dir: string, key: string, make: () => Promise<T>): Promise<{ value: T; hit: boolean }> {
  const path = joinPath(dir, `${key}.json`);
  if ((await pathKind(path)) === "file") return { value: JSON.parse(await readText(path)) as T, hit: true };
  const value = await make();
  await writeBytesAtomic(path, new TextEncoder().encode(JSON.stringify(value)));
  return { value, hit: false };
}

async function cachedModel(rt: Runtime, dir: string, key: string, make: () => Promise<Model>, meta: Record<string, unknown>): Promise<Model> {
  const path = joinPath(dir, `${key}.safetensors`);
  if ((await pathKind(path)) === "file") return (await loadModel(rt, path)).model;
  const m = await make();
  await saveModel(rt, m, path, meta);
  return m;
}

export async function runDetect(rt: Runtime, config: DetectConfig, onProgress: (p: StageProgress) => void = () => {}): Promise<DetectResult> {
  const cfg = DetectConfig.parse(config);
  const t0 = performance.now();
  const stageSeconds: Record<string, number> = {};
  let mark = performance.now();
  const stage = (name: string) => {
    const now = performance.now();
    stageSeconds[name] = (stageSeconds[name] ?? 0) + (now - mark) / 1000;
    mark = now;
  };
  await makeDir(cfg.cache);
  await autotuneMatmul(rt);

  // 1. data and attack
  onProgress({ stage: "data", done: 0, total: 1 });
  const { train, poisoned } = await buildTrainingSet(await loadCifar10(cfg.data, { split: "train" }), cfg);
  const test = await loadTestSet(cfg);
  const dataKey = keyOf({ data: cfg.data, train: cfg.train, seed: cfg.seed, attack: cfg.attack, attackConfig: cfg.attackConfig });
  const deviceTrain = uploadDataset(rt, train.images, train.labels, train.n, train.c, train.h, train.w);
  const deviceTest = uploadDataset(rt, test.images, test.labels, test.n, test.c, test.h, test.w);
  onProgress({ stage: "data", done: 1, total: 1, detail: `${train.n} training examples, ${poisoned?.length ?? 0} poisoned` });
  stage("data");

  // 2. the ensemble
  const trainOne = (ds: DeviceDataset, seed: number, indices: ArrayLike<number> | undefined, label: string, epochs = cfg.recipe.epochs) => async () => {
    const model = buildModel(rt, cfg.model, seed);
    await trainModel(rt, model, ds, { ...cfg.recipe, epochs, seed }, {
      indices,
      onProgress: (p) => onProgress({ stage: label, done: p.epoch * p.batches + p.batch, total: p.epochs * p.batches, detail: `${p.imagesPerSecond.toFixed(0)} img/s` }),
    });
    return model;
  };
  const models: Model[] = [];
  const ensemble = cfg.attribution === "trak" ? cfg.models : 1;
  for (let m = 0; m < ensemble; m++) {
    const key = keyOf({ dataKey, model: cfg.model, recipe: cfg.recipe, m });
    models.push(await cachedModel(rt, cfg.cache, `model-${key}`, trainOne(deviceTrain, ensembleSeed(cfg.seed, m), undefined, `train model ${m + 1}/${ensemble}`), { dataKey, m }));
  }
  stage("train");

  // Subset models (datamodels, and the held-out ones of the LDS): one resumable store per training set and
  // recipe, so the two attributions share held-out models and a larger dmModels extends a smaller run.
  const needStore = cfg.attribution === "datamodels" || cfg.ldsModels > 0;
  const store = needStore
    ? await DatamodelStore.open(joinPath(cfg.cache, `datamodels-${keyOf({ dataKey, model: cfg.model, recipe: cfg.recipe, alpha: cfg.dmAlpha })}`), {
      n: train.n, alpha: cfg.dmAlpha, seed: cfg.seed, targets: 0, job: { dataKey, model: cfg.model, recipe: cfg.recipe },
    })
    : undefined;
  const trainSubsets = (split: "train" | "heldout", count: number, label: string) =>
    trainSubsetModels(rt, store!, split, count, { config: cfg.model, recipe: cfg.recipe, train: deviceTrain }, (p) =>
      onProgress({ stage: label, done: p.done, total: p.total, detail: p.trained ? `${p.secondsPerModel.toFixed(2)} s/model` : "" }));
  let heldOut: HeldOut | undefined;
  if (cfg.ldsModels > 0) {
    await trainSubsets("heldout", cfg.ldsModels, "held-out subset models");
    heldOut = await storedHeldOut(store!, cfg.ldsModels);
    stage("lds models");
  }

  // 3. attribution (TRAK factors, or the datamodels matrix) and 4. scores
  const ldsKey = cfg.ldsModels ? { ldsModels: cfg.ldsModels, alpha: cfg.dmAlpha } : {};
  const scoreKey = cfg.attribution === "trak"
    ? keyOf({ dataKey, model: cfg.model, recipe: cfg.recipe, M: cfg.models, k: cfg.k, projection: cfg.projection, restarts: cfg.restarts, qWeight: cfg.qWeight, search: cfg.searchBackend, ...ldsKey })
    : keyOf({ dataKey, model: cfg.model, recipe: cfg.recipe, attribution: "datamodels", dmModels: cfg.dmModels, dmAlpha: cfg.dmAlpha, dmPenalty: cfg.dmPenalty, restarts: cfg.restarts, ...ldsKey });
  const { value: scored } = await cachedJson(cfg.cache, `scores-${scoreKey}`, async () => {
    if (cfg.attribution === "datamodels") {
      await trainSubsets("train", cfg.dmModels, "datamodel subset models");
      stage("datamodels train");
      // The first dmModels records: a store extended by a larger run still gives this run's fit.
      const data = { n: store!.n, models: cfg.dmModels, rows: (start: number, count: number) => store!.rows(start, count) };
      const fit = await fitDatamodels(rt, data, { penalty: cfg.dmPenalty, seed: cfg.seed, onProgress: (done, total, detail) => onProgress({ stage: "datamodels fit", done, total, detail }) });
      const A = (await rt.read(fit.weights)) as Float32Array; // row = target, diagonal zeroed by the fit
      fit.weights.release();
      stage("attribute");
      return scoreDense(A, train.n, cfg, onProgress, heldOut);
    }
    const feats: Features[] = [];
    for (let m = 0; m < models.length; m++) {
      feats.push(await featurize(rt, models[m], deviceTrain, {
        k: cfg.k, projection: cfg.projection, seed: cfg.seed, modelIndex: m,
        onBatch: (done, total) => onProgress({ stage: `attribute model ${m + 1}/${models.length}`, done, total }),
      }));
    }
    return scoreFeatures(rt, feats, cfg, onProgress, () => stage("attribute"), heldOut);
  });
  stage("search");
  const scores = Float64Array.from(scored.search);
  const spectral = Float64Array.from(scored.spectral);

  // 5. baselines on the first model's penultimate activations
  const baselines = await runBaselines(rt, models[0], deviceTrain, train, poisoned, cfg.seed);
  stage("baselines");

  // 6. flag, remove, retrain, evaluate
  const flagged = topK(scores, removalBudget(cfg, scores));
  const outcome = (model: Model) => evaluateOutcome(rt, model, deviceTest, test, cfg);
  onProgress({ stage: "evaluate", done: 0, total: 1 });
  const before = await outcome(models[0]);
  stage("evaluate");
  const retrained = async (remove: readonly number[], label: string) => {
    const drop = new Set(remove);
    const keep = Uint32Array.from({ length: train.n }, (_, i) => i).filter((i) => !drop.has(i));
    // Same number of SGD steps as the model it replaces: removal should cost data, not training time.
    const epochs = (cfg.recipe.epochs * train.n) / keep.length;
    const key = keyOf({ dataKey, model: cfg.model, recipe: cfg.recipe, epochs, removed: [...drop].sort((a, b) => a - b) });
    const m = await cachedModel(rt, cfg.cache, `retrain-${key}`, trainOne(deviceTrain, cfg.seed * 1000, keep, label, epochs), { dataKey, removed: drop.size });
    return outcome(m);
  };
  const after = await retrained(flagged, "retrain without flagged");
  stage("retrain");

  const baselineAfter: Record<string, Outcome> = {};
  if (cfg.retrainBaselines) for (const [name, b] of Object.entries(baselines)) baselineAfter[name] = await retrained(b.flagged, `retrain without ${name}`);
  stage("retrain");
  const summary = summarize({ cfg, scores, spectral, flagged, baselines, baselineAfter, poisoned, before, after, n: train.n, adapter: rt.adapterName, seconds: (performance.now() - t0) / 1000, stageSeconds, lds: scored.lds });
  return { summary, scores, spectral, baselineScores: Object.fromEntries(Object.entries(baselines).map(([k, b]) => [k, b.scores])), train, poisonedSet: poisoned ? new Set(poisoned) : null };
}

// ---------------------------------------------------------------------------------------------
// Pieces shared with the volunteer TRAK job (server/jobs/trak.ts), which gets its features from shards.

/** The evaluation test set: a seeded subset when `test` is set, else the whole test split. */
export async function loadTestSet(cfg: Pick<Cfg, "data" | "test" | "seed">): Promise<Dataset> {
  const fullTest = await loadCifar10(cfg.data, { split: "test" });
  return cfg.test && cfg.test < fullTest.n ? seededSubset(fullTest, cfg.test, cfg.seed + 1) : fullTest;
}

/** Features of the ensemble -> A's factors -> search and spectral scores. Releases every phi. */
export async function scoreFeatures(rt: Runtime, feats: Features[], cfg: SearchSettings & { qWeight: boolean }, onProgress: (p: StageProgress) => void, onAttributed: () => void = () => {}, heldOut?: HeldOut): Promise<Scored> {
  const { attribution } = await buildAttribution(rt, feats, { qWeight: cfg.qWeight });
  feats.forEach((f) => f.phi.release());
  onAttributed();
  const result = await scoreAttribution(rt, attribution, cfg, onProgress, heldOut);
  attribution.release();
  return result;
}

export type BaselineResult = Record<string, { scores: Float64Array; flagged: number[] }>;

export async function runBaselines(rt: Runtime, model: Model, deviceTrain: DeviceDataset, train: Dataset, poisoned: number[] | null, seed: number): Promise<BaselineResult> {
  const rows = await penultimate(rt, model, deviceTrain);
  const expectedRate = poisoned ? poisoned.length / train.n : 0.05;
  return {
    "spectral signatures": spectralSignatures(rows, train.labels, expectedRate, seed),
    "activation clustering": activationClustering(rows, train.labels, seed),
  };
}

/** Examples removed: see DetectConfig.budget. */
export function removalBudget(cfg: Pick<Cfg, "budget">, scores: Float64Array): number {
  const n = scores.length;
  return cfg.budget === "auto" ? frequencyBudget(scores) : Math.min(cfg.budget, n);
}

export async function evaluateOutcome(rt: Runtime, model: Model, deviceTest: DeviceDataset, test: Dataset, cfg: Pick<Cfg, "attack" | "attackConfig">): Promise<Outcome> {
  const ev = await evaluate(rt, model, deviceTest);
  return { clean_acc: ev.accuracy, asr: cfg.attack === "none" ? null : await attackSuccess(rt, model, test, cfg) };
}

/** The summary from the scores and outcomes (after = NaN where no retraining was done). */
export function summarize(a: {
  cfg: Cfg; scores: Float64Array; spectral: Float64Array; flagged: number[]; baselines: BaselineResult; baselineAfter?: Record<string, Outcome>;
  poisoned: number[] | null; before: Outcome; after: Outcome; n: number; adapter: string; seconds: number; stageSeconds: Record<string, number>; lds?: number;
}): Summary {
  const { poisoned, n, flagged } = a;
  const truth = poisoned ? (() => { const s = new Set(poisoned); return Array.from({ length: n }, (_, i) => s.has(i)); })() : null;
  const baselineRows: Record<string, Omit<DetectorRow, "name">> = {};
  for (const [name, b] of Object.entries(a.baselines)) {
    const metrics = truth ? detectionMetrics(b.scores, truth, b.flagged) : { auroc: NaN, precision_at_budget: NaN, recall_at_budget: NaN, tpr_at_5fpr: NaN, flagged: b.flagged.length };
    baselineRows[name] = { ...metrics, ...(a.baselineAfter?.[name] ? { after: a.baselineAfter[name] } : {}) };
  }
  const ours = truth ? detectionMetrics(a.scores, truth, flagged) : null;
  return {
    auroc: ours?.auroc ?? null,
    precision_at_budget: ours?.precision_at_budget ?? null,
    recall_at_budget: ours?.recall_at_budget ?? null,
    tpr_at_5fpr: ours?.tpr_at_5fpr ?? null,
    flagged,
    asr_before: a.before.asr,
    asr_after: a.after.asr,
    clean_acc_before: a.before.clean_acc,
    clean_acc_after: a.after.clean_acc,
    seconds: a.seconds,
    baselines: baselineRows,
    spectral_score: truth ? detectionMetrics(a.spectral, truth, topK(a.spectral, flagged.length)) : null,
    stage_seconds: a.stageSeconds,
    lds: a.lds ?? null,
    config: a.cfg,
    adapter: a.adapter,
    n,
    poisoned,
  };
}

export type SearchSettings = Pick<Cfg, "restarts" | "seed" | "searchBackend">;

/**
 * Search backend by size: the low-rank factors never build A, and are the only option at scale; but on a
 * CPU adapter their gemvs stream all of U and V per swap (~3 GB/s on llvmpipe), so while the dense
 * n x n matrix is small (n <= denseUpTo, 64 MiB at 4096) it is built once and searched on the host.
 */
export async function scoreAttribution(rt: Runtime, a: Attribution, cfg: SearchSettings, onProgress: (p: StageProgress) => void, heldOut?: HeldOut): Promise<Scored> {
  const n = a.n;
  const dense = cfg.searchBackend === "dense" || (cfg.searchBackend === "auto" && n <= 4096);
  if (dense) {
    const A = await a.readBlock(0, n, 0, n);
    for (let i = 0; i < n; i++) A[i * n + i] = 0; // A's diagonal is zero by definition (DESIGN.md)
    return scoreDense(A, n, cfg, onProgress, heldOut);
  }
  const factors = new Factors(rt, [{ U: a.U, V: a.V, offset: 0, rows: n }]);
  const backend = factorBackend(rt, factors);
  const result = await maxSumSearch(backend, searchOptions(cfg, onProgress));
  backend.dispose();
  const spectral = await spectralFactors(rt, factors, { seed: cfg.seed });
  const lds = heldOut && (await heldOutLds(async (r0, r1) => {
    const rows = await a.readBlock(r0, r1, 0, n);
    for (let i = r0; i < r1; i++) rows[(i - r0) * n + i] = 0;
    return rows;
  }, n, heldOut)).lds;
  return { search: Array.from(result.scores), spectral: Array.from(spectral.scores), backend: "factors (device)", ...(lds !== undefined && { lds }) };
}

export interface Scored {
  search: number[];
  spectral: number[];
  backend: string;
  /** LDS on the held-out subset models, when there are some. */
  lds?: number;
}

/** Search and spectral scores (and the LDS) of a dense n x n A on the host, row = target, diagonal zero. */
export async function scoreDense(A: Float32Array, n: number, cfg: SearchSettings, onProgress: (p: StageProgress) => void, heldOut?: HeldOut): Promise<Scored> {
  const backend = denseCpuBackend(A, n);
  const result = await maxSumSearch(backend, searchOptions(cfg, onProgress));
  backend.dispose();
  const spectral = spectralDense(A, n, { seed: cfg.seed });
  const lds = heldOut && (await heldOutLds(async (r0, r1) => A.subarray(r0 * n, r1 * n), n, heldOut)).lds;
  return { search: Array.from(result.scores), spectral: Array.from(spectral.scores), backend: "dense (host)", ...(lds !== undefined && { lds }) };
}

function searchOptions(cfg: SearchSettings, onProgress: (p: StageProgress) => void) {
  return {
    restarts: cfg.restarts,
    seed: cfg.seed,
    onProgress: (p: SearchProgress) => onProgress({ stage: "search", done: p.sizeIndex * p.restarts + p.restart + 1, total: p.sizes * p.restarts, detail: `size ${p.size}` }),
  };
}

export async function attackSuccess(rt: Runtime, model: Model, test: Dataset, cfg: Pick<Cfg, "attack" | "attackConfig">): Promise<number> {
  const target = (cfg.attackConfig as { targetClass?: number }).targetClass ?? 0;
  const others = Array.from({ length: test.n }, (_, i) => i).filter((i) => test.labels[i] !== target);
  const triggered = applyTrigger(cfg.attack as AttackName, cfg.attackConfig as never, subset(test, others));
  triggered.labels.fill(target); // "correct" now means "classified as the target"
  const ev = await evaluate(rt, model, uploadDataset(rt, triggered.images, triggered.labels, triggered.n, triggered.c, triggered.h, triggered.w));
  return ev.accuracy;
}

export { rocCurve };
