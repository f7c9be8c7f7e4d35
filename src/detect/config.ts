// The settings of a detect run, one schema: the training set's fields (./training-set.ts, which the
// volunteer jobs extend too) plus the model, recipe, attribution, search and output settings.
import { z } from "zod";
import { DEFAULT_DATA } from "../data/cifar.ts";
import { ModelConfig } from "../nn/models.ts";
import { Recipe } from "../nn/train.ts";
import { TrainingSetSpec } from "./training-set.ts";

/** A detect run's settings: the training set's (training-set.ts, shared with the volunteer jobs) and the rest. */
export const DetectConfig = TrainingSetSpec.extend({
  /** The CIFAR-10 binary tarball or directory. */
  data: z.string().default(DEFAULT_DATA),
  /** Test images for clean accuracy and ASR (seeded subset; default the whole test split). */
  test: z.number().int().positive().optional(),
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
  /** Random restarts per search size: enough for a ranking that does not depend on the restarts' seeds (README). */
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
