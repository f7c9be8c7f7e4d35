import { describe, expect, it } from "vitest";
import { modelFromSafetensors, modelToSafetensors } from "../../src/nn/checkpoint.ts";
import { buildModel } from "../../src/nn/models.ts";
import { decodeSafetensors } from "../../src/checkpoint/safetensors.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randomF32, testSeed } from "../support/rng.ts";

describe("checkpoints", () => {
  it("save, load and evaluate gives identical predictions", async () => {
    const rt = await testRuntime();
    const seed = testSeed("checkpoint round trip");
    const rand = mulberry32(seed);
    const model = buildModel(rt, { kind: "resnet9", input: [3, 16, 16], classes: 10, widths: [4, 6, 8, 5] }, seed);
    // Train-mode forwards move the batch-norm running statistics away from their initial values.
    for (let i = 0; i < 2; i++) {
      model.net.forward(rt, rt.upload(randomF32(rand, 3 * 4 * 16 * 16, -2, 2), [3, 4, 16, 16]), "train").release();
    }
    const bytes = await modelToSafetensors(rt, model, { recipe: { lr: 0.1 } });
    const { model: loaded, metadata } = modelFromSafetensors(rt, bytes);
    expect(JSON.parse(metadata.recipe)).toEqual({ lr: 0.1 });
    expect(loaded.params.map((p) => p.name)).toEqual(model.params.map((p) => p.name));
    const x = rt.upload(randomF32(rand, 3 * 5 * 16 * 16, -2, 2), [3, 5, 16, 16]);
    const [a, b] = await rt.readMany([model.net.forward(rt, x, "eval"), loaded.net.forward(rt, x, "eval")]);
    expect(Array.from(b)).toEqual(Array.from(a));
    // The file is plain safetensors: names, shapes, F32, and the config in the metadata.
    const file = decodeSafetensors(bytes);
    expect(file.tensors["prep.conv.weight"].shape).toEqual([4, 27]);
    expect(JSON.parse(file.metadata.config).kind).toBe("resnet9");
  });

  it("rejects a checkpoint with a missing tensor", async () => {
    const rt = await testRuntime();
    const model = buildModel(rt, { kind: "mlp", input: [1, 2, 2], classes: 2, hidden: [3] }, 1);
    const bytes = await modelToSafetensors(rt, model);
    const file = decodeSafetensors(bytes);
    delete file.tensors["head.bias"];
    const { encodeSafetensors } = await import("../../src/checkpoint/safetensors.ts");
    expect(() => modelFromSafetensors(rt, encodeSafetensors(file.tensors, file.metadata))).toThrow(
      /missing tensor head.bias/,
    );
  });
});
