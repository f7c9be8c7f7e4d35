// On-disk store of a datamodels job: the job's settings, and per split the margins of every trained
// subset model, appended one model at a time (so an interrupted run resumes where it stopped, and models
// may arrive in any order, e.g. from volunteers). Masks are not stored: they are recomputed from
// (seed, split, model index) by masks.ts.
//   DIR/job.json        { format, n, alpha, seed, targets, job }
//   DIR/SPLIT.margins   one record per model: n + targets float32 (margins on every training example,
//                       then on the job's target images)
//   DIR/SPLIT.index     one uint32 per record: the model index; appended after its record, so a record
//                       counts only once its index is written (a torn last record is cut on open)
import {
  appendBytes,
  fileSize,
  joinPath,
  makeDir,
  pathKind,
  readRange,
  readText,
  truncateFile,
  writeBytesAtomic,
} from "../data/io.ts";
import type { HeldOut } from "../attribution/lds.ts";
import { maskBits, type MaskSpec, type Split, SPLITS } from "./masks.ts";

export interface StoreSpec extends MaskSpec {
  /** Target images whose margins each model also records (0 = none). */
  targets: number;
  /** What the job trains on and how (data, attack, model, recipe): compared on reopen, opaque otherwise. */
  job: unknown;
}

const FORMAT = 1;

/** Canonical JSON (object keys sorted), for comparing settings. */
const canonical = (v: unknown) =>
  JSON.stringify(
    v,
    (_, x) => (x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort()) : x),
  );

/** Implements regression.ts's RegressionData (n, models, rows) over the "train" split. */
export class DatamodelStore {
  readonly #index: Record<Split, number[]> = { train: [], heldout: [] };
  readonly #has: Record<Split, Set<number>> = { train: new Set(), heldout: new Set() };

  private constructor(readonly dir: string, readonly spec: StoreSpec) {}

  get n(): number {
    return this.spec.n;
  }
  /** Models the regression sees: the "train" split's records. */
  get models(): number {
    return this.#index.train.length;
  }
  /** Floats per record. */
  get recordLength(): number {
    return this.spec.n + this.spec.targets;
  }

  /** Opens DIR (creating it for a new job); throws if DIR holds a different job. */
  static async open(dir: string, spec: StoreSpec): Promise<DatamodelStore> {
    await makeDir(dir);
    const jobPath = joinPath(dir, "job.json");
    const header = {
      format: FORMAT,
      n: spec.n,
      alpha: spec.alpha,
      seed: spec.seed,
      targets: spec.targets,
      job: spec.job,
    };
    if ((await pathKind(jobPath)) === "file") {
      const stored = JSON.parse(await readText(jobPath));
      if (canonical(stored) !== canonical(header)) {
        const differ = differences(stored, header).join(", ");
        throw new Error(
          `${dir} holds a different datamodels job (${differ}): use another directory, or those settings`,
        );
      }
    } else await writeBytesAtomic(jobPath, new TextEncoder().encode(JSON.stringify(header, null, 1)));
    const store = new DatamodelStore(dir, spec);
    for (const split of SPLITS) await store.#load(split);
    return store;
  }

  /** Opens an existing store with the settings it was created with. */
  static async openExisting(dir: string): Promise<DatamodelStore> {
    const jobPath = joinPath(dir, "job.json");
    if ((await pathKind(jobPath)) !== "file") {
      throw new Error(`${dir}: no datamodels job here (missing job.json); run "datamodels train --out ${dir}" first`);
    }
    const h = JSON.parse(await readText(jobPath));
    if (h.format !== FORMAT) throw new Error(`${jobPath}: format ${h.format}, this code reads format ${FORMAT}`);
    return DatamodelStore.open(dir, { n: h.n, alpha: h.alpha, seed: h.seed, targets: h.targets, job: h.job });
  }

