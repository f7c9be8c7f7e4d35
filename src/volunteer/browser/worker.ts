// The volunteer's Web Worker: acquires WebGPU here (off the page's main thread), runs the generic
// worker loop (../loop.ts) with the TRAK executors, and reports status to the page through comlink.
// The job's dataset comes from the coordinator (GET /v1/datasets/:name), once per worker, hash-checked.
import * as Comlink from "comlink";
import "../../../kernels/index.ts"; // the user variants (kernels/variants.ts), as in the CLIs
import { getRuntime } from "../../gpu/runtime.ts";
import { datasetLoaders, downloadDataset } from "../dataset.ts";
import { type Executor, trakExecutors } from "../executors.ts";
import { runWorker } from "../loop.ts";

export interface VolunteerStatus {
  state: "starting" | "running" | "idle" | "stopped" | "error";
  adapter?: string;
  shardsDone: number;
  /** Shards leased so far, and the coordinator's verdicts on those submitted. */
  leased?: number;
  verdicts?: Record<string, string>;
  current?: { kind: string; key: string; fraction: number };
  /** The lease held now, so the page can hand it back if the tab closes before this worker can. */
  lease?: { server: string; token: string; leaseId: string; fence: number };
  shardsPerMinute?: number;
  message?: string;
}

export interface StartOptions {
  server: string;
  /** Data set to download before asking for work (default the CIFAR-10 tarball). */
  dataset?: string;
  /** Executors to offer (default all). */
  kinds?: string[];
  maxShards?: number;
  name?: string;
  agent?: string;
  invite?: string;
}

let abort: AbortController | undefined;
const DEFAULT_DATASET = "cifar-10-binary.tar.gz";
export const READY = "volunteer-worker-ready";

/** A short name for a shard from its payload (the executor does not see the key). */
function shardLabel(kind: string, payload: unknown): string {
  const p = payload as { m?: number; modelIndex?: number; start?: number; end?: number };
  return kind === "featurize"
    ? `model ${p.modelIndex} examples ${p.start}-${p.end}`
    : kind === "train"
    ? `model ${p.m}`
    : kind;
}

const api = {
  async start(o: StartOptions, onStatus: (s: VolunteerStatus) => void): Promise<VolunteerStatus> {
    abort?.abort();
    const ctl = (abort = new AbortController());
    const status: VolunteerStatus = { state: "starting", shardsDone: 0 };
    const t0 = performance.now();
    const emit = (message?: string) => onStatus({ ...status, message });
    emit("acquiring WebGPU");
    const rt = await getRuntime();
    status.adapter = rt.adapterName;
    const { loadTrainSplit, loadTestSplit } = datasetLoaders((name) =>
      downloadDataset(o.server, name, { signal: ctl.signal, say: emit })
    );
    // Wrap each executor to follow the current shard and its progress.
    const executors: Record<string, Executor> = {};
    for (
      const [kind, run] of Object.entries(
        trakExecutors({ rt, loadTrainSplit, loadTestSplit, log: (m) => emit(m), autotune: false }),
      )
    ) {
      if (o.kinds && !o.kinds.includes(kind)) continue;
      executors[kind] = async (payload, inputs, ctx) => {
        status.state = "running";
        status.leased = (status.leased ?? 0) + 1;
        status.current = { kind, key: shardLabel(kind, payload), fraction: 0 };
        emit(`shard ${kind} ${status.current.key}`);
        let last = 0;
        const out = await run(payload, inputs, {
          ...ctx,
          onProgress: (f) => {
            ctx.onProgress(f);
            status.current!.fraction = f;
            const now = performance.now();
            if (now - last > 250) {
              last = now;
              emit();
            }
          },
        });
        status.shardsDone++;
        status.shardsPerMinute = status.shardsDone / ((performance.now() - t0) / 60000);
        status.current = undefined;
        emit(`finished ${kind} ${shardLabel(kind, payload)}`);
        return out;
      };
    }
    // Decode the data set before taking a lease: it blocks this thread (and its heartbeats) for seconds. A
    // coordinator may not serve the default one (the edge keeps uploads only): then the first shard loads its own.
    const preload = o.dataset ?? DEFAULT_DATASET;
    await loadTrainSplit(preload).then(
      () => emit("data set ready; asking for work"),
      (e: Error) => emit(`no data set preloaded (${preload}: ${e.message}); asking for work`),
    );
    status.state = "running";
    try {
      await runWorker({
        server: o.server,
        executors,
        signal: ctl.signal,
        maxShards: o.maxShards,
        name: o.name,
        agent: o.agent,
        invite: o.invite,
        onProgress: (e) => {
          if (e.type === "leased") {
            status.lease = { server: o.server, token: e.token, leaseId: e.leaseId, fence: e.fence };
          }
          if (e.type === "submitted" || e.type === "error") status.lease = undefined;
          if (e.type === "submitted") (status.verdicts ??= {})[e.shard.key] = e.status;
          if (e.type === "submitted") emit(`${e.shard.key}: ${e.status}${e.reason ? ` (${e.reason})` : ""}`);
          else if (e.type === "leased") emit(`leased ${e.shard.key}`);
          else if (e.type === "error") emit(`error: ${e.message}`);
          else if (e.type === "idle" && status.state !== "idle") {
            status.state = "idle";
            emit("no work ready; polling");
          }
        },
      });
      status.state = "stopped";
    } catch (e) {
      status.state = ctl.signal.aborted ? "stopped" : "error";
      status.message = (e as Error).message;
      if (!ctl.signal.aborted) throw e;
    }
    status.current = undefined;
    status.lease = undefined;
    return { ...status };
  },
  stop(): void {
    abort?.abort();
  },
};

export type VolunteerWorkerApi = typeof api;
Comlink.expose(api);
// Kernel modules load their shaders with top-level await, so this module finishes evaluating late;
// messages the page posts before then would be lost. The page waits for this.
(globalThis as unknown as { postMessage(m: unknown): void }).postMessage(READY);
