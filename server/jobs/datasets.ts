// Data sets the coordinator serves to volunteers by name (GET /v1/datasets/:name), and where it finds
// them itself (spot checks). A job names one; every worker builds the job's training set from it
// (src/detect/training-set.ts), so no per-job data moves. Two kinds of name:
//   - the bundled CIFAR-10 tarball (cifar-10-binary.tar.gz), on a coordinator with a disk;
//   - an uploaded dataset (POST /v1/datasets, admin): "<sha256>.npz" or "<sha256>.tar.gz", named by the
//     hash of its bytes, decoded and validated once on upload; workers check the hash before using it.
// Kept on disk (DiskDatasets: the Deno and Node coordinators) or in the database (SqlDatasets: the edge
// coordinator's Durable Object, which has no disk and 128 MB of memory, so it takes smaller uploads).
import { createHash, randomUUID } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Hono, type MiddlewareHandler } from "hono";
import { baseName } from "../../src/data/io.ts";
import { clearCifarCache, DEFAULT_DATA } from "../../src/data/cifar.ts";
import type { Dataset } from "../../src/data/dataset.ts";
import { loadDataBytes, type LoadedData } from "../../src/data/formats.ts";
import { UPLOADED_DATASET } from "../../src/protocol/datasets.ts";
import { env } from "../../src/platform.ts";
import { concatBytes, SqlBlobStore } from "../blobs.ts";
import { ApiError } from "../errors.ts";
import { fileResponse } from "../files.ts";
import type { SqlDriver } from "../store/driver.ts";

/** What a job's plan needs to know of a dataset before any worker decodes it. */
export interface DatasetInfo {
  train: number;
  test: number;
  shape: [number, number, number];
  classes: number;
}

/** Where the coordinator keeps the datasets it serves. */
export interface DatasetStore {
  /** Names served, each with its sizes (synchronous: a job's plan reads them). */
  list(): Map<string, DatasetInfo>;
  read(name: string): Promise<Uint8Array>;
  /** GET and HEAD of /v1/datasets/:name. */
  serve(name: string, req: Request): Promise<Response>;
  /** Largest upload kept; 0: none. */
  readonly maxUpload: number;
  /** Keep an upload under its name (the sizes first: a listed dataset always has them). */
  keep(name: string, bytes: Uint8Array, info: DatasetInfo): Promise<void>;
}

export const DEFAULT_DATASET = baseName(DEFAULT_DATA);
const BUNDLED: DatasetInfo = { train: 50000, test: 10000, shape: [3, 32, 32], classes: 10 };
const SERVED = { "content-type": "application/octet-stream", "cache-control": "public, max-age=86400, immutable" };

/** The bundled CIFAR-10 (CIFAR10_PATH overrides ../shared/datasets) and, given `dir`, uploads kept there (not
 *  in the blob store: its garbage collection would take them). Files are served as the client reads them. */
export class DiskDatasets implements DatasetStore {
  /** Largest upload (the CIFAR-10 tarball is 170 MB). */
  readonly maxUpload: number;
  constructor(private readonly dir?: string) {
    if (dir) mkdirSync(dir, { recursive: true });
    this.maxUpload = dir ? 512 << 20 : 0;
  }

  private paths(): Map<string, string> {
    const out = new Map([[DEFAULT_DATASET, env("CIFAR10_PATH") ?? DEFAULT_DATA]]);
    for (const f of this.dir ? readdirSync(this.dir) : []) if (UPLOADED_DATASET.test(f)) out.set(f, join(this.dir!, f));
    return out;
  }

  list(): Map<string, DatasetInfo> {
    return new Map(
      [...this.paths()].map(([name, path]) => [
        name,
        UPLOADED_DATASET.test(name) ? JSON.parse(readFileSync(`${path}.json`, "utf8")) : BUNDLED,
      ]),
    );
  }

  async read(name: string): Promise<Uint8Array> {
    return new Uint8Array(await readFile(this.paths().get(name)!));
  }

  async serve(name: string, req: Request): Promise<Response> {
    const path = this.paths().get(name);
    const res = path ? await fileResponse(path, req, SERVED) : null;
    return res ?? Response.json({ error: `no dataset "${name}" here` }, { status: 404 });
  }

  async keep(name: string, bytes: Uint8Array, info: DatasetInfo): Promise<void> {
    const path = join(this.dir!, name);
    await writeFile(`${path}.json`, JSON.stringify(info));
    const tmp = join(this.dir!, `.upload-${randomUUID()}`);
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  }
}

/** Uploads in the database: their bytes in chunks, their sizes in a table, listed from memory. */
export class SqlDatasets implements DatasetStore {
  readonly maxUpload = 32 << 20;
  private readonly blobs: SqlBlobStore;
  private readonly infos = new Map<string, DatasetInfo>();
  constructor(private readonly db: SqlDriver) {
    this.blobs = new SqlBlobStore(db, "dataset_chunks");
  }

