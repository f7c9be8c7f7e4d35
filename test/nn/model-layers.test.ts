// Networks described as data (`kind: "layers"`): the built-in small-cnn and resnet9, written by hand as
// the layer lists a user would put in --model-config, give the same parameters and the same logits; a
// list with other geometry (strided 5x5 conv, average pool) trains; mistakes are one clear error.
import { describe, expect, it } from "vitest";
import { uploadDataset } from "../../kernels/batch.ts";
import { buildModel, type LayerSpec, type ModelConfig } from "../../src/nn/models.ts";
import { trainModel } from "../../src/nn/train.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, testSeed } from "../support/rng.ts";

const cbr = (out: number): LayerSpec[] => [{ type: "conv", out }, { type: "batchnorm" }, { type: "relu" }];

const PAIRS: [string, ModelConfig, LayerSpec[]][] = [
  ["small-cnn", { kind: "small-cnn", input: [3, 12, 12], classes: 4, widths: [4, 8] }, [
    ...cbr(4),
    { type: "maxpool" },
    ...cbr(8),
    { type: "maxpool" },
    { type: "globalpool", kind: "max" },
    { type: "dense", out: 4 },
  ]],
  ["small-cnn without batch norm", {
    kind: "small-cnn",
    input: [1, 12, 12],
    classes: 3,
    widths: [4],
    batchNorm: false,
  }, [
    { type: "conv", out: 4, bias: true },
    { type: "relu" },
    { type: "maxpool" },
    { type: "globalpool" },
    { type: "dense", out: 3 },
  ]],
  ["resnet9", { kind: "resnet9", input: [3, 16, 16], classes: 4, widths: [4, 8, 8, 8] }, [
    ...cbr(4),
    ...cbr(8),
    { type: "maxpool" },
    { type: "residual", layers: [...cbr(8), ...cbr(8)] },
    ...cbr(8),
    { type: "maxpool" },
    ...cbr(8),
    { type: "maxpool" },
    { type: "residual", layers: [...cbr(8), ...cbr(8)] },
    { type: "globalpool" },
    { type: "dense", out: 4, bias: false },
    { type: "scale", factor: 0.125 },
  ]],
];

describe("models as layer lists", () => {
  for (const [name, builtIn, layers] of PAIRS) {
    it(`${name} written as layers gives the same parameters and logits`, async () => {
      const rt = await testRuntime();
      const seed = testSeed(`layers ${name}`);
      const cfg = builtIn as { input: [number, number, number]; classes: number };
      const a = buildModel(rt, builtIn, seed);
      const b = buildModel(rt, { kind: "layers", input: cfg.input, classes: cfg.classes, layers }, seed);
      expect(b.params.map((p) => p.shape)).toEqual(a.params.map((p) => p.shape));
      const [c, h, w] = cfg.input, n = 5;
      const rand = mulberry32(seed);
      const x = Float32Array.from({ length: c * n * h * w }, () => 2 * rand() - 1);
      const out = async (m: typeof a) => {
        const y = m.net.forward(rt, rt.upload(x, [c, n, h, w]), "eval");
        return Array.from((await rt.read(y)) as Float32Array);
      };
      const ya = await out(a);
      expect(ya.length).toBe(cfg.classes * n);
      expect(ya.every(Number.isFinite)).toBe(true);
      expect(await out(b)).toEqual(ya);
    });
  }

  it("a network of other geometry trains (strided 5x5 conv, average pool, flatten, two dense layers)", async () => {
    const rt = await testRuntime();
    const seed = testSeed("layers train");
    const rand = mulberry32(seed);
    const n = 32;
    const images = Uint8Array.from({ length: n * 1 * 14 * 14 }, () => randInt(rand, 0, 255));
    const labels = Array.from({ length: n }, (_, i) => i % 3);
    // Class = brightness of the top-left quarter, so there is something to learn.
    for (let i = 0; i < n; i++) {
      for (let y = 0; y < 7; y++) for (let x = 0; x < 7; x++) images[i * 196 + y * 14 + x] = 60 + 80 * labels[i];
    }
    const ds = uploadDataset(rt, { images, labels, n, c: 1, h: 14, w: 14 });
    const model = buildModel(rt, {
      kind: "layers",
      input: [1, 14, 14],
      classes: 3,
      layers: [
        { type: "conv", out: 6, kernel: 5, stride: 2, bias: true },
        { type: "relu" },
        { type: "conv", out: 8, kernel: 3 },
        { type: "batchnorm" },
        { type: "relu" },
        { type: "globalpool", kind: "avg" },
        { type: "flatten" },
        { type: "dense", out: 16 },
        { type: "relu" },
        { type: "dense", out: 3 },
      ],
    }, seed);
    const stats = await trainModel(rt, model, ds, { epochs: 8, batchSize: 8, lr: 0.05, seed, cropPad: 0, flip: false });
    console.log(`layers train (seed ${seed}): loss ${stats[0].loss.toFixed(3)} -> ${stats.at(-1)!.loss.toFixed(3)}`);
    expect(stats.at(-1)!.loss).toBeLessThan(stats[0].loss);
  });

  it("refuses lists that cannot be built, naming the layer", async () => {
    const rt = await testRuntime();
    const build = (layers: LayerSpec[]) => () =>
      buildModel(rt, { kind: "layers", input: [3, 8, 8], classes: 2, layers }, 0);
    expect(build([{ type: "dense", out: 2 }])).toThrow("model layer 0: dense needs flat input");
    expect(build([{ type: "residual", layers: [{ type: "conv", out: 4 }] }, { type: "globalpool" }])).toThrow(
      "model layer 0: a residual block must keep its shape (3,1,8,8 -> 4,1,8,8)",
    );
    expect(build([{ type: "maxpool" }, { type: "maxpool" }, { type: "maxpool" }, { type: "maxpool" }])).toThrow(
      /model layer 3 \(maxpool\): output shape \[3,1,0,0\] is empty/,
    );
    expect(build([{ type: "globalpool" }, { type: "dense", out: 5 }])).toThrow(
      "model: the layers end in shape [5,1], not 2 logits",
    );
  });
});
