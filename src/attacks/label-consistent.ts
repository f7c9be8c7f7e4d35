// Label-consistent backdoor (Turner et al. 2019), clean label: target-class images are made hard to
// classify by an untargeted L-inf PGD perturbation against a model trained on the clean data (our own
// training stack, on the device), then stamped with the BadNets patch. Labels are never changed, so the
// model can only fit these images by leaning on the patch. At test time the trigger is the patch alone.
//
// The config and the trigger are pure; `labelConsistent` needs a runtime and loads the GPU code lazily
// (./pgd.ts), so this module imports cleanly where there is no WebGPU.
import { z } from "zod";
import type { Dataset } from "../data/dataset.ts";
import type { Runtime } from "../gpu/runtime.ts";
import type { Model } from "../nn/models.ts";
import { buildPatch, checkPatchFits, patchShape, range, stampPatch } from "./badnets.ts";
import {
  type AttackResult,
  commonShape,
  copyDataset,
  parseConfig,
  SALT,
  selectPoisoned,
  streamSeed,
  triggerSeedOf,
} from "./types.ts";

export const LabelConsistentConfig = z.strictObject({
  ...commonShape,
  ...patchShape,
  /** L-inf radius, step size (both in pixel levels of 255) and steps of PGD. */
  eps: z.number().min(0).max(255).default(8),
  stepSize: z.number().positive().default(2),
  steps: z.number().int().min(0).default(10),
  /** Start from a uniform point of the eps-ball (Madry et al.). */
  randomStart: z.boolean().default(true),
  /** Images per PGD batch on the device. */
  pgdBatch: z.number().int().min(1).default(128),
  /** Input normalisation of the model (default: CIFAR-10's, as in the training Recipe). */
  mean: z.array(z.number()).optional(),
  std: z.array(z.number().positive()).optional(),
  /** The surrogate trained on the clean data when no model is passed. */
  surrogate: z.strictObject({
    widths: z.array(z.number().int().positive()).default([16, 32, 64]),
    epochs: z.number().positive().default(4),
    lr: z.number().positive().default(0.05),
    batchSize: z.number().int().min(2).default(64),
  }).default({ widths: [16, 32, 64], epochs: 4, lr: 0.05, batchSize: 64 }),
});
export type LabelConsistentConfig = z.input<typeof LabelConsistentConfig>;
export type LabelConsistentParsed = z.output<typeof LabelConsistentConfig>;

export interface LabelConsistentContext {
  /** Default: the process-wide runtime. */
  rt?: Runtime;
  /** A model trained on the clean data; default: a small CNN trained on `ds` (config.surrogate). */
  model?: Model;
  log?: (line: string) => void;
}

export async function labelConsistent(
  ds: Dataset,
  config: LabelConsistentConfig = {},
  ctx: LabelConsistentContext = {},
): Promise<AttackResult<LabelConsistentParsed>> {
  const c = parseConfig("label-consistent", LabelConsistentConfig, config);
  const indices = selectPoisoned("label-consistent", ds, c);
  const poisoned = copyDataset(ds, `${ds.name}+label-consistent`);
  checkPatchFits(c, buildPatch(c, ds.c, "label-consistent"), ds, "label-consistent"); // before the slow part
  if (indices.length > 0 && c.steps > 0 && c.eps > 0) {
    const { pgdAttack, trainSurrogate } = await import("./pgd.ts");
    const { getRuntime } = await import("../gpu/runtime.ts");
    const rt = ctx.rt ?? (await getRuntime());
    const norm = normalisation(c, ds.c);
    const model = ctx.model ?? (await trainSurrogate(rt, ds, { ...c.surrogate, seed: c.seed, ...norm }, ctx.log));
    const size = ds.c * ds.h * ds.w;
    const images = new Uint8Array(indices.length * size);
    indices.forEach((i, j) => images.set(ds.images.subarray(i * size, (i + 1) * size), j * size));
    const labels = Uint8Array.from(indices, (i) => ds.labels[i]);
    const adv = await pgdAttack(rt, model, images, labels, ds, {
      eps: c.eps,
      stepSize: c.stepSize,
      steps: c.steps,
      randomStart: c.randomStart,
      batchSize: c.pgdBatch,
      seed: streamSeed(c.seed, SALT.pgd),
      ...norm,
      log: ctx.log,
    });
    indices.forEach((i, j) => poisoned.images.set(adv.subarray(j * size, (j + 1) * size), i * size));
  }
  stampPatch(poisoned, indices, c, triggerSeedOf(c), "label-consistent");
  return {
    poisoned,
    manifest: { attack: "label-consistent", config: c, indices, originalLabels: indices.map((i) => ds.labels[i]) },
  };
}

export function normalisation(
  c: Pick<LabelConsistentParsed, "mean" | "std">,
  channels: number,
): { mean: number[]; std: number[] } {
  const mean = c.mean ?? (channels === 3 ? [0.4914, 0.4822, 0.4465] : undefined);
  const std = c.std ?? (channels === 3 ? [0.247, 0.2435, 0.2616] : undefined);
  if (!mean || !std || mean.length !== channels || std.length !== channels) {
    throw new Error(
      `label-consistent: ${channels}-channel images need mean and std with ${channels} values each (the defaults are ` +
        `CIFAR-10's)`,
    );
  }
  return { mean, std };
}

/** Test time: the patch alone on every image (no perturbation). */
export function labelConsistentTrigger(ds: Dataset, config: LabelConsistentConfig = {}): Dataset {
  const c = parseConfig("label-consistent", LabelConsistentConfig, config);
  const out = copyDataset(ds, `${ds.name}+label-consistent-trigger`);
  stampPatch(out, range(ds.n), c, triggerSeedOf(c), "label-consistent");
  return out;
}
