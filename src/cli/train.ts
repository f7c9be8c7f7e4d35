// npm run train -- [--data PATH] [--model small-cnn|resnet9|mlp] [--train N] [--epochs E] [--batch B]
//                  [--lr LR] [--seed S] [--out model.safetensors]
// Loads CIFAR-10 (the shared copy by default), trains on the device with a progress bar, evaluates on
// the full test set and writes a safetensors checkpoint.
import { parseArgs } from "node:util";
import { uploadDataset } from "../../kernels/batch.ts";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import { loadCifar10 } from "../data/cifar.ts";
import { seededSubset } from "../data/dataset.ts";
import { getRuntime } from "../gpu/runtime.ts";
import { saveModel } from "../nn/checkpoint.ts";
import { buildModel, type ModelConfig, parameterCount } from "../nn/models.ts";
import { evaluate, trainModel } from "../nn/train.ts";
import { progressBar } from "./progress.ts";
import { args } from "../platform.ts";

const DEFAULT_DATA = new URL("../../../shared/datasets/cifar-10-binary.tar.gz", import.meta.url).pathname;
const { values: a } = parseArgs({
  args: args(),
  options: {
    data: { type: "string", default: DEFAULT_DATA },
    model: { type: "string", default: "small-cnn" },
    train: { type: "string", default: "20000" },
    epochs: { type: "string", default: "4" },
    batch: { type: "string", default: "128" },
    lr: { type: "string", default: "0.1" },
    seed: { type: "string", default: "0" },
    out: { type: "string", default: "model.safetensors" },
  },
});

const num = (name: string, v: string | undefined) => {
  const x = Number(v);
  if (!Number.isFinite(x) || x <= 0 && name !== "seed") {
    throw new Error(`--${name} must be a positive number, got "${v}"`);
  }
  return x;
};
const configs: Record<string, ModelConfig> = {
  "small-cnn": { kind: "small-cnn", input: [3, 32, 32], classes: 10 },
  resnet9: { kind: "resnet9", input: [3, 32, 32], classes: 10 },
  mlp: { kind: "mlp", input: [3, 32, 32], classes: 10, hidden: [512, 256] },
};
const config = configs[a.model!];
if (!config) throw new Error(`--model must be one of ${Object.keys(configs).join(", ")}`);

const seed = num("seed", a.seed);
const full = await loadCifar10(a.data!, { split: "train" }); // a wrong path fails before the slow device set-up
const train = seededSubset(full, Math.min(full.n, num("train", a.train)), seed);
const test = await loadCifar10(a.data!, { split: "test" });
const rt = await getRuntime();
console.error(`adapter: ${rt.adapterName}`);
await autotuneMatmul(rt, { log: (s) => console.error(s) });
const t0 = performance.now();
const model = buildModel(rt, config, seed);
console.error(`${a.model}: ${parameterCount(model)} parameters, ${train.n} training images`);
const epochs = num("epochs", a.epochs);
await trainModel(rt, model, uploadDataset(rt, train), {
  epochs,
  batchSize: num("batch", a.batch),
  lr: num("lr", a.lr),
  seed,
}, {
  onProgress: (p) =>
    progressBar(`epoch ${p.epoch + 1}/${p.epochs}`, p.batch, p.batches, `${p.imagesPerSecond.toFixed(0)} img/s`),
  onEpoch: (e) =>
    console.error(
      `epoch ${e.epoch + 1}: loss ${e.loss.toFixed(3)}, train accuracy ${(100 * e.accuracy).toFixed(1)}%, ${
        e.seconds.toFixed(1)
      } s`,
    ),
});
const ev = await evaluate(rt, model, uploadDataset(rt, test));
const seconds = (performance.now() - t0) / 1000;
await saveModel(rt, model, a.out!, { seed, epochs, train: train.n, test_accuracy: ev.accuracy });
console.log(
  JSON.stringify({
    model: a.model,
    train: train.n,
    epochs,
    test_accuracy: ev.accuracy,
    seconds,
    checkpoint: a.out,
    adapter: rt.adapterName,
  }),
);
