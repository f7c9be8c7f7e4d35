// Payloads of the trak and datamodels jobs' shards: what the coordinator plans (server/jobs/) and what the
// volunteers' executors (./executors.ts) parse. Everything a shard needs is in its payload, so any
// worker reproduces the job's training set and models from it.
import { z } from "zod";
import { ModelConfig } from "../nn/models.ts";
import { Recipe } from "../nn/train.ts";
import { TrainingSetSpec } from "../detect/training-set.ts";
import { type Split, SPLITS } from "../datamodels/masks.ts";

export type { Split };

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

/**
 * A trak job's finish shard (src/protocol/job-kind.ts FINISH): the accepted features of every model, scored
 * and reported as `npm run detect` does (src/detect/job-finish.ts).
 */
export const TrakFinishPayload = z.object({
  dataset: DatasetRef,
  /** The job's detect settings (src/detect/config.ts DetectConfig); `data` names the served dataset. */
  cfg: z.record(z.string(), z.unknown()),
  models: z.number().int().positive(),
  k: z.number().int().positive(),
  /** The featurize shards' example ranges, the same for every model. */
  ranges: z.array(z.tuple([z.number().int().min(0), z.number().int().positive()])),
  /** The train shard whose model the baselines and the evaluation use. */
  model0: z.string(),
});
export type TrakFinishPayload = z.output<typeof TrakFinishPayload>;

/** A datamodels job's finish shard: the accepted subset models' margins regressed on their masks, then scored
 *  and reported (src/detect/job-finish.ts). The masks come from cfg (dmAlpha, seed), the sizes from cfg too. */
export const DatamodelsFinishPayload = TrakFinishPayload.pick({ dataset: true, cfg: true, model0: true });
export type DatamodelsFinishPayload = z.output<typeof DatamodelsFinishPayload>;

/** Executor names. */
export const TRAIN = "train";
export const FEATURIZE = "featurize";
export const TRAK_FINISH = "trak-finish";
export const DATAMODELS_FINISH = "datamodels-finish";

/** The key of a datamodels job's subset model m of `split`. */
export const subsetKey = (split: Split, m: number) => `${split === "train" ? "subset" : "heldout"}/${m}`;

/** The key of model m's featurize shard of examples [start, end). */
export const featurizeKey = (m: number, start: number, end: number) => `${FEATURIZE}/${m}/${start}-${end}`;

/** Output of a train shard with segments > 1: the states after each segment but the last, in one
 *  safetensors file (src/nn/checkpoint.ts `stateOf`). */
export const STATES = "states";
