// The data of a detect run: the dataset at --data in any format (src/data/formats.ts), its test split (its
// own, --test, or a seeded 10% held out), the seeded subset to scan, the attack when one is planted, and the
// ground truth for evaluation (the planted attack's, or --manifest's). The bundled CIFAR-10 is the demo:
// BadNets on 4,000 images unless said otherwise; a user's dataset is scanned whole and as it is.
import { poison } from "../attacks/index.ts";
import { DEFAULT_DATA } from "../data/cifar.ts";
import { type Dataset, seededIndices, seededSubset, subset } from "../data/dataset.ts";
import { loadData, type LoadedData, pathsOf, WRITE_FORMATS, writeData, type WriteFormat } from "../data/formats.ts";
import { dirName, joinPath, makeDir, readBytes, sha256Hex, writeFilesAtomic } from "../data/io.ts";
import { type GroundTruth, readManifest } from "../data/manifest.ts";
import { keyOf } from "./cache.ts";
import type { Cfg } from "./config.ts";

/** Share of a dataset without a test split held out for clean accuracy. */
export const HELD_OUT = 0.1;
/** --train's default on the bundled CIFAR-10. */
export const DEMO_TRAIN = 4000;

export const isBundled = (data: string): boolean => data === DEFAULT_DATA;

/** The settings with the data-dependent defaults filled in: the attack and the number of examples scanned. */
export type Resolved = Cfg & { attack: NonNullable<Cfg["attack"]> };
export function resolveDefaults(cfg: Cfg): Resolved {
  const demo = isBundled(cfg.data);
  return {
    ...cfg,
    attack: cfg.attack ?? (demo ? "badnets" : "none"),
    train: cfg.train ?? (demo ? DEMO_TRAIN : undefined),
  };
}

export interface DetectData {
  source: LoadedData;
  /** What the models train on: the scanned examples (poisoned when an attack is planted). */
  train: Dataset;
  test: Dataset;
  /** Position in `train` -> index in the dataset's training split as read. */
  origin: Uint32Array;
  /** Each scanned example's file (relative to the dataset's root), for file-based data. */
  paths: string[] | null;
  /** Ground truth (positions in `train`), or null. */
  poisoned: number[] | null;
  /** The attack whose success rate is measured, when it is known. */
  trigger: GroundTruth["trigger"];
  /** The training set's content hash and how it was drawn: the key of every cached stage. */
  dataKey: string;
  /** Said in the report: held-out test data, manifest entries that are not scanned. */
  notes: string[];
}

