// Verifiable training (Proof-of-Learning style, Jia et al. 2021): a run cut into segments leaves its state
// (parameters + SGD velocities) at every segment's end, and anyone holding the data replays one segment from
// its start state and compares where it lands with the claimed end state. Data order, augmentation and
// initialisation are pure functions of the recipe's seed and the index list, so the replay takes the same
// steps; only the rounding of another adapter (or other tiles) differs.
import type { DeviceDataset } from "../../kernels/batch.ts";
import type { SafetensorsFile } from "../checkpoint/safetensors.ts";
import type { Runtime } from "../gpu/runtime.ts";
import { modelFromSafetensors } from "./checkpoint.ts";
import { buildModel, type Model, type ModelConfig, releaseModel } from "./models.ts";
import { type Recipe, trainModel } from "./train.ts";

/** A replayed segment may land at most this far from the claimed state, relative to how far the segment
 *  moved it (`replaySegment`). Trained on llvmpipe and replayed on SwiftShader, honest segments of 4 steps
 *  measured up to 0.0102 (most below 1e-5); runs on other data from 0.044 up (server/README.md). */
export const REPLAY_TOLERANCE = 0.02;

export interface TrainingRun {
  model: ModelConfig;
  recipe: Recipe;
  /** Initialisation seed (buildModel) and the recipe's shuffling seed. */
  seed: number;
  /** The examples trained on (a subset mask); default all. */
  indices?: ArrayLike<number>;
  segments: number;
}

export interface SegmentReplay {
  segment: number;
  /** ||replayed - claimed end||, over every parameter (running statistics included). */
  distance: number;
  /** ||claimed end - start||: how far the segment moved the parameters. */
  moved: number;
  /** distance / moved: 0 for an exact replay, about 1 or more for a segment trained on other data. */
  relative: number;
}

/**
 * Replay segment `segment` of `run` from `start` (the state after the previous segment, with velocities;
 * null: the run's initialisation) and compare with the claimed state `end` at the segment's end (velocities
 * not needed). Throws when a state is not a model of the run's architecture. The honest divergence grows
 * with the segment's length: measured in server/README.md.
 */
export async function replaySegment(
  rt: Runtime,
  ds: DeviceDataset,
  run: TrainingRun,
  segment: number,
  start: SafetensorsFile | null,
  end: SafetensorsFile,
): Promise<SegmentReplay> {
  const model: Model = start
    ? modelFromSafetensors(rt, start, `state at segment ${segment}`, run.model).model
    : buildModel(rt, run.model, run.seed);
  try {
    const before = model.params.map((p) => p.host!); // the start values, kept on the host when built
    await trainModel(rt, model, ds, { ...run.recipe, seed: run.seed }, {
      indices: run.indices,
      segments: run.segments,
      only: segment,
    });
    const after = await rt.readMany(model.params.map((p) => p.value));
    const claimed = end.tensors;
    let distance = 0, moved = 0;
    model.params.forEach((p, i) => {
      const t = claimed[p.name];
      if (!t || t.dtype !== "F32" || t.shape.join() !== p.shape.join()) {
        throw new Error(`state at segment ${segment + 1}: ${p.name} is missing or not F32 [${p.shape}]`);
      }
      const c = t.data as Float32Array;
      for (let j = 0; j < c.length; j++) {
        distance += (after[i][j] - c[j]) ** 2;
        moved += (c[j] - before[i][j]) ** 2;
      }
    });
    distance = Math.sqrt(distance);
    moved = Math.sqrt(moved);
    return { segment, distance, moved, relative: distance / Math.max(moved, 1e-30) };
  } finally {
    releaseModel(model);
  }
}
