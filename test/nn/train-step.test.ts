import { describe, expect, it } from "vitest";
import { crossEntropy, crossEntropyRef } from "../../kernels/loss.ts";
import { sgdStep, sgdStepRef } from "../../kernels/sgd.ts";
import { implicitTile, poolFolds } from "../../kernels/conv2d.ts";
import { fill } from "../../kernels/fill.ts";
import { winogradWins } from "../../kernels/winograd.ts";
import { buildModel, type ModelConfig } from "../../src/nn/models.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

// One SGD step on the device against the float64 twin. Values are O(1); parameters after the step are
// compared relative to max(|want|, 1). f32 forward/backward through a few layers stays within 1e-4.
const RTOL = 1e-4;

const MODELS: [string, ModelConfig, number][] = [
  ["mlp", { kind: "mlp", input: [3, 5, 7], classes: 10, hidden: [17, 9] }, 6],
  ["small-cnn", { kind: "small-cnn", input: [3, 9, 8], classes: 10, widths: [4, 6, 5] }, 5],
  ["small-cnn without batch norm", {
    kind: "small-cnn",
    input: [1, 8, 8],
    classes: 3,
    widths: [3, 5],
    batchNorm: false,
  }, 4],
  ["resnet9", { kind: "resnet9", input: [3, 16, 16], classes: 10, widths: [4, 6, 8, 5] }, 3],
  // The second convolution (16 channels, 8x8) trains through the Winograd kernels.
  [
    "small-cnn with a Winograd convolution",
    { kind: "small-cnn", input: [3, 16, 16], classes: 10, widths: [16, 16, 8] },
    2,
  ],
];

describe("one training step matches the CPU twin", () => {
  it("takes the Winograd convolution where it should", () => {
    const geom = { kh: 3, kw: 3, stride: 1, pad: 1 };
    expect([winogradWins({ C: 3, N: 2, H: 16, W: 16 }, geom), winogradWins({ C: 16, N: 2, H: 8, W: 8 }, geom)])
      .toEqual([false, true]);
  });
  for (const [name, config, B] of MODELS) {
    it(name, async () => {
      const rt = await testRuntime();
      const seed = testSeed(`train step ${name}`);
      // A draw can put a ReLU input or a max-pool contest within f32 rounding of its kink; then device and
      // twin route one gradient differently (seen: 1 seed in CI, error 2e-3 on one weight). Such a draw
      // gets one redraw; a real bug fails both.
      try {
        await oneStep(rt, name, config, B, seed);
      } catch (e) {
        console.log(`[train step ${name}] seed ${seed}: ${(e as Error).message}; redrawing with seed ${seed + 1}`);
        await oneStep(rt, name, config, B, seed + 1);
      }
    });
  }
});

// Eval: where the implicit convolution runs (stride 1, vec4 rows, exact register-blocked tiles), each
// convolution's batch norm and relu, and a max pool after them where the tile allows, are folded into its kernel
// (Sequential.forward).
describe("the eval forward matches the CPU twin", () => {
  it("small-cnn with every batch norm (and one max pool) folded into its convolution", async () => {
    const rt = await testRuntime();
    const seed = testSeed("eval forward folded");
    const rand = mulberry32(seed);
    const n = 8;
    const model = buildModel(rt, { kind: "small-cnn", input: [3, 16, 16], classes: 10, widths: [16, 32, 16] }, seed);
    const geom = { kh: 3, kw: 3, stride: 1, pad: 1 };
    for (const [C, H, O] of [[3, 16, 16], [16, 8, 32], [32, 4, 16]]) {
      expect(implicitTile({ C, N: n, H, W: H, O }, geom), `implicit conv ${C}->${O} at ${H}x${H}`).not.toBe(undefined);
    }
    // The first convolution's max pool folds too; the second's (32 channels, 8x8) does not.
    expect([poolFolds({ C: 3, N: n, H: 16, W: 16, O: 16 }, geom), poolFolds({ C: 16, N: n, H: 8, W: 8, O: 32 }, geom)])
      .toEqual([true, false]);
    // Batch-norm parameters and running statistics away from their initial values.
    for (const p of model.params.filter((q) => q.name.includes(".bn."))) {
      const v = randomF32(rand, p.value.size).map((x) => (p.name.endsWith("running_var") ? 0.5 + Math.abs(x) : x));
      p.value.release();
      p.value = rt.upload(v, p.shape);
      p.host = Float64Array.from(v);
    }
    const xData = randomF32(rand, 3 * n * 16 * 16, -2, 2);
    const logits = model.net.forward(rt, rt.upload(xData, [3, n, 16, 16]), "eval");
    const want = model.net.forwardRef({ shape: [3, n, 16, 16], data: Float64Array.from(xData) }, "eval");
    assertClose(await rt.read(logits), want.data, { rtol: RTOL }, "eval logits");
  });
});

async function oneStep(
  rt: Awaited<ReturnType<typeof testRuntime>>,
  name: string,
  config: ModelConfig,
  B: number,
  seed: number,
): Promise<void> {
  const rand = mulberry32(seed);
  const model = buildModel(rt, config, seed);
  const [c, h, w] = model.input;
  const xData = randomF32(rand, c * B * h * w, -2, 2);
  const labels = Uint32Array.from({ length: B }, () => randInt(rand, 0, model.classes - 1));
  const hyper = { lr: 0.1, momentum: 0.9, weightDecay: 5e-4, nesterov: true };
  const eps = 0.1;

  // Device
  const x = rt.upload(xData, [c, B, h, w]);
  const logits = model.net.forward(rt, x, "train");
  const loss = crossEntropy(rt, logits, rt.upload(labels, [B], "u32"), { eps, gradScale: 1 / B });
  model.net.backward(rt, loss.dlogits, { needDx: false });
  const trainable = model.params.filter((p) => p.trainable);
  for (const p of trainable) {
    p.velocity = fill(rt, rt.empty(p.shape), 0);
    sgdStep(rt, p.value, p.grad!, p.velocity, hyper);
  }

  // Twin
  const out = model.net.forwardRef({ shape: [c, B, h, w], data: Float64Array.from(xData) }, "train");
  const ref = crossEntropyRef(out.data, labels, model.classes, B, eps, 1 / B);
  model.net.backwardRef({ shape: out.shape, data: ref.dlogits });
  for (const p of trainable) sgdStepRef(p.host!, p.hostGrad!, new Float64Array(p.host!.length), hyper);

  const got = await rt.readMany([loss.value, logits, ...model.params.map((p) => p.value)]);
  assertClose(got[0], ref.value, { rtol: RTOL }, `${name}: loss`);
  assertClose(got[1], out.data, { rtol: RTOL }, `${name}: logits`);
  model.params.forEach((p, i) => assertClose(got[2 + i], p.host!, { rtol: RTOL }, `${name}: ${p.name} after one step`));
  expect(trainable.length).toBeGreaterThan(2);
}
