// A job's dataset for a volunteer (Deno worker or browser page): downloaded from the coordinator by name,
// checked against the hash an uploaded dataset's name carries, then decoded.
import type { Dataset } from "../data/dataset.ts";
import { loadDataBytes, type LoadedData } from "../data/formats.ts";
import { errorOf } from "../protocol/client.ts";
import { verifyDataset } from "../protocol/datasets.ts";

/**
 * Both splits of a dataset the coordinator serves (GET /v1/datasets/:name), checked against the hash an
 * uploaded dataset's name carries before it is decoded. `say` hears about the download.
 */
export async function downloadDataset(
  server: string,
  name: string,
  opts: { signal?: AbortSignal; say?: (m: string) => void } = {},
): Promise<LoadedData> {
  opts.say?.(`downloading ${name}`);
  const res = await fetch(`${server.replace(/\/+$/, "")}/v1/datasets/${encodeURIComponent(name)}`, {
    signal: opts.signal,
  });
  if (!res.ok) throw await errorOf(res);
  const bytes = new Uint8Array(await res.arrayBuffer());
  await verifyDataset(name, bytes);
  opts.say?.(`${name}: ${(bytes.length / 2 ** 20).toFixed(0)} MiB, decoding`);
  const t = performance.now();
  const data = await loadDataBytes(bytes, name);
  opts.say?.(`${name}: ${data.train.n} training images decoded in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return data;
}

/** The training split alone. */
export const downloadTrainSplit = async (...a: Parameters<typeof downloadDataset>): Promise<Dataset> =>
  (await downloadDataset(...a)).train;

/**
 * A volunteer's loaders of the splits of served datasets, each downloaded once (`download`), or read by
 * `local` where it names a local copy.
 */
export function datasetLoaders(
  download: (name: string) => Promise<LoadedData>,
  local: (name: string, split: "train" | "test") => Promise<Dataset | undefined> = async () => undefined,
): { loadTrainSplit(name: string): Promise<Dataset>; loadTestSplit(name: string): Promise<Dataset> } {
  const once = new Map<string, Promise<unknown>>();
  const cached = <T>(key: string, load: () => Promise<T>): Promise<T> => {
    let p = once.get(key) as Promise<T> | undefined;
    if (!p) {
      p = load();
      p.catch(() => once.delete(key));
      once.set(key, p);
    }
    return p;
  };
  const split = (name: string, which: "train" | "test") =>
    cached(`${which}:${name}`, async () => {
      const mine = await local(name, which);
      if (mine) return mine;
      const data = await cached(`data:${name}`, () => download(name));
      const out = which === "train" ? data.train : data.test;
      if (!out) throw new Error(`dataset ${name} has no ${which} split`);
      return out;
    });
  return { loadTrainSplit: (name) => split(name, "train"), loadTestSplit: (name) => split(name, "test") };
}
