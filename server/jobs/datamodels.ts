// The "datamodels" job: `npm run detect -- --attribution datamodels` cut into volunteer shards.
//   train/0       (nondeterministic, spot-checked): a model on the whole set, for the baselines and the
//                 "before" evaluation (as the pipeline's model 0)
//   subset/m      (nondeterministic, spot-checked): subset model m of the regression, trained on its
//                 seeded alpha-mask (src/datamodels/masks.ts) -> checkpoint + margins on all n
//   heldout/m     (the same, on the held-out mask stream; only with ldsModels > 0): scores the fit (LDS)
//   finish        (deterministic, quorum 2; needs all of them): on a volunteer with WebGPU, the accepted margins
//                 streamed into the regression (fitDatamodels), then the same dense search, budget and report as
//                 runDetect (src/detect/job-finish.ts), without removal and retraining.
// Masks are never sent: every worker and the coordinator regenerate them from (seed, split, m).
import { z } from "zod";
import { subsetSeed } from "../../src/datamodels/masks.ts";
import { DetectConfig } from "../../src/detect/config.ts";
import { datamodelsFinish } from "../../src/detect/job-finish.ts";
import { ensembleSeed } from "../../src/detect/training-set.ts";
import { ModelConfig } from "../../src/nn/models.ts";
import { Recipe } from "../../src/nn/train.ts";
import { defineJobKind, FINISH } from "../../src/protocol/job-kind.ts";
import { DATAMODELS_FINISH, DatamodelsFinishPayload, type Split, subsetKey, TRAIN } from "../../src/protocol/shards.ts";
import {
  bitwiseEqual,
  datasetRef,
  finishesAgree,
  finishShard,
  JobData,
  plannedExamples,
  recomputeFinish,
  spotCheckTrain,
  trainingSet,
  trainShard,
} from "./train-shard.ts";

export const DatamodelsSpec = DetectConfig.pick({
  testSize: true,
  seed: true,
  attackConfig: true,
  model: true,
  recipe: true,
  dmModels: true,
  dmAlpha: true,
  dmPenalty: true,
  ldsModels: true,
  restarts: true,
  budget: true,
}).extend(JobData.shape);
export type DatamodelsSpec = z.output<typeof DatamodelsSpec>;

const FULL_MODEL = `${TRAIN}/0`;

export const datamodels = defineJobKind<DatamodelsSpec>({
  name: "datamodels",
  spec: DatamodelsSpec as unknown as z.ZodType<DatamodelsSpec>,

  plan(s) {
    trainingSet(s).catch(() => {}); // decode now, not in the first spot check
    const n = plannedExamples(s);
    const dataset = datasetRef(s);
    const model = ModelConfig.parse(s.model), recipe = Recipe.parse(s.recipe);
    const shards = [
      trainShard(FULL_MODEL, { dataset, model, recipe, m: 0, seed: ensembleSeed(s.seed, 0) }, n, s),
    ];
    const subsets = (split: Split, count: number) => {
      for (let m = 0; m < count; m++) {
        const mask = { alpha: s.dmAlpha, seed: s.seed, split, model: m };
        shards.push(
          trainShard(
            subsetKey(split, m),
            { dataset, model, recipe, m, seed: subsetSeed(s.seed, split, m), mask },
            n,
            s,
          ),
        );
      }
    };
    subsets("train", s.dmModels);
    subsets("heldout", s.ldsModels);
    const finish: DatamodelsFinishPayload = {
      dataset,
      cfg: DetectConfig.parse({ ...s, attribution: "datamodels" }),
      model0: FULL_MODEL,
    };
    shards.push(finishShard(s, DATAMODELS_FINISH, finish, shards, n));
    return shards;
  },

  agree: (shard, a, b) => (shard.key === FINISH ? finishesAgree(a, b) : bitwiseEqual(a, b)),

  recompute: (s, shard, inputs) =>
    shard.key === FINISH
      ? recomputeFinish(s, inputs, (c) => datamodelsFinish(DatamodelsFinishPayload.parse(shard.payload), c))
      : Promise.resolve(undefined),

  spotCheck: (s, shard, result, _inputs, seed, depth) => spotCheckTrain(s, shard, result, seed, depth),
});
