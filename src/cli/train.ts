// npm run train: train a model on a seeded subset of CIFAR-10 on the device, evaluate it on the test
// split and write a safetensors checkpoint (the model config and run metadata in its __metadata__).
import { z } from "zod";
import { uploadDataset } from "../../kernels/batch.ts";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import { loadData } from "../data/formats.ts";
import { seededSubset } from "../data/dataset.ts";
import { getRuntime } from "../gpu/runtime.ts";
import { saveModel } from "../nn/checkpoint.ts";
import { buildModel, ModelConfig, parameterCount } from "../nn/models.ts";
import { evaluate, Recipe, trainModel } from "../nn/train.ts";
import { checkSettings, type CommandSpec, intoSettings, type Parsed } from "./command.ts";
import { dataFlags, modelFlags, outputFlags, recipeFlags } from "./flags.ts";
import { note, progressBar, quietProgress } from "./progress.ts";

const TrainSettings = z.object({ model: ModelConfig, recipe: Recipe });
const defaults = {
  model: { kind: "small-cnn", input: [3, 32, 32], classes: 10 },
  recipe: Recipe.parse({ epochs: 4, batchSize: 128, lr: 0.1 }),
};

export const TrainFlags = z.object({
  ...dataFlags({ train: 20000 }),
  ...modelFlags(defaults.model),
  ...recipeFlags(defaults.recipe),
  out: z.string().default("model.safetensors").describe("the checkpoint to write"),
  ...outputFlags,
});

export const command: CommandSpec<typeof TrainFlags> = {
  name: "train",
  summary: "train a model on CIFAR-10 on the device, evaluate it, write a safetensors checkpoint",
  flags: TrainFlags,
  examples: [
    "npm run train -- --model small-cnn --train 20000 --epochs 4",
    "npm run train -- --model resnet9 --epochs 10 --crop-pad 4 --flip --out resnet9.safetensors",
    `npm run train -- --model mlp --model-config '{"hidden": [512, 256]}' --train 5000 --json`,
  ],
  check: (flags) => void settingsOf(flags),
};

export function settingsOf(flags: z.output<typeof TrainFlags>) {
  return checkSettings(
    command,
    TrainSettings,
    intoSettings(command, flags, { ...defaults, recipe: { ...defaults.recipe, seed: flags.seed } }),
    flags,
  );
}

export async function main({ flags }: Parsed<typeof TrainFlags>): Promise<void> {
  const settings = settingsOf(flags);
  const recipe = settings.recipe;
  if (flags.quiet || flags.json) quietProgress();
  const data = await loadData(flags.data); // a wrong path fails before the device set-up
  const train = seededSubset(data.train, Math.min(data.train.n, flags.train), flags.seed);
  if (!data.test) throw new Error(`${flags.data}: no test split to evaluate on (ROOT/test/, x_test, t10k-…)`);
  const test = data.test;
  // The input shape and class count are the data's.
  const config = {
    ...settings.model,
    input: [train.c, train.h, train.w] as [number, number, number],
    classes: train.classes.length,
  };
  const rt = await getRuntime();
  note(`adapter: ${rt.adapterName}`);
  await autotuneMatmul(rt, { log: note });
  const t0 = performance.now();
  const model = buildModel(rt, config, flags.seed);
  note(`${config.kind}: ${parameterCount(model)} parameters, ${train.n} training images`);
  await trainModel(rt, model, uploadDataset(rt, train), recipe, {
    onProgress: (p) =>
      progressBar(`epoch ${p.epoch + 1}/${p.epochs}`, p.batch, p.batches, `${p.imagesPerSecond.toFixed(0)} img/s`),
    onEpoch: (e) =>
      note(
        `epoch ${e.epoch + 1}: loss ${e.loss.toFixed(3)}, train accuracy ${(100 * e.accuracy).toFixed(1)}%, ${
          e.seconds.toFixed(1)
        } s`,
      ),
  });
  const ev = await evaluate(rt, model, uploadDataset(rt, test));
  const seconds = (performance.now() - t0) / 1000;
  await saveModel(rt, model, flags.out, {
    seed: flags.seed,
    epochs: recipe.epochs,
    train: train.n,
    test_accuracy: ev.accuracy,
  });
  const out = {
    model: config.kind,
    train: train.n,
    epochs: recipe.epochs,
    test_accuracy: ev.accuracy,
    seconds,
    checkpoint: flags.out,
    adapter: rt.adapterName,
  };
  if (flags.json) console.log(JSON.stringify(out));
  else {console.log(
      `test accuracy ${(100 * ev.accuracy).toFixed(2)}% after ${seconds.toFixed(0)} s; checkpoint: ${flags.out}`,
    );}
}
