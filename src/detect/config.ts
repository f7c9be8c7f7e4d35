// The settings of a detect run, one schema: the training set's fields (./training-set.ts, which the
// volunteer jobs extend too) plus the model, recipe, attribution, search and output settings.
import { z } from "zod";
import { DEFAULT_DATA } from "../data/cifar.ts";
import { READ_FORMATS } from "../data/formats.ts";
import { ModelConfig } from "../nn/models.ts";
import { Recipe } from "../nn/train.ts";
import { TrainingSetSpec } from "./training-set.ts";
import { REMOVAL_FRACTION } from "./metrics.ts";

/** A detect run's settings: the training set's (training-set.ts, shared with the volunteer jobs) and the rest. */
export const DetectConfig = TrainingSetSpec.extend({
  data: z.string().default(DEFAULT_DATA).describe(
    "the dataset: CIFAR-10 binary, an image folder (ROOT/<class>/<image>), .npz/.npy, or IDX files (README: Data)",
  ),
  format: z.enum(READ_FORMATS).optional().describe("the dataset's format (default: told from the path)"),
  resize: z.string().regex(/^\d+x\d+$/, "HxW, e.g. 32x32").optional().describe(
    "resample every image to HxW (bilinear); without it, images of differing sizes are an error",
  ),
  // Attack and size default by data: the bundled CIFAR-10 is the demo (BadNets on 4,000 images); a
  // user's own dataset is scanned whole and as it is (data.ts resolveData).
  train: z.number().int().positive().optional().describe(
    "training examples drawn (seeded) from the training split (default: 4000 of the bundled CIFAR-10, else all)",
  ),
  attack: TrainingSetSpec.shape.attack.unwrap().optional().describe(
    "the attack planted in the training set (default: badnets on the bundled CIFAR-10, else none)",
  ),
  test: z.string().optional().describe(
    "a clean test split (any format); default the dataset's own, else a seeded 10% of it is held out",
  ),
  testSize: z.number().int().positive().optional().describe(
    "test images for clean accuracy and ASR (a seeded subset; default the whole test split)",
  ),
  manifest: z.string().optional().describe(
    "ground truth for evaluation only: poison apply's manifest.json, a JSON list of indices or paths, or .npy",
  ),
  model: ModelConfig.prefault({ kind: "small-cnn", input: [3, 32, 32], classes: 10, widths: [16, 32, 64] }),
  // No crop or flip by default: they move and mirror a corner patch, and short CPU runs then fail to
  // learn the backdoor at all (nothing to detect). GPU-sized runs can turn them on.
  recipe: Recipe.prefault({ epochs: 4, batchSize: 64, lr: 0.05, cropPad: 0, flip: false }),
  attribution: z.enum(["trak", "datamodels"]).default("trak").describe(
    "where A comes from: TRAK (gradients of an ensemble) or datamodels (a regression over subset models)",
  ),
  models: z.number().int().min(1).default(2).describe(
    "models in the TRAK ensemble (datamodels runs train one, for the baselines and the before numbers)",
  ),
  dmModels: z.number().int().min(4).default(1000).describe("datamodels: subset models to train and fit"),
  dmAlpha: z.number().gt(0).lte(1).default(0.5).describe("datamodels: the fraction of the training set per subset"),
  dmPenalty: z.enum(["l2", "l1"]).default("l2").describe("datamodels: ridge (l2) or lasso (l1) regression"),
  ldsModels: z.number().int().min(0).default(0).describe(
    "held-out subset models for the LDS of A (0: none); both attributions are scored on the same ones",
  ),
  k: z.number().int().positive().default(256).describe("TRAK projection dimension per model"),
  projection: z.enum(["dense", "factored"]).default("factored").describe(
    "TRAK projection: dense (P x k) or factored per layer",
  ),
  qWeight: z.boolean().default(false).describe("weight attributions by Qbar = 1 - p, as reference TRAK does"),
  // Enough for a ranking that does not depend on the restarts' seeds (README: Detection).
  restarts: z.number().int().positive().default(50).describe("random restarts of the local search per subset size"),
  searchBackend: z.enum(["auto", "factors", "dense"]).default("auto").describe(
    "auto: a dense A on the host while n <= 4096 (faster on CPU adapters), else A's low-rank factors",
  ),
  // Poisons left behind keep a backdoor alive, a few clean examples cost little (metrics.ts standoutRemoval).
  budget: z.union([z.literal("auto"), z.number().int().min(0)]).default("auto").describe(
    "examples to remove: auto removes nothing unless a block stands out, then the examples of its class scoring at " +
      `least ${REMOVAL_FRACTION} of the class's top score, at most n/5; N removes the N highest-ranked`,
  ),
  retrainBaselines: z.boolean().default(false).describe("also remove and retrain for each baseline"),
  cache: z.string().default(".cache/detect").describe("directory of cached stages (a rerun redoes only what changed)"),
  out: z.string().default("report").describe("where the report goes (README: Exports)"),
  exportClean: z.string().optional().describe("also write the dataset minus the flagged examples here, in its format"),
});
export type DetectConfig = z.input<typeof DetectConfig>;
export type Cfg = z.output<typeof DetectConfig>;
