// npm run poison -- preview: poison a seeded subset of a dataset's training split and write a PNG grid of
// clean images (top row), their poisoned versions (below) and, with --diff, |poisoned - clean| x 4.
// npm run poison -- apply: write the poisoned copy itself, in a chosen format, with its manifest.json (the
// red team's half: the copy can leave the project and come back as an opaque dataset).
import { z } from "zod";
import { type AttackConfigs, type AttackName, type AttackResult, parseAttackConfig, poison } from "../attacks/index.ts";
import { type Dataset, seededIndices, seededSubset, subset } from "../data/dataset.ts";
import { loadData, type LoadedData, WRITE_FORMATS, writeData } from "../data/formats.ts";
import { folderOrder } from "../data/image-folder.ts";
import { joinPath, readBytes, writeBytesAtomic } from "../data/io.ts";
import type { PoisonManifest } from "../data/manifest.ts";
import { decodePngRgb, imageGridPng } from "../data/png-folder.ts";
import { type CommandSpec, intoSettings, type Parsed, UsageError } from "./command.ts";
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
  coverRate: setting(z.number().min(0).max(1), "coverRate", "adap-blend / adap-patch / tact: cover examples' rate"),
  n: z.number().int().positive().default(8).describe("preview: poisoned images to show"),
  out: z.string().optional().describe("preview: the PNG grid (default preview.png); apply: the output directory"),
  format: z.enum(WRITE_FORMATS).default("imagefolder").describe("apply: the copy's format"),
  testSize: z.number().int().positive().optional().describe(
    "apply: test images copied (clean, a seeded subset; default the whole test split)",
  ),
  scale: z.number().int().positive().default(4).describe("pixels per image pixel in the grid"),
  diff: z.boolean().default(false).describe("add a row of |poisoned - clean| x 4"),
  manifest: z.string().optional().describe(
    "preview: also write the attack's manifest (poisoned indices, settings) as JSON here",
  ),
  ...outputFlags,
});

export const command: CommandSpec<typeof PoisonFlags> = {
  name: "poison",
  summary: "preview an attack as a PNG grid, or apply it: a poisoned copy of a dataset and its manifest",
  positionals: [{
    name: "verb",
    description: "preview (a grid of clean and poisoned images) or apply (a poisoned copy)",
    choices: ["preview", "apply"],
  }],
  flags: PoisonFlags,
  examples: [
    "npm run poison -- preview --attack badnets --rate 0.1 --out badnets.png",
    "npm run poison -- preview --attack blended --alpha 0.2 --diff --manifest manifest.json",
    "npm run poison -- preview --attack sig --delta 30 --frequency 6",
    "npm run poison -- preview --attack adap-blend --diff",
    "npm run poison -- apply --attack badnets --train 2000 --format imagefolder --out poisoned-cifar",
    "npm run detect -- --data poisoned-cifar --manifest poisoned-cifar/manifest.json",
  ],
};

export async function main({ flags, positionals }: Parsed<typeof PoisonFlags>): Promise<void> {
  if (flags.quiet || flags.json) quietProgress();
  if (flags.attack === "none") throw new UsageError("--attack none: nothing to plant; name an attack");
  const attack: AttackName = flags.attack;
  const config = (intoSettings(command, flags) as { attackConfig: Record<string, unknown> }).attackConfig;
  config.seed ??= flags.seed;
  if (flags.pattern) {
    const img = decodePngRgb(await readBytes(flags.pattern), flags.pattern);
    config.pattern = { kind: "image", rgb: img.rgb, w: img.w, h: img.h, source: flags.pattern };
  }
  parseAttackConfig(attack, config); // a mistake names the field before anything is read
  if (positionals[0] === "apply" && !flags.out) throw new UsageError("apply: --out DIR is required");
  const t0 = performance.now();
  const source = await loadData(flags.data);
  const full = source.train;
  const train = flags.train < full.n ? subset(full, seededIndices(full.n, flags.train, flags.seed)) : full;
  const { poisoned, manifest } = await poison(attack, train, config as AttackConfigs[typeof attack], { log: note });
  if (positionals[0] === "apply") return await apply(flags, source, poisoned, manifest, attack);
  note(
    `${attack}: poisoned ${manifest.indices.length} of ${train.n} images (target ${
      (manifest.config as { targetClass: number }).targetClass
    })` +
      (manifest.noiseIndices ? `, ${manifest.noiseIndices.length} noise-mode` : "") +
      (manifest.coverIndices ? `, ${manifest.coverIndices.length} covers (trigger, own label)` : "") +
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
  const out = flags.out ?? "preview.png";
  await writeBytesAtomic(out, imageGridPng(grid, { cols: n, scale: flags.scale }));
  note(
    `wrote ${out}: ${n} clean images (top), poisoned (below)${
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
  const result = { out, attack, poisoned: manifest.indices.length, of: train.n, shown: n };
  console.log(flags.json ? JSON.stringify(result) : `${out}: ${n} of the ${result.poisoned} poisoned images`);
}

/** The poisoned copy in `--format`, its clean test split, and manifest.json (indices as the copy reads back). */
async function apply(
  flags: z.output<typeof PoisonFlags>,
  source: LoadedData,
  poisoned: Dataset,
  manifest: AttackResult["manifest"],
  attack: AttackName,
): Promise<void> {
  const out = flags.out!;
  const test = source.test && flags.testSize && flags.testSize < source.test.n
    ? seededSubset(source.test, flags.testSize, flags.seed + 1)
    : source.test;
  // An ImageFolder reads back class by class; every format is written in that order, so one poisoned copy
  // has the same indices (and the same content hash: detect's cache) whatever its format.
  const order = folderOrder(poisoned);
  const copy = subset(poisoned, order, poisoned.name);
  const at = new Uint32Array(poisoned.n);
  order.forEach((src, k) => (at[src] = k));
  const written = await writeData(out, flags.format, copy, test);
  const indices = manifest.indices.map((i) => at[i]).sort((a, b) => a - b);
  const originalLabel = new Map(manifest.indices.map((i, j) => [i, manifest.originalLabels[j]]));
  const record: PoisonManifest = {
    attack,
    config: JSON.parse(JSON.stringify(manifest.config, (_, v) => (v instanceof Uint8Array ? Array.from(v) : v))),
    source: flags.data,
    format: flags.format,
    indices,
    ...(written.trainPaths ? { paths: indices.map((k) => written.trainPaths![k]) } : {}),
    originalLabels: indices.map((k) => originalLabel.get(order[k])!),
  };
  const file = joinPath(out, "manifest.json");
  await writeBytesAtomic(file, new TextEncoder().encode(JSON.stringify(record, null, 1)));
  const result = {
    out: written.out,
    manifest: file,
    format: flags.format,
    n: copy.n,
    test: test?.n ?? 0,
    poisoned: indices.length,
  };
  console.log(
    flags.json
      ? JSON.stringify(result)
      : `${written.out}: ${copy.n} training images (${indices.length} poisoned by ${attack})${
        test ? ` and ${test.n} clean test images` : ""
      } as ${flags.format}; ground truth in ${file}`,
  );
}
