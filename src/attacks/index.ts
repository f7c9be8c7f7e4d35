// The attack suite: one entry per attack, a generic `poison` (async, because the label-consistent
// attack runs PGD on the device) and `applyTrigger` for test time. Pure CPU except label-consistent
// poisoning, which loads the GPU code lazily.
import type { Dataset } from "../data/dataset.ts";
import { badnets, type BadNetsConfig, BadNetsConfig as BadNetsSchema, badnetsTrigger } from "./badnets.ts";
import { blended, type BlendedConfig, BlendedConfig as BlendedSchema, blendedTrigger } from "./blended.ts";
import {
  labelConsistent,
  type LabelConsistentConfig,
  LabelConsistentConfig as LcSchema,
  type LabelConsistentContext,
  labelConsistentTrigger,
} from "./label-consistent.ts";
import { sig, type SigConfig, SigConfig as SigSchema, sigTrigger } from "./sig.ts";
import {
  adapBlend,
  type AdapBlendConfig,
  AdapBlendConfig as AdapBlendSchema,
  adapBlendTrigger,
  adapPatch,
  type AdapPatchConfig,
  AdapPatchConfig as AdapPatchSchema,
  adapPatchTrigger,
} from "./adaptive.ts";
import { tact, type TactConfig, TactConfig as TactSchema, tactTrigger } from "./tact.ts";
import { type AttackName, type AttackResult, ATTACKS, parseConfig } from "./types.ts";
import { wanet, type WanetConfig, WanetConfig as WanetSchema, wanetTrigger } from "./wanet.ts";

export * from "./types.ts";
export { adapBlend, adapPatch, badnets, blended, labelConsistent, sig, tact, wanet };
export type {
  AdapBlendConfig,
  AdapPatchConfig,
  BadNetsConfig,
  BlendedConfig,
  LabelConsistentConfig,
  SigConfig,
  TactConfig,
  WanetConfig,
};

export interface AttackConfigs {
  badnets: BadNetsConfig;
  blended: BlendedConfig;
  sig: SigConfig;
  wanet: WanetConfig;
  "label-consistent": LabelConsistentConfig;
  "adap-blend": AdapBlendConfig;
  "adap-patch": AdapPatchConfig;
  tact: TactConfig;
}

export const SCHEMAS = {
  badnets: BadNetsSchema,
  blended: BlendedSchema,
  sig: SigSchema,
  wanet: WanetSchema,
  "label-consistent": LcSchema,
  "adap-blend": AdapBlendSchema,
  "adap-patch": AdapPatchSchema,
  tact: TactSchema,
} as const;

export function checkAttackName(name: string): AttackName {
  if (!(ATTACKS as readonly string[]).includes(name)) {
    throw new Error(`unknown attack "${name}"; expected one of ${ATTACKS.join(", ")}`);
  }
  return name as AttackName;
}

/** Validates a config (defaults filled in), throwing one readable error listing every bad field. */
export function parseAttackConfig<A extends AttackName>(attack: A, config: AttackConfigs[A] | unknown) {
  return parseConfig(attack, SCHEMAS[checkAttackName(attack)], config);
}

/** Poisons a training set with any attack. `ctx` (runtime, clean model) is used by label-consistent only. */
export async function poison<A extends AttackName>(
  attack: A,
  ds: Dataset,
  config: AttackConfigs[A],
  ctx: LabelConsistentContext = {},
): Promise<AttackResult> {
  switch (checkAttackName(attack)) {
    case "badnets":
      return badnets(ds, config as BadNetsConfig);
    case "blended":
      return blended(ds, config as BlendedConfig);
    case "sig":
      return sig(ds, config as SigConfig);
    case "wanet":
      return wanet(ds, config as WanetConfig);
    case "label-consistent":
      return await labelConsistent(ds, config as LabelConsistentConfig, ctx);
    case "adap-blend":
      return adapBlend(ds, config as AdapBlendConfig);
    case "adap-patch":
      return adapPatch(ds, config as AdapPatchConfig);
    case "tact":
      return tact(ds, config as TactConfig);
  }
}

/**
 * Test time: the attack's trigger applied to every image (a copy; labels untouched). For the dirty-label
 * attacks this is exactly what poisoning did to the poisoned images; for label-consistent it is the
 * patch without the PGD perturbation; for WaNet the trigger warp without noise; for the adaptive attacks the
 * whole trigger (poisons carry part of it).
 */
export function applyTrigger<A extends AttackName>(attack: A, config: AttackConfigs[A], ds: Dataset): Dataset {
  switch (checkAttackName(attack)) {
    case "badnets":
      return badnetsTrigger(ds, config as BadNetsConfig);
    case "blended":
      return blendedTrigger(ds, config as BlendedConfig);
    case "sig":
      return sigTrigger(ds, config as SigConfig);
    case "wanet":
      return wanetTrigger(ds, config as WanetConfig);
    case "label-consistent":
      return labelConsistentTrigger(ds, config as LabelConsistentConfig);
    case "adap-blend":
      return adapBlendTrigger(ds, config as AdapBlendConfig);
    case "adap-patch":
      return adapPatchTrigger(ds, config as AdapPatchConfig);
    case "tact":
      return tactTrigger(ds, config as TactConfig);
  }
}

/**
 * The true classes of the test images an attack's success rate counts: every class but the target, or, for
 * a source-specific attack (TaCT), its source classes.
 */
export function asrClasses<A extends AttackName>(attack: A, config: AttackConfigs[A], classes: number): number[] {
  const c = parseAttackConfig(attack, config) as { targetClass: number; sourceClasses?: number[] };
  if (attack === "tact") return c.sourceClasses!;
  return Array.from({ length: classes }, (_, k) => k).filter((k) => k !== c.targetClass);
}
