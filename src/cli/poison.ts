// npm run poison -- preview: poison a seeded subset of the CIFAR-10 training set and write a PNG grid of
// clean images (top row), their poisoned versions (below) and, with --diff, |poisoned - clean| x 4.
import { z } from "zod";
import { type AttackConfigs, type AttackName, poison } from "../attacks/index.ts";
import { loadCifar10 } from "../data/cifar.ts";
import { type Dataset, seededSubset } from "../data/dataset.ts";
import { readBytes, writeBytesAtomic } from "../data/io.ts";
import { decodePngRgb, imageGridPng } from "../data/png-folder.ts";
import { type CommandSpec, intoSettings, type Parsed } from "./command.ts";
import { attackFlags, dataFlags, outputFlags } from "./flags.ts";
import { note, quietProgress } from "./progress.ts";

/** An attack setting as a flag of its own (sets --attack-config's `key`). */
const setting = <T extends z.ZodType>(schema: T, key: string, what: string) =>
  schema.optional().describe(`${what} (sets --attack-config's ${key})`).meta({ into: `attackConfig.${key}` });

export const PoisonFlags = z.object({
  ...dataFlags({ train: 2000 }),
  ...attackFlags(),
  patchSize: setting(z.number().int().positive(), "patchSize", "BadNets / label-consistent: patch side in pixels"),
  position: setting(
    z.enum(["bottom-right", "bottom-left", "top-right", "top-left", "random"]),
    "position",
    "patch position",
  ),
  alpha: setting(z.number().gt(0).lte(1), "alpha", "Blended: blend weight of the pattern"),
  pattern: z.string().optional().describe("Blended: a PNG image to blend in instead of the seeded noise pattern"),
  delta: setting(z.number().positive(), "delta", "SIG: amplitude of the sinusoid (of 255)"),
  frequency: setting(z.number().positive(), "frequency", "SIG: frequency of the sinusoid"),
  k: setting(z.number().int().positive(), "k", "WaNet: warping grid size"),
  s: setting(z.number().positive(), "s", "WaNet: warping strength"),
  eps: setting(z.number().positive(), "eps", "label-consistent: PGD budget (of 1)"),
  steps: setting(z.number().int().positive(), "steps", "label-consistent: PGD steps"),
  n: z.number().int().positive().default(8).describe("poisoned images to show"),
  out: z.string().default("preview.png").describe("the PNG grid to write"),
  scale: z.number().int().positive().default(4).describe("pixels per image pixel in the grid"),
  diff: z.boolean().default(false).describe("add a row of |poisoned - clean| x 4"),
  manifest: z.string().optional().describe(
    "also write the attack's manifest (poisoned indices, settings) as JSON here",
  ),
  ...outputFlags,
});

export const command: CommandSpec<typeof PoisonFlags> = {
  name: "poison",
  summary: "preview an attack: a PNG grid of clean images and their poisoned versions",
  positionals: [{ name: "preview", description: "write the grid", choices: ["preview"] }],
  flags: PoisonFlags,
  examples: [
    "npm run poison -- preview --attack badnets --rate 0.1 --out badnets.png",
    "npm run poison -- preview --attack blended --alpha 0.2 --diff --manifest manifest.json",
    "npm run poison -- preview --attack sig --delta 30 --frequency 6",
  ],
};

export async function main({ flags }: Parsed<typeof PoisonFlags>): Promise<void> {
  if (flags.quiet || flags.json) quietProgress();
  const attack: AttackName = flags.attack === "none" ? "badnets" : flags.attack;
  const config = (intoSettings(command, flags) as { attackConfig: Record<string, unknown> }).attackConfig;
  config.seed ??= flags.seed;
  if (flags.pattern) {
    const img = decodePngRgb(await readBytes(flags.pattern), flags.pattern);
    config.pattern = { kind: "image", rgb: img.rgb, w: img.w, h: img.h, source: flags.pattern };
  }
  const t0 = performance.now();
  const full = await loadCifar10(flags.data, { split: "train" });
  const train = seededSubset(full, Math.min(full.n, flags.train), flags.seed);
  const { poisoned, manifest } = await poison(attack, train, config as AttackConfigs[typeof attack], { log: note });
  note(
    `${attack}: poisoned ${manifest.indices.length} of ${train.n} images (target ${
      (manifest.config as { targetClass: number }).targetClass
    })` +
      (manifest.noiseIndices ? `, ${manifest.noiseIndices.length} noise-mode` : "") +
      ` in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  const n = Math.min(flags.n, manifest.indices.length);
  if (n === 0) throw new Error("no poisoned images to show (rate too low?)");

  const show = manifest.indices.slice(0, n);
  const size = train.c * train.h * train.w;
  const rows = flags.diff ? 3 : 2;
  const grid: Dataset = {
    ...train,
    n: rows * n,
    images: new Uint8Array(rows * n * size),
    labels: new Uint8Array(rows * n),
  };
  show.forEach((i, j) => {
    const clean = train.images.subarray(i * size, (i + 1) * size),
      bad = poisoned.images.subarray(i * size, (i + 1) * size);
    grid.images.set(clean, j * size);
    grid.images.set(bad, (n + j) * size);
    if (flags.diff) {
      for (let k = 0; k < size; k++) {
        grid.images[(2 * n + j) * size + k] = Math.min(255, 4 * Math.abs(bad[k] - clean[k]));
      }
    }
  });
  await writeBytesAtomic(flags.out, imageGridPng(grid, { cols: n, scale: flags.scale }));
  note(
    `wrote ${flags.out}: ${n} clean images (top), poisoned (below)${
      flags.diff ? ", |difference| x 4 (bottom)" : ""
    }; labels ` +
      show.map((i, j) => `${train.classes[manifest.originalLabels[j]]}->${train.classes[poisoned.labels[i]]}`).join(
        ", ",
      ),
  );
  if (flags.manifest) {
    const replacer = (_: string, v: unknown) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v);
    await writeBytesAtomic(flags.manifest, new TextEncoder().encode(JSON.stringify(manifest, replacer, 1)));
  }
  const result = { out: flags.out, attack, poisoned: manifest.indices.length, of: train.n, shown: n };
  console.log(flags.json ? JSON.stringify(result) : `${flags.out}: ${n} of the ${result.poisoned} poisoned images`);
}
