// Headless volunteer: deno task worker --server URL [--max-shards N] [--kinds train,featurize]
//                                       [--data PATH] [--name NAME]
// Leases shards from the coordinator and runs them on this machine's WebGPU adapter until stopped
// (SIGINT/SIGTERM: the current shard is aborted and the loop exits; a second signal exits at once).
// --data: a local copy of the CIFAR-10 tarball the jobs name (else ../shared/datasets/ when present,
// else it is downloaded from the coordinator once).
import { parseArgs } from "node:util";
import "../../kernels/index.ts";
import { DEFAULT_DATA, loadCifar10, loadCifar10Archive } from "../data/cifar.ts";
import type { Dataset } from "../data/dataset.ts";
import { baseName, pathKind } from "../data/io.ts";
import { getRuntime } from "../gpu/runtime.ts";
import { trakExecutors } from "./executors.ts";
import { runWorker, type WorkerEvent } from "./loop.ts";
import { hostname } from "node:os";
import { args, exit, onSignal } from "../platform.ts";

const { values: a } = parseArgs({
  args: args(),
  options: {
    server: { type: "string" },
    "max-shards": { type: "string" },
    kinds: { type: "string" },
    data: { type: "string" },
    name: { type: "string" },
  },
});
const fail = (msg: string): never => {
  console.error(
    `worker: ${msg}\nusage: deno task worker --server URL [--max-shards N] [--kinds train,featurize] [--data PATH] ` +
      `[--name NAME]`,
  );
  exit(2);
};
const server = a.server ?? fail("--server URL is required");
try {
  new URL(server);
} catch {
  fail(`--server "${server}" is not a URL`);
}
const maxShards = a["max-shards"] === undefined ? undefined : Number(a["max-shards"]);
if (maxShards !== undefined && !(Number.isInteger(maxShards) && maxShards > 0)) {
  fail(`--max-shards must be a positive integer, got "${a["max-shards"]}"`);
}
const kinds = a.kinds?.split(",").map((s) => s.trim()).filter(Boolean);

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

const splits = new Map<string, Promise<Dataset>>();
async function loadTrainSplit(name: string): Promise<Dataset> {
  let p = splits.get(name);
  if (!p) {
    p = (async () => {
      const local = a.data ??
        (name === baseName(DEFAULT_DATA) && (await pathKind(DEFAULT_DATA)) === "file" ? DEFAULT_DATA : undefined);
      if (local) return loadCifar10(local, { split: "train" });
      log(`downloading ${name} from the coordinator`);
      const res = await fetch(`${server.replace(/\/+$/, "")}/v1/datasets/${encodeURIComponent(name)}`, {
        signal: ctl.signal,
      });
      if (!res.ok) throw new Error(`dataset ${name}: ${res.status} ${await res.text()}`);
      return loadCifar10Archive(new Uint8Array(await res.arrayBuffer()), name, { split: "train" });
    })();
    p.catch(() => splits.delete(name));
    splits.set(name, p);
  }
  return p;
}

// Decode the data set before taking a lease (seconds of blocking work: heartbeats would starve).
const preload =
  (await loadTrainSplit(baseName(DEFAULT_DATA)).catch((e) => log(`no data set preloaded: ${(e as Error).message}`)))?.n;
if (preload) log(`data set ready (${preload} training images)`);

const all = trakExecutors({ rt, loadTrainSplit, log });
const executors = kinds ? Object.fromEntries(Object.entries(all).filter(([k]) => kinds.includes(k))) : all;
if (Object.keys(executors).length === 0) fail(`--kinds ${a.kinds}: none of ${Object.keys(all).join(", ")}`);
let done = 0;
const t0 = performance.now();
for (const [kind, run] of Object.entries(executors)) {
  executors[kind] = async (payload, inputs, ctx) => {
    const p = payload as { m?: number; modelIndex?: number; start?: number; end?: number };
    const what = kind === "featurize"
      ? `featurize model ${p.modelIndex} [${p.start}, ${p.end})`
      : `${kind} model ${p.m}`;
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
    name: a.name ?? `deno@${hostname()}`,
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
