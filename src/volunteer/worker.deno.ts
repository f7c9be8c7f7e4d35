// npm run worker: a headless volunteer. Leases shards from the coordinator and runs them on this machine's
// WebGPU adapter until stopped (SIGINT/SIGTERM: the current shard is aborted, its lease handed back, and the
// loop exits; a second signal exits at once).
import { hostname } from "node:os";
import { z } from "zod";
import "../../kernels/index.ts";
import { type CommandSpec, type Parsed, UsageError } from "../cli/command.ts";
import { DEFAULT_DATA, loadCifar10 } from "../data/cifar.ts";
import { datasetLoaders, downloadDataset } from "./dataset.ts";
import { baseName, pathKind } from "../data/io.ts";
import { getRuntime } from "../gpu/runtime.ts";
import { exit, onSignal } from "../platform.ts";
import { trakExecutors } from "./executors.ts";
import { runWorker, type WorkerEvent } from "./loop.ts";

export const WorkerFlags = z.object({
  server: z.url().describe("the coordinator's address, e.g. http://127.0.0.1:8787"),
  maxShards: z.number().int().positive().optional().describe("stop after submitting this many shards"),
  kinds: z.array(z.enum(["train", "featurize", "trak-finish", "datamodels-finish"])).optional().describe(
    "only these shard kinds (default all)",
  ),
  data: z.string().optional().describe(
    "a local copy of the data set the jobs name (default ../shared/datasets/ when present, else downloaded once)",
  ),
  dataset: z.string().optional().describe(
    "the served data set to decode before asking for work, e.g. an upload's <sha256>.npz (default: CIFAR-10)",
  ),
  name: z.string().optional().describe("the name this volunteer registers under (default deno@HOSTNAME)"),
  invite: z.string().optional().describe("an invite from the coordinator's admin, where registration needs one"),
});

/** SIGINT and SIGTERM stop the loop, which releases the lease in hand (below). */
export const ownSignals = true;

export const command: CommandSpec<typeof WorkerFlags> = {
  name: "worker",
  summary: "a headless volunteer: lease shards from a coordinator and run them on this machine's WebGPU",
  flags: WorkerFlags,
  examples: [
    "npm run worker -- --server http://127.0.0.1:8787",
    "npm run worker -- --server http://coordinator:8787 --kinds train --max-shards 10",
  ],
};

export async function main({ flags }: Parsed<typeof WorkerFlags>): Promise<void> {
  const { server, maxShards, kinds } = flags;
  const stamp = () => new Date().toISOString().slice(11, 19);
  const log = (msg: string) => console.log(`${stamp()} ${msg}`);

  const ctl = new AbortController();
  let signals = 0;
  const stop = (sig: string) => () => {
    if (++signals > 1) exit(130);
    log(`${sig}: stopping (again to exit at once)`);
    ctl.abort();
  };
  onSignal("SIGINT", stop("SIGINT"));
  onSignal("SIGTERM", stop("SIGTERM"));

  const rt = await getRuntime();
  log(`adapter ${rt.adapterName}; coordinator ${server}`);

  // A local copy stands in for the bundled CIFAR-10 only; uploaded datasets always come hash-checked.
  const { loadTrainSplit, loadTestSplit } = datasetLoaders(
    (name) => downloadDataset(server, name, { signal: ctl.signal, say: log }),
    async (name, split) => {
      if (name !== baseName(DEFAULT_DATA)) return undefined;
      const local = flags.data ?? ((await pathKind(DEFAULT_DATA)) === "file" ? DEFAULT_DATA : undefined);
      return local ? loadCifar10(local, split === "train" ? { split } : { split, recordsPerFile: null }) : undefined;
    },
  );

  // Decode the data set before taking a lease (seconds of blocking work: heartbeats would starve).
  const first = flags.dataset ?? baseName(DEFAULT_DATA);
  const preload = await loadTrainSplit(first).then(
    (d) => d.n,
    (e: Error) => log(`no data set preloaded (${first}): ${e.message}`),
  );
  if (preload) log(`data set ready (${preload} training images)`);

  const all = trakExecutors({ rt, loadTrainSplit, loadTestSplit, log });
  const executors = kinds
    ? Object.fromEntries(Object.entries(all).filter(([k]) => (kinds as string[]).includes(k)))
    : all;
  if (Object.keys(executors).length === 0) {
    throw new UsageError(`--kinds ${kinds}: none of ${Object.keys(all).join(", ")}`);
  }
  let done = 0;
  const t0 = performance.now();
  for (const [kind, run] of Object.entries(executors)) {
    executors[kind] = async (payload, inputs, ctx) => {
      const p = payload as { m?: number; modelIndex?: number; start?: number; end?: number };
      const what = kind === "featurize"
        ? `featurize model ${p.modelIndex} [${p.start}, ${p.end})`
        : kind === "train"
        ? `train model ${p.m}`
        : kind;
      const started = performance.now();
      let shown = -1;
      log(`start ${what}`);
      const out = await run(payload, inputs, {
        ...ctx,
        onProgress: (f) => {
          ctx.onProgress(f);
          const pct = Math.floor(f * 10) * 10;
          if (pct !== shown) log(`  ${what}: ${(shown = pct)}%`);
        },
      });
      done++;
      log(
        `done ${what} in ${((performance.now() - started) / 1000).toFixed(1)} s (${done} shards, ${
          (done / ((performance.now() - t0) / 60000)).toFixed(2)
        } shards/min)`,
      );
      return out;
    };
  }

  let waiting = false;
  /** One line per event; progress is logged by the executor wrapper above, idle polls once per wait. */
  function describeEvent(e: WorkerEvent): string | null {
    if (e.type !== "idle") waiting = false;
    switch (e.type) {
      case "registered":
        return `registered as volunteer ${e.volunteerId}`;
      case "leased":
        return `leased ${e.shard.key} of job ${e.shard.jobId.slice(0, 8)} (fence ${e.fence})`;
      case "submitted":
        return `submitted ${e.shard.key}: ${e.status}${e.reason ? ` (${e.reason})` : ""}`;
      case "error":
        return `error${e.shard ? ` in ${e.shard.key}` : ""}: ${e.message}`;
      case "idle":
        return waiting ? null : ((waiting = true), "no work ready; polling");
      default:
        return null;
    }
  }

  try {
    await runWorker({
      server,
      executors,
      signal: ctl.signal,
      maxShards,
      name: flags.name ?? `deno@${hostname()}`,
      invite: flags.invite,
      agent: `deno worker (${rt.adapterName})`,
      onProgress: (e) => {
        const line = describeEvent(e);
        if (line) log(line);
      },
    });
  } catch (e) {
    if (!ctl.signal.aborted) {
      console.error(`worker: ${(e as Error).message}`);
      exit(1);
    }
  }
  log(`stopped after ${done} shards`);
  exit(0);
}
