// Payloads of the trak and datamodels jobs' shards: what the coordinator plans (server/jobs/) and what the
// volunteers' executors (./executors.ts) parse. Everything a shard needs is in its payload, so any
// worker reproduces the job's training set and models from it.
import { z } from "zod";
import { ModelConfig } from "../nn/models.ts";
import { Recipe } from "../nn/train.ts";
import { TrainingSetSpec } from "../detect/training-set.ts";
import { SPLITS } from "../datamodels/masks.ts";

/** The poisoned training set: a dataset the coordinator serves by name, then the seeded subset + attack. */
export const DatasetRef = TrainingSetSpec.extend({
  /** File name under the coordinator's /v1/datasets/ (see server/jobs/datasets.ts). */
  data: z.string().regex(/^[\w.-]+$/, "a file name"),
});
export type DatasetRef = z.output<typeof DatasetRef>;

export const TrainPayload = z.object({
  dataset: DatasetRef,
  model: ModelConfig,
  recipe: Recipe,
  /** Ensemble member (or subset model) and its initialisation/shuffling seed. */
  m: z.number().int().min(0),
  seed: z.number().int(),
  /** The run is cut into this many segments; the result carries the state after each but the last
   *  (`STATES`), for a verifier to replay one (src/nn/replay.ts). */
  segments: z.number().int().min(1).default(1),
  /** Datamodels: train on this seeded subset only (src/datamodels/masks.ts); margins are still on all n. */
  mask: z.object({
    alpha: z.number().gt(0).lte(1),
    seed: z.number().int(),
    split: z.enum(SPLITS),
    model: z.number().int().min(0),
  }).optional(),
});
export type TrainPayload = z.output<typeof TrainPayload>;

export const FeaturizePayload = z.object({
  dataset: DatasetRef,
  /** Accepted train shard whose checkpoint is featurised. */
  checkpoint: z.string(),
  k: z.number().int().positive(),
  projection: z.enum(["dense", "factored"]),
  /** Projection seed (shared by the ensemble) and the member index (its own R). */
  seed: z.number().int(),
  modelIndex: z.number().int().min(0),
  /** Training examples [start, end). */
  start: z.number().int().min(0),
  end: z.number().int().positive(),
  /** Examples per tile; the pipeline's 64, so tiles (and their rounding) match a single-machine run. */
  batchSize: z.number().int().positive().default(64),
});
export type FeaturizePayload = z.output<typeof FeaturizePayload>;

/** Executor names. */
export const TRAIN = "train";
export const FEATURIZE = "featurize";

/** Output of a train shard with segments > 1: the states after each segment but the last, in one
 *  safetensors file (src/nn/checkpoint.ts `stateOf`). */
export const STATES = "states";
