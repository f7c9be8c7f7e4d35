// A job's dataset for a volunteer (Deno worker or browser page): downloaded from the coordinator by name,
// checked against the hash an uploaded dataset's name carries, then decoded.
import type { Dataset } from "../data/dataset.ts";
import { loadDataBytes } from "../data/formats.ts";
import { errorOf } from "../protocol/client.ts";
import { verifyDataset } from "../protocol/datasets.ts";

/**
 * The training split of a dataset the coordinator serves (GET /v1/datasets/:name), checked against the
 * hash an uploaded dataset's name carries before it is decoded. `say` hears about the download.
 */
export async function downloadTrainSplit(
  server: string,
  name: string,
  opts: { signal?: AbortSignal; say?: (m: string) => void } = {},
): Promise<Dataset> {
  opts.say?.(`downloading ${name}`);
  const res = await fetch(`${server.replace(/\/+$/, "")}/v1/datasets/${encodeURIComponent(name)}`, {
    signal: opts.signal,
  });
  if (!res.ok) throw await errorOf(res);
  const bytes = new Uint8Array(await res.arrayBuffer());
  await verifyDataset(name, bytes);
  opts.say?.(`${name}: ${(bytes.length / 2 ** 20).toFixed(0)} MiB, decoding`);
  const t = performance.now();
  const { train } = await loadDataBytes(bytes, name);
  opts.say?.(`${name}: ${train.n} training images decoded in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return train;
}