  async init(): Promise<this> {
    await this.blobs.init();
    await this.db.migrate([`CREATE TABLE IF NOT EXISTS datasets (name TEXT PRIMARY KEY, info TEXT NOT NULL)`]);
    for (const r of await this.db.all<{ name: string; info: string }>(`SELECT name, info FROM datasets`)) {
      this.infos.set(r.name, JSON.parse(r.info));
    }
    return this;
  }

  list(): Map<string, DatasetInfo> {
    return new Map(this.infos);
  }

  read(name: string): Promise<Uint8Array> {
    return this.blobs.get(UPLOADED_DATASET.exec(name)![1]);
  }

  async serve(name: string, req: Request): Promise<Response> {
    if (!this.infos.has(name)) return Response.json({ error: `no dataset "${name}" here` }, { status: 404 });
    const bytes = await this.read(name);
    const headers = { ...SERVED, "content-length": String(bytes.length) };
    return new Response(req.method === "HEAD" ? null : (bytes as Uint8Array<ArrayBuffer>), { headers });
  }

  async keep(name: string, bytes: Uint8Array, info: DatasetInfo): Promise<void> {
    await this.blobs.put(bytes);
    await this.db.run(`INSERT INTO datasets (name, info) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, [
      name,
      JSON.stringify(info),
    ]);
    this.infos.set(name, info);
  }
}

let store: DatasetStore = new DiskDatasets();
/** Serve these datasets (server/serve.ts: DiskDatasets of --datasets; the edge: SqlDatasets). */
export function useDatasets(s: DatasetStore): void {
  store = s;
  splits.clear();
}

/** A served dataset's sizes (listed in a Map: "constructor" names no dataset). */
export function datasetInfo(name: string): DatasetInfo {
  const all = store.list();
  const info = all.get(name);
  if (!info) throw new Error(`unknown dataset "${name}"; the coordinator serves ${[...all.keys()].join(", ")}`);
  return info;
}

const splits = new Map<string, Promise<LoadedData>>();
/** Both splits of a served dataset (kept for the process). */
export function servedData(name: string): Promise<LoadedData> {
  let p = splits.get(name);
  if (!p) {
    // Drop the decompressed archive once the splits are out (~180 MB for CIFAR-10).
    datasetInfo(name); // an unknown name throws at once
    p = store.read(name).then((b) => loadDataBytes(b, name)).finally(clearCifarCache);
    p.catch(() => splits.delete(name));
    splits.set(name, p);
  }
  return p;
}

/** The training split of a served dataset (an unknown name throws at once: the job's plan reports it). */
export const trainSplit = (name: string): Promise<Dataset> => servedData(name).then((d) => d.train);
export const testSplit = (name: string): Promise<Dataset> =>
  servedData(name).then((d) => {
    if (!d.test) throw new Error(`dataset ${name} has no test split`);
    return d.test;
  });

/** The body in memory, hashed; refuses more than `max` bytes as they arrive. */
async function receive(body: ReadableStream<Uint8Array>, max: number) {
  const parts: Uint8Array[] = [];
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > max) throw new ApiError(413, `dataset too large: at most ${max} bytes`);
    hash.update(chunk);
    parts.push(chunk);
  }
  return { bytes: concatBytes(parts), sha256: hash.digest("hex") };
}

/**
 * GET (and HEAD, and byte ranges of) /v1/datasets/:name: the file, read from disk as the client reads.
 * POST /v1/datasets (admin): upload an .npz (x/y or x_train/y_train with x_test/y_test) or a CIFAR-10
 * tarball; it must decode and hold a test split; answered with its name. Mounted by server/serve.ts.
 */
export function datasetRoutes(guards: { admin: MiddlewareHandler }): Hono {
  return new Hono()
    .post("/v1/datasets", guards.admin, async (c) => {
      const max = store.maxUpload;
      if (!max) throw new ApiError(503, "this coordinator keeps no uploaded datasets");
      const declared = Number(c.req.header("content-length") ?? 0);
      if (declared > max) throw new ApiError(413, `dataset too large: at most ${max} bytes`);
      if (!c.req.raw.body) throw new ApiError(400, "no body: send the dataset file");
      const { bytes, sha256 } = await receive(c.req.raw.body, max);
      const ext = bytes[0] === 0x50 && bytes[1] === 0x4b ? "npz" : "tar.gz";
      let data: LoadedData;
      try {
        data = await loadDataBytes(bytes, `upload.${ext}`);
      } catch (e) {
        throw new ApiError(422, `not a dataset: ${(e as Error).message}`);
      } finally {
        clearCifarCache();
      }
      if (!data.test) throw new ApiError(422, "a job's dataset needs a test split (x_test and y_test)");
      const name = `${sha256}.${ext}`;
      const { train, test } = data;
      const shape: DatasetInfo["shape"] = [train.c, train.h, train.w];
      await store.keep(name, bytes, { train: train.n, test: test.n, shape, classes: train.classes.length });
      return c.json({
        name,
        sha256,
        bytes: bytes.length,
        format: data.format,
        shape,
        classes: train.classes,
        train: train.n,
        test: test.n,
      }, 201);
    })
    .get("/v1/datasets/:name", (c) => store.serve(c.req.param("name"), c.req.raw));
}
