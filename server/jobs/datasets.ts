// Data sets the coordinator serves to volunteers by name (GET /v1/datasets/:name), and where it finds
// them itself (spot checks, finish). A job names a file here; every worker builds the job's training set
// from it (src/detect/training-set.ts), so no per-job data moves. Two kinds of name:
//   - the bundled CIFAR-10 tarball (cifar-10-binary.tar.gz);
//   - an uploaded dataset (POST /v1/datasets, admin): "<sha256>.npz" or "<sha256>.tar.gz", named by the
//     hash of its bytes, decoded and validated once on upload; workers check the hash before using it.
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Hono, type MiddlewareHandler } from "hono";
import { baseName } from "../../src/data/io.ts";
import { clearCifarCache, DEFAULT_DATA } from "../../src/data/cifar.ts";
import type { Dataset } from "../../src/data/dataset.ts";
import { loadDataBytes, type LoadedData } from "../../src/data/formats.ts";
import { UPLOADED_DATASET } from "../../src/protocol/datasets.ts";
import { env } from "../../src/platform.ts";
import { ApiError } from "../errors.ts";
import { fileResponse } from "../files.ts";

/** Largest upload (the CIFAR-10 tarball is 170 MB). */
export const MAX_DATASET_BYTES = 512 << 20;

let uploadDir: string | null = null;
/** Where uploaded datasets are kept (not the blob store: its garbage collection would take them). */
export function useDatasetDir(dir: string): void {
  mkdirSync(dir, { recursive: true });
  uploadDir = dir;
}

/** Name -> local path. CIFAR10_PATH overrides the default ../shared/datasets location. */
export function datasetFiles(): Record<string, string> {
  const files: Record<string, string> = { [baseName(DEFAULT_DATA)]: env("CIFAR10_PATH") ?? DEFAULT_DATA };
  if (uploadDir) {
    for (const f of readdirSync(uploadDir)) {
      if (UPLOADED_DATASET.test(f)) files[f] = join(uploadDir, f);
    }
  }
  return files;
}

export const DEFAULT_DATASET = baseName(DEFAULT_DATA);

/** The local path of a served dataset, or undefined (own keys only: "constructor" is no dataset). */
function servedPath(name: string): string | undefined {
  const files = datasetFiles();
  return Object.hasOwn(files, name) ? files[name] : undefined;
}

export function datasetPath(name: string): string {
  const path = servedPath(name);
  if (!path) {
    throw new Error(`unknown dataset "${name}"; the coordinator serves ${Object.keys(datasetFiles()).join(", ")}`);
  }
  return path;
}

/** What a job's plan needs to know of a dataset before any worker decodes it. */
export interface DatasetInfo {
  train: number;
  test: number;
  shape: [number, number, number];
  classes: number;
}
const BUNDLED: DatasetInfo = { train: 50000, test: 10000, shape: [3, 32, 32], classes: 10 };

/** A served dataset's sizes: CIFAR-10's, or what its upload recorded beside it (`<name>.json`). */
export function datasetInfo(name: string): DatasetInfo {
  const path = datasetPath(name);
  return UPLOADED_DATASET.test(name) ? JSON.parse(readFileSync(`${path}.json`, "utf8")) : BUNDLED;
}

const splits = new Map<string, Promise<LoadedData>>();
/** Both splits of a served dataset (kept for the process). */
export function servedData(name: string): Promise<LoadedData> {
  let p = splits.get(name);
  if (!p) {
    // Drop the decompressed archive once the splits are out (~180 MB for CIFAR-10).
    p = readFile(datasetPath(name)).then((b) => loadDataBytes(new Uint8Array(b), name)).finally(clearCifarCache);
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

/** Streams `body` to a temp file in `dir`, hashing it; refuses more than `max` bytes. */
async function receive(body: ReadableStream<Uint8Array>, dir: string, max: number) {
  const tmp = join(dir, `.upload-${randomUUID()}`);
  const out = createWriteStream(tmp);
  const hash = createHash("sha256");
  let size = 0;
  try {
    for await (const chunk of body) {
      size += chunk.length;
      if (size > max) throw new ApiError(413, `dataset too large: at most ${max} bytes`);
      hash.update(chunk);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
    }
    await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  } catch (e) {
    out.destroy();
    await rm(tmp, { force: true });
    throw e;
  }
  return { tmp, size, sha256: hash.digest("hex") };
}

/**
 * GET (and HEAD, and byte ranges of) /v1/datasets/:name: the file, read from disk as the client reads.
 * POST /v1/datasets (admin): upload an .npz (x/y or x_train/y_train with x_test/y_test) or a CIFAR-10
 * tarball; it must decode and hold a test split; answered with its name. Mounted by server/serve.ts.
 */
export function datasetRoutes(guards: { admin: MiddlewareHandler }, maxBytes = MAX_DATASET_BYTES): Hono {
  return new Hono()
    .post("/v1/datasets", guards.admin, async (c) => {
      if (!uploadDir) throw new ApiError(503, "this coordinator keeps no uploaded datasets");
      const declared = Number(c.req.header("content-length") ?? 0);
      if (declared > maxBytes) throw new ApiError(413, `dataset too large: at most ${maxBytes} bytes`);
      if (!c.req.raw.body) throw new ApiError(400, "no body: send the dataset file");
      const got = await receive(c.req.raw.body, uploadDir, maxBytes);
      try {
        const bytes = new Uint8Array(await readFile(got.tmp));
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
        const name = `${got.sha256}.${ext}`;
        const { train, test } = data;
        const info: DatasetInfo = {
          train: train.n,
          test: test.n,
          shape: [train.c, train.h, train.w],
          classes: train.classes.length,
        };
        // The sizes first, then the data under its name: a listed dataset always has them.
        await writeFile(join(uploadDir, `${name}.json`), JSON.stringify(info));
        await rename(got.tmp, join(uploadDir, name));
        return c.json({
          name,
          sha256: got.sha256,
          bytes: got.size,
          format: data.format,
          shape: [train.c, train.h, train.w],
          classes: train.classes,
          train: train.n,
          test: test.n,
        }, 201);
      } finally {
        await rm(got.tmp, { force: true });
      }
    })
    .get("/v1/datasets/:name", async (c) => {
      const name = c.req.param("name");
      const path = servedPath(name);
      const res = path
        ? await fileResponse(path, c.req.raw, {
          "content-type": "application/octet-stream",
          "cache-control": "public, max-age=86400, immutable",
        })
        : null;
      return res ?? c.json({ error: `no dataset "${name}" here` }, 404);
    });
}
