// Data sets the coordinator serves to volunteers by name (GET /v1/datasets/:name), and where it finds
// them itself (spot checks, finish). A job names a file here; every worker builds the job's training set
// from it (src/detect/training-set.ts), so no per-job data moves.
import { Hono } from "hono";
import { baseName } from "../../src/data/io.ts";
import { clearCifarCache, DEFAULT_DATA, loadCifar10 } from "../../src/data/cifar.ts";
import type { Dataset } from "../../src/data/dataset.ts";
import { fileResponse } from "../files.ts";
import { env } from "../../src/platform.ts";

/** Name -> local path. CIFAR10_PATH overrides the default ../shared/datasets location. */
export function datasetFiles(): Record<string, string> {
  const cifar = env("CIFAR10_PATH") ?? DEFAULT_DATA;
  return { [baseName(DEFAULT_DATA)]: cifar };
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

const trainSplits = new Map<string, Promise<Dataset>>();
/** The CIFAR-10 training split of a served dataset (kept for the process). */
export function trainSplit(name: string): Promise<Dataset> {
  let p = trainSplits.get(name);
  if (!p) {
    // Drop the decompressed archive once the split is out (~180 MB); finish reloads it for the test split.
    p = loadCifar10(datasetPath(name), { split: "train" }).finally(clearCifarCache);
    p.catch(() => trainSplits.delete(name));
    trainSplits.set(name, p);
  }
  return p;
}

/** GET (and HEAD, and byte ranges of) /v1/datasets/:name: the file, read from disk as the client reads.
 *  Mounted by server/serve.ts. */
export function datasetRoutes(): Hono {
  return new Hono().get("/v1/datasets/:name", async (c) => {
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
