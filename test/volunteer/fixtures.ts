// A TRAK job small enough for the CPU adapter: 256 CIFAR-10 images, a tiny CNN, one epoch, k = 64,
// two featurize shards per model.
import type { DetectConfig } from "../../src/detect/config.ts";

export const TINY = {
  train: 256,
  testSize: 300,
  models: 1,
  k: 64,
  shardSize: 128,
  restarts: 3,
  recipe: { epochs: 1, batchSize: 32, lr: 0.05, cropPad: 0, flip: false },
  model: { kind: "small-cnn", input: [3, 32, 32], classes: 10, widths: [8, 16, 16] },
} satisfies DetectConfig & { shardSize: number };

/** TINY on an uploaded dataset of 400 training images (its name is the job's `data`): 256 of them in one
 *  featurize shard, with the jobs' default attack (on a user's own data runDetect plants none unless told). */
export const EDGE_JOB = { ...TINY, train: 256, shardSize: 256, attack: "badnets" as const };
