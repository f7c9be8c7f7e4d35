// Data sets the coordinator serves to volunteers by name (GET /v1/datasets/:name), and where it finds
// them itself (spot checks, finish). A job names a file here; every worker builds the job's training set
// from it (src/detect/training-set.ts), so no per-job data moves.
import { Hono } from "hono";
import { baseName, pathKind, readBytes } from "../../src/data/io.ts";
import { DEFAULT_DATA } from "../../src/detect/pipeline.ts";
import { loadCifar10 } from "../../src/data/cifar.ts";
import type { Dataset } from "../../src/data/dataset.ts";

const env = (k: string): string | undefined => (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env[k] ??
  (globalThis as { Deno?: { env: { get(k: string): string | undefined } } }).Deno?.env.get(k);

/** Name -> local path. CIFAR10_PATH overrides the default ../shared/datasets location. */
export function datasetFiles(): Record<string, string> {
  const cifar = env("CIFAR10_PATH") ?? DEFAULT_DATA;
  return { [baseName(DEFAULT_DATA)]: cifar };
}

export const DEFAULT_DATASET = baseName(DEFAULT_DATA);

export function datasetPath(name: string): string {
  const path = datasetFiles()[name];
  if (!path) throw new Error(`unknown dataset "${name}"; the coordinator serves ${Object.keys(datasetFiles()).join(", ")}`);
  return path;
}

const trainSplits = new Map<string, Promise<Dataset>>();
/** The CIFAR-10 training split of a served dataset (kept for the process). */
export function trainSplit(name: string): Promise<Dataset> {
  let p = trainSplits.get(name);
  if (!p) {
    p = loadCifar10(datasetPath(name), { split: "train" });
    p.catch(() => trainSplits.delete(name));
    trainSplits.set(name, p);
  }
  return p;
}

const bytes = new Map<string, Promise<Uint8Array>>();

/** GET /v1/datasets/:name: the file's bytes (read once, kept in memory). Mount with app.route("/", datasetRoutes()). */
export function datasetRoutes(): Hono {
  return new Hono().get("/v1/datasets/:name", async (c) => {
    const name = c.req.param("name");
    const path = datasetFiles()[name];
    if (!path || (await pathKind(path)) !== "file") return c.json({ error: `no dataset "${name}" here` }, 404);
    let b = bytes.get(path);
    if (!b) {
      b = readBytes(path);
      b.catch(() => bytes.delete(path));
      bytes.set(path, b);
    }
    const data = await b;
    return c.body(data as Uint8Array<ArrayBuffer>, 200, { "content-type": "application/octet-stream", "cache-control": "public, max-age=86400, immutable" });
  });
}