  #paths(split: Split) {
    return { margins: joinPath(this.dir, `${split}.margins`), index: joinPath(this.dir, `${split}.index`) };
  }

  async #load(split: Split): Promise<void> {
    const p = this.#paths(split);
    const rec = this.recordLength * 4;
    let idxBytes = Math.max(0, await fileSize(p.index));
    const marginBytes = Math.max(0, await fileSize(p.margins));
    if (idxBytes % 4) await truncateFile(p.index, idxBytes -= idxBytes % 4);
    const records = idxBytes / 4;
    if (marginBytes < records * rec) {
      throw new Error(
        `${p.margins}: ${marginBytes} bytes, but ${p.index} lists ${records} records of ${rec} bytes (corrupt store)`,
      );
    }
    // a torn record from an interrupted run
    if (marginBytes > records * rec) await truncateFile(p.margins, records * rec);
    const idx = records ? new Uint32Array((await readRange(p.index, 0, idxBytes)).buffer) : new Uint32Array(0);
    this.#index[split] = Array.from(idx);
    this.#has[split] = new Set(idx);
    if (this.#has[split].size !== idx.length) {
      throw new Error(`${p.index}: a model index appears twice (corrupt store)`);
    }
  }

  /** Model indices stored for a split, in record order. */
  stored(split: Split): readonly number[] {
    return this.#index[split];
  }

  has(split: Split, model: number): boolean {
    return this.#has[split].has(model);
  }

  /** Adds model `model`'s margins: n on the training examples, then `targets` on the target images. */
  async append(
    split: Split,
    model: number,
    margins: Float32Array,
    targetMargins: Float32Array = new Float32Array(0),
  ): Promise<void> {
    const { n, targets } = this.spec;
    if (this.has(split, model)) throw new Error(`datamodels store: ${split} model ${model} is already stored`);
    if (margins.length !== n || targetMargins.length !== targets) {
      throw new Error(
        `datamodels store: expected ${n} + ${targets} margins, got ${margins.length} + ${targetMargins.length}`,
      );
    }
    for (const a of [margins, targetMargins]) {
      for (let i = 0; i < a.length; i++) {
        if (!Number.isFinite(a[i])) {
          throw new Error(`datamodels store: ${split} model ${model} has a non-finite margin at ${i}`);
        }
      }
    }
    const rec = new Float32Array(n + targets);
    rec.set(margins);
    rec.set(targetMargins, n);
    const p = this.#paths(split);
    await appendBytes(p.margins, new Uint8Array(rec.buffer));
    await appendBytes(p.index, new Uint8Array(Uint32Array.of(model).buffer));
    this.#index[split].push(model);
    this.#has[split].add(model);
  }

  /** Records [start, start+count) of a split: model indices and their n + targets margins each. */
  async records(split: Split, start: number, count: number): Promise<{ models: Uint32Array; margins: Float32Array }> {
    const total = this.#index[split].length;
    if (start < 0 || count < 0 || start + count > total) {
      throw new Error(`datamodels store: ${split} records ${start}..${start + count} out of 0..${total}`);
    }
    const L = this.recordLength;
    const bytes = count ? await readRange(this.#paths(split).margins, start * L * 4, count * L * 4) : new Uint8Array(0);
    return {
      models: Uint32Array.from(this.#index[split].slice(start, start + count)),
      margins: new Float32Array(bytes.buffer, bytes.byteOffset, count * L),
    };
  }

  /** RegressionData: masks X and training-example margins Y of "train" records [start, start+count). */
  async rows(start: number, count: number): Promise<{ X: Uint8Array; Y: Float32Array }> {
    return this.splitRows("train", start, count);
  }

  async splitRows(split: Split, start: number, count: number): Promise<{ X: Uint8Array; Y: Float32Array }> {
    const { n } = this.spec;
    const { models, margins } = await this.records(split, start, count);
    const X = new Uint8Array(count * n);
    const Y = new Float32Array(count * n);
    const L = this.recordLength;
    for (let r = 0; r < count; r++) {
      maskBits(this.spec, split, models[r], X.subarray(r * n, (r + 1) * n));
      Y.set(margins.subarray(r * L, r * L + n), r * n);
    }
    return { X, Y };
  }
}

/** Held-out models 0..count-1 of a store (all of them must be stored). */
export async function storedHeldOut(store: DatamodelStore, count: number): Promise<HeldOut> {
  const order = store.stored("heldout");
  const masks: Uint8Array[] = [];
  const margins: Float32Array[] = [];
  const n = store.n;
  const L = store.recordLength;
  const { models, margins: all } = await store.records("heldout", 0, order.length);
  models.forEach((m, r) => {
    if (m >= count) return;
    masks.push(maskBits(store.spec, "heldout", m));
    margins.push(all.slice(r * L, r * L + n));
  });
  if (masks.length !== count) {
    throw new Error(`datamodels: ${masks.length} of the ${count} held-out models are stored; train the rest first`);
  }
  return { masks, margins };
}

/** The settings where two JSON values differ, as "path: stored -> asked". */
function differences(a: unknown, b: unknown, path = ""): string[] {
  const obj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === "object" && !Array.isArray(v);
  if (obj(a) && obj(b)) {
    return [...new Set([...Object.keys(a), ...Object.keys(b)])].flatMap((k) =>
      differences(a[k], b[k], path ? `${path}.${k}` : k)
    );
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [`${path}: ${JSON.stringify(a)} -> ${JSON.stringify(b)}`];
}
