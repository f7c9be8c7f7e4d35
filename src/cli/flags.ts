// Flags several commands share, defined once so a name means the same thing everywhere: --data, --train,
// --seed, --attack, --attack-config, --model, --model-config, the recipe shorthands, --quiet and --json.
import { z } from "zod";
import { DetectConfig } from "../detect/config.ts";
import { TrainingSetSpec } from "../detect/training-set.ts";
import { Recipe } from "../nn/train.ts";

type RecipeOut = z.output<typeof Recipe>;
export const MODEL_KINDS = ["small-cnn", "resnet9", "mlp", "layers"] as const;

/** --data, --train and --seed (with another default for --train where the command has one). */
export function dataFlags(o: { train?: number } = {}) {
  const s = { ...DetectConfig.shape, train: TrainingSetSpec.shape.train };
  return {
    data: s.data,
    train: o.train === undefined ? s.train : s.train.unwrap().default(o.train).describe(s.train.description!),
    seed: s.seed,
  };
}

/** --attack and --attack-config, with --rate and --target for the two settings every attack has. */
export function attackFlags() {
  const s = TrainingSetSpec.shape;
  return {
    attack: s.attack,
    attackConfig: s.attackConfig,
    rate: z.number().gt(0).lte(1).optional().describe("the attack's poison rate (sets --attack-config's rate)").meta({
      into: "attackConfig.rate",
      default: 0.05,
    }),
    target: z.number().int().min(0).optional().describe(
      "the attack's target class (sets --attack-config's targetClass)",
    )
      .meta({ into: "attackConfig.targetClass", default: 0 }),
  };
}

/** --model and --model-config: the architecture, and any of its settings as JSON, merged into `model`. */
export function modelFlags(defaultModel: { kind: string }) {
  return {
    model: z.enum(MODEL_KINDS).optional().describe("the model architecture").meta({
      into: "model.kind",
      default: defaultModel.kind,
    }),
    widths: z.array(z.number().int().positive()).optional().describe(
      "channels per stage of small-cnn (any number of stages) or resnet9 (four), e.g. 16,32,64",
    ).meta({ into: "model.widths" }),
    modelConfig: z.record(z.string(), z.unknown()).optional().describe(
      `the model as JSON or @FILE.json (src/nn/models.ts): its settings, e.g. '{"widths": [32, 64, 128]}', ` +
        `or a network as a list of layers, '{"kind": "layers", "layers": [...]}' (README: Models)`,
    ).meta({ into: "model", default: defaultModel }),
  };
}

/** The recipe shorthands (--epochs, --batch-size, --lr, --crop-pad, --flip) and --recipe JSON, into `recipe`. */
export function recipeFlags(defaults: RecipeOut) {
  const one = <K extends "epochs" | "batchSize" | "lr" | "cropPad" | "flip">(k: K) =>
    Recipe.shape[k].unwrap().optional().describe(Recipe.shape[k].description!).meta({
      into: `recipe.${k}`,
      default: defaults[k],
    });
  return {
    epochs: one("epochs"),
    batchSize: one("batchSize"),
    lr: one("lr"),
    cropPad: one("cropPad"),
    flip: one("flip"),
    recipe: z.record(z.string(), z.unknown()).optional().describe(
      "any other training setting as JSON (src/nn/train.ts Recipe), e.g. '{\"weightDecay\": 0}'",
    ).meta({ into: "recipe", default: defaults }),
  };
}

export const outputFlags = {
  quiet: z.boolean().default(false).describe("no progress; print only the result"),
  json: z.boolean().default(false).describe("print only the result, as JSON on stdout"),
};

/**
 * The same flags, unset unless given (help still shows the default): for commands whose settings come
 * from somewhere else first, such as a job directory's stored settings.
 */
export function unlessGiven<T extends Record<string, z.ZodType>>(
  flags: T,
): { [K in keyof T]: z.ZodOptional<z.ZodType<z.output<T[K]>>> } {
  return Object.fromEntries(
    Object.entries(flags).map(([k, f]) => {
      if (!(f instanceof z.ZodDefault)) return [k, f.optional()];
      return [
        k,
        (f.unwrap() as z.ZodType).optional().describe(f.description!).meta({
          ...f.meta(),
          default: f.parse(undefined),
        }),
      ];
    }),
  ) as never;
}