export async function loadDetectData(cfg: Resolved): Promise<DetectData> {
  const opts = { format: cfg.format, resize: cfg.resize?.split("x").map(Number) as [number, number] | undefined };
  const source = await loadData(cfg.data, opts);
  const full = source.train;
  const notes: string[] = [];
  if (cfg.manifest && cfg.attack !== "none") {
    throw new Error(`--manifest is for a dataset as it is; --attack plants one`);
  }
  const truth = cfg.manifest ? await readManifest(cfg.manifest, full.n, pathsOf(full)) : null;

  let test: Dataset | null = null;
  let pool = Uint32Array.from({ length: full.n }, (_, i) => i);
  if (cfg.test) {
    const t = await loadData(cfg.test, opts);
    test = t.test ?? t.train;
  } else if (source.test) test = source.test;
  else {
    const held = seededIndices(full.n, Math.round(full.n * HELD_OUT), cfg.seed + 2);
    const out = new Set(held);
    test = subset(full, held, `${full.name}[held out]`);
    pool = pool.filter((i) => !out.has(i));
    const share = `${100 * HELD_OUT}%`;
    notes.push(
      `No test split: a seeded ${share} (${held.length} examples) is held out for clean accuracy, not scanned.`,
    );
  }
  const where = cfg.test ?? cfg.data;
  const shape = (d: Dataset) => `${d.c}x${d.h}x${d.w}`;
  if (shape(test) !== shape(full)) {
    throw new Error(`${where}: test images are ${shape(test)}, training images ${shape(full)}`);
  }
  if (test.classes.length !== full.classes.length) {
    throw new Error(`${where}: ${test.classes.length} classes in the test split, ${full.classes.length} in training`);
  }
  if (cfg.testSize && cfg.testSize < test.n) test = seededSubset(test, cfg.testSize, cfg.seed + 1);

  // A prefix of one seeded shuffle (dataset.ts seededIndices), so a smaller --train is a subset of a larger.
  const origin = cfg.train !== undefined && cfg.train < pool.length
    ? seededIndices(pool.length, cfg.train, cfg.seed).map((i) => pool[i])
    : pool;
  let train = subset(
    full,
    origin,
    origin.length === full.n ? full.name : `${full.name}[seed=${cfg.seed},n=${origin.length}]`,
  );
  let poisoned: number[] | null = null;
  let trigger = truth?.trigger ?? null;
  if (cfg.attack !== "none") {
    const r = await poison(cfg.attack, train, cfg.attackConfig as never);
    train = r.poisoned;
    poisoned = r.manifest.indices;
    trigger = { attack: cfg.attack, attackConfig: r.manifest.config as Record<string, unknown> };
  } else if (truth) {
    const at = new Map(Array.from(origin, (i, p) => [i, p]));
    poisoned = truth.indices.filter((i) => at.has(i)).map((i) => at.get(i)!).sort((a, b) => a - b);
    if (poisoned.length < truth.indices.length) {
      const missed = truth.indices.length - poisoned.length;
      notes.push(`${missed} of the manifest's ${truth.indices.length} examples are not scanned (held out, not drawn).`);
    }
  }
  const allPaths = pathsOf(full);
  const digest = async (b: Uint8Array) => (await sha256Hex(b)).slice(0, 32);
  const dataKey = keyOf({
    images: await digest(train.images),
    labels: await digest(train.labels),
    classes: train.classes,
  });
  return {
    source,
    train,
    test,
    origin,
    paths: allPaths ? Array.from(origin, (i) => allPaths[i]) : null,
    poisoned,
    trigger,
    dataKey,
    notes,
  };
}

/**
 * The dataset minus the flagged examples (positions in `train`), in its own format (npz for .npy and IDX
 * input). Image folders are copied file by file, so the clean copy keeps the original bytes; examples that
 * were not scanned (held out, not drawn by --train) are kept. With a planted attack, the scanned set is written.
 */
export async function exportClean(
  dir: string,
  data: DetectData,
  flagged: readonly number[],
  cfg: Pick<Resolved, "data" | "attack">,
): Promise<string> {
  const drop = new Set(flagged.map((p) => data.origin[p]));
  const full = data.source.train;
  const planted = cfg.attack !== "none";
  const paths = pathsOf(full);
  if (paths && !planted) {
    const files = [...paths.filter((_, i) => !drop.has(i)), ...(data.source.test ? pathsOf(data.source.test)! : [])];
    for (const folder of new Set(files.map(dirName))) {
      await makeDir(joinPath(dir, folder));
    }
    for (let at = 0; at < files.length; at += 256) {
      const batch = files.slice(at, at + 256);
      await writeFilesAtomic(
        await Promise.all(
          batch.map(async (f) => [joinPath(dir, f), await readBytes(joinPath(cfg.data, f))] as [string, Uint8Array]),
        ),
      );
    }
    return dir;
  }
  const format: WriteFormat = (WRITE_FORMATS as readonly string[]).includes(data.source.format)
    ? data.source.format as WriteFormat
    : "npz";
  const kept = planted
    ? subset(data.train, Array.from({ length: data.train.n }, (_, i) => i).filter((i) => !drop.has(data.origin[i])))
    : subset(full, Array.from({ length: full.n }, (_, i) => i).filter((i) => !drop.has(i)));
  return (await writeData(dir, format, kept, data.source.test)).out;
}
