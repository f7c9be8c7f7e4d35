import { describe, expect, it } from "vitest";
import { uploadDataset } from "../../kernels/batch.ts";
import { encodeSafetensors, type SafetensorsFile } from "../../src/checkpoint/safetensors.ts";
import { checkpointMetadata, readParameters } from "../../src/nn/checkpoint.ts";
import { buildModel } from "../../src/nn/models.ts";
import { REPLAY_TOLERANCE, replaySegment, type TrainingRun } from "../../src/nn/replay.ts";
import { trainModel } from "../../src/nn/train.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, testSeed } from "../support/rng.ts";

describe("a training run cut into segments", () => {
  it("replays each segment exactly from its state; a run on other examples is far from the replay", async () => {
    const rt = await testRuntime();
    const seed = testSeed("segment replay");
    const rand = mulberry32(seed);
    const n = 96;
    const images = Uint8Array.from({ length: n * 3 * 12 * 12 }, () => randInt(rand, 0, 255));
    const labels = Array.from({ length: n }, () => randInt(rand, 0, 3));
    const ds = uploadDataset(rt, { images, labels, n, c: 3, h: 12, w: 12 });
    const indices = Uint32Array.from({ length: 80 }, (_, i) => i);
    const run: TrainingRun = {
      model: { kind: "small-cnn", input: [3, 12, 12], classes: 4, widths: [4, 8] },
      recipe: { epochs: 2.5, batchSize: 16, lr: 0.05 },
      seed,
      indices,
      segments: 4,
    };
    // The states a volunteer uploads: after segments 1..3 (with velocities), and the final model.
    const train = async (idx: ArrayLike<number>, segments: number) => {
      const model = buildModel(rt, run.model, seed);
      const states: SafetensorsFile[] = [];
      const state = async (velocities: boolean) => ({
        tensors: await readParameters(rt, model, { velocities }),
        metadata: checkpointMetadata(model),
      });
      await trainModel(rt, model, ds, { ...run.recipe, seed }, {
        indices: idx,
        segments,
        onSegment: async (i) => void (states[i] = await state(true)),
      });
      states[segments] = await state(false);
      return states;
    };
    const bytes = (f: SafetensorsFile) => Array.from(encodeSafetensors(f.tensors, f.metadata));
    const honest = await train(indices, 4);
    expect(honest.filter(Boolean).length).toBe(4);
    // Cutting the run changes nothing: the final model equals one trained in one piece.
    expect(bytes((await train(indices, 1))[1])).toEqual(bytes(honest[4]));

    for (let s = 0; s < 4; s++) {
      const r = await replaySegment(rt, ds, run, s, s === 0 ? null : honest[s], honest[s + 1]);
      console.log(`segment ${s}: moved ${r.moved.toFixed(4)}, replay off by ${r.distance.toExponential(2)}`);
      expect(r.moved).toBeGreaterThan(0);
      expect(r.relative).toBeLessThan(1e-6);
    }
    // A cheater trains on the examples minus 4 of them (say, the poisons) and uploads its own states:
    // every segment replayed on the real examples lands beyond the coordinator's tolerance (seeds gave 0.050 up).
    const cheat = await train(indices.slice(4), 4);
    for (let s = 0; s < 4; s++) {
      const r = await replaySegment(rt, ds, run, s, s === 0 ? null : cheat[s], cheat[s + 1]);
      console.log(`cheater's segment ${s}: relative distance ${r.relative.toFixed(3)}`);
      expect(r.relative).toBeGreaterThan(REPLAY_TOLERANCE);
    }
    // A state of another architecture is refused before anything runs.
    const small = buildModel(rt, { kind: "small-cnn", input: [3, 12, 12], classes: 4, widths: [4, 4] }, seed);
    const other = { tensors: await readParameters(rt, small), metadata: checkpointMetadata(small) };
    await expect(replaySegment(rt, ds, run, 1, other, honest[2])).rejects.toThrow(/is not the expected/);
  });
});
