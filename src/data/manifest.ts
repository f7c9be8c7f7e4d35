// Ground truth for evaluation: which examples of a dataset are poisoned. `poison apply` writes a manifest
// (PoisonManifest below); `detect --manifest` reads that, a JSON list of indices or file paths, or an .npy
// of indices. Indices count examples of the dataset's training split in the order it is read.
import { z } from "zod";
import { ATTACKS } from "../attacks/types.ts";
import { baseName, readBytes } from "./io.ts";
import { numbersOf, parseNpy } from "./npy.ts";

/** What `poison apply` writes beside a poisoned copy of a dataset. */
export const PoisonManifest = z.object({
  attack: z.enum(ATTACKS),
  config: z.record(z.string(), z.unknown()),
  /** The dataset the copy was made from, and the copy's format. */
  source: z.string(),
  format: z.string(),
  /** Poisoned examples: indices into the copy's training split as it reads back, and their files. */
  indices: z.array(z.number().int().min(0)),
  paths: z.array(z.string()).optional(),
  originalLabels: z.array(z.number().int().min(0)),
});
export type PoisonManifest = z.output<typeof PoisonManifest>;

export interface GroundTruth {
  /** Indices into the training split as read. */
  indices: number[];
  /** The attack, when the manifest names it: the report then measures its success rate. */
  trigger: { attack: (typeof ATTACKS)[number]; attackConfig: Record<string, unknown> } | null;
}

/** Reads a manifest for a dataset of `n` training examples (with `paths` for file-based data). */
export async function readManifest(file: string, n: number, paths: string[] | null): Promise<GroundTruth> {
  const label = baseName(file);
  const bytes = await readBytes(file);
  let raw: unknown;
  if (/\.npy$/i.test(file)) raw = Array.from(numbersOf(parseNpy(bytes, label), label));
  else {
    try {
      raw = JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      throw new Error(`${label}: not JSON (${(e as Error).message})`);
    }
  }
  let trigger: GroundTruth["trigger"] = null;
  let items: unknown[];
  if (Array.isArray(raw)) items = raw;
  else {
    const m = PoisonManifest.safeParse(raw);
    if (!m.success) {
      const i = m.error.issues[0];
      throw new Error(
        `${label}: not a list of indices or paths, nor a poison manifest (${i.path.join(".")}: ${i.message})`,
      );
    }
    trigger = { attack: m.data.attack, attackConfig: m.data.config };
    items = paths && m.data.paths ? m.data.paths : m.data.indices;
  }
  const byPath = paths ? new Map(paths.map((p, i) => [p, i])) : null;
  const indices = items.map((v, at) => {
    if (typeof v === "number") {
      if (!Number.isInteger(v) || v < 0 || v >= n) {
        throw new Error(`${label}: index ${v} at position ${at} is out of range 0..${n - 1}`);
      }
      return v;
    }
    if (typeof v !== "string") throw new Error(`${label}: entry ${at} is neither an index nor a path`);
    if (!byPath) throw new Error(`${label}: entry ${at} is a path, but this dataset has no files (use indices)`);
    // A path relative to the dataset's root, or one that ends with such a path (absolute, or with the root).
    const i = byPath.get(v) ?? byPath.get(v.split("/").slice(-3).join("/")) ??
      byPath.get(v.split("/").slice(-2).join("/"));
    if (i === undefined) throw new Error(`${label}: ${v} (entry ${at}) is not a file of the dataset`);
    return i;
  });
  return { indices: [...new Set(indices)].sort((a, b) => a - b), trigger };
}
