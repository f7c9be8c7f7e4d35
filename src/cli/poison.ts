// deno run -A --no-check src/cli/poison.ts preview --attack badnets|blended|sig|wanet|label-consistent
//   [--rate R] [--target T] [--seed S] [--n 8] [--out preview.png] [--scale 4] [--diff]
//   [--data cifar-10-binary.tar.gz] [--train 2000]
//   attack settings: [--patch-size P] [--position bottom-right|bottom-left|top-right|top-left|random]
//   [--alpha A] [--pattern image.png] [--delta D] [--frequency F] [--k K] [--s S] [--eps E] [--steps N]
//   [--config '{"json": "merged last"}'] [--manifest manifest.json]
// Poisons a seeded subset of the CIFAR-10 training set and writes a PNG grid: clean images in the top
// row, their poisoned versions below (and with --diff, |poisoned - clean| x 4 in a third row).
import { parseArgs } from "node:util";
import { DEFAULT_DATA, loadCifar10 } from "../data/cifar.ts";
import { type Dataset, seededSubset } from "../data/dataset.ts";
import { readBytes, writeBytesAtomic } from "../data/io.ts";
import { decodePngRgb, imageGridPng } from "../data/png-folder.ts";
import { type AttackConfigs, type AttackName, ATTACKS, checkAttackName, poison } from "../attacks/index.ts";
import { args, exit } from "../platform.ts";

const usage = `usage: poison preview --attack ${
  ATTACKS.join("|")
} [--rate R] [--target T] [--out preview.png] [--n 8] (see the header of src/cli/poison.ts)`;

const { values: a, positionals } = parseArgs({
  args: args(),
  allowPositionals: true,
  options: {
    attack: { type: "string" },
    rate: { type: "string" },
    target: { type: "string" },
    seed: { type: "string", default: "0" },
    n: { type: "string", default: "8" },
    out: { type: "string", default: "preview.png" },
    scale: { type: "string", default: "4" },
    diff: { type: "boolean", default: false },
    data: { type: "string", default: DEFAULT_DATA },
    train: { type: "string", default: "2000" },
    "patch-size": { type: "string" },
    position: { type: "string" },
    alpha: { type: "string" },
    pattern: { type: "string" },
    delta: { type: "string" },
    frequency: { type: "string" },
    k: { type: "string" },
    s: { type: "string" },
    eps: { type: "string" },
    steps: { type: "string" },
    config: { type: "string" },
    manifest: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (a.help || positionals[0] !== "preview" || !a.attack) {
  console.error(usage);
  exit(a.help ? 0 : 2);
}

const num = (flag: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x)) throw new Error(`--${flag} must be a number, got "${v}"`);
  return x;
};
const positiveInt = (flag: string, v: string | undefined): number => {
  const x = num(flag, v)!;
  if (!Number.isInteger(x) || x < 1) throw new Error(`--${flag} must be a positive integer, got "${v}"`);
  return x;
};

const attack: AttackName = checkAttackName(a.attack!);
const config: Record<string, unknown> = {};
const set = (key: string, v: unknown) => v !== undefined && (config[key] = v);
set("rate", num("rate", a.rate));
set("targetClass", num("target", a.target));
set("seed", num("seed", a.seed));
set("patchSize", num("patch-size", a["patch-size"]));
set("position", a.position);
set("alpha", num("alpha", a.alpha));
set("delta", num("delta", a.delta));
set("frequency", num("frequency", a.frequency));
set("k", num("k", a.k));
set("s", num("s", a.s));
set("eps", num("eps", a.eps));
set("steps", num("steps", a.steps));
if (a.pattern) {
  const img = decodePngRgb(await readBytes(a.pattern), a.pattern);
  config.pattern = { kind: "image", rgb: img.rgb, w: img.w, h: img.h, source: a.pattern };
}
if (a.config) Object.assign(config, JSON.parse(a.config));

const t0 = performance.now();
const full = await loadCifar10(a.data!, { split: "train" });
const train = seededSubset(full, Math.min(full.n, positiveInt("train", a.train)), Number(a.seed));
const { poisoned, manifest } = await poison(attack, train, config as AttackConfigs[typeof attack], {
  log: (s) => console.error(s),
});
console.error(
  `${attack}: poisoned ${manifest.indices.length} of ${train.n} images (target ${
    (manifest.config as { targetClass: number }).targetClass
  })` +
    (manifest.noiseIndices ? `, ${manifest.noiseIndices.length} noise-mode` : "") +
    ` in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
const n = Math.min(positiveInt("n", a.n), manifest.indices.length);
if (n === 0) throw new Error("no poisoned images to show (rate too low?)");

const show = manifest.indices.slice(0, n);
const size = train.c * train.h * train.w;
const rows = a.diff ? 3 : 2;
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
  if (a.diff) {
    for (let k = 0; k < size; k++) {
      grid.images[(2 * n + j) * size + k] = Math.min(255, 4 * Math.abs(bad[k] - clean[k]));
    }
  }
});
await writeBytesAtomic(a.out!, imageGridPng(grid, { cols: n, scale: positiveInt("scale", a.scale) }));
console.error(
  `wrote ${a.out}: ${n} clean images (top), poisoned (below)${a.diff ? ", |difference| x 4 (bottom)" : ""}; labels ` +
    show.map((i, j) => `${train.classes[manifest.originalLabels[j]]}->${train.classes[poisoned.labels[i]]}`).join(", "),
);
if (a.manifest) {
  const replacer = (_: string, v: unknown) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v);
  await writeBytesAtomic(a.manifest, new TextEncoder().encode(JSON.stringify(manifest, replacer, 1)));
}
