// The generic volunteer loop: register, lease, run the shard's executor (dependencies downloaded
// lazily, heartbeats while it runs), upload the arrays, submit; until `signal` aborts or `maxShards`
// shards are submitted. Runtime-agnostic (Deno CLI worker, browser Web Worker, Node tests).
import type { Lease, LeasedShard } from "../protocol/api.ts";
import { CoordinatorClient, CoordinatorError } from "../protocol/client.ts";
import type { ArrayValue, Executor, Inputs } from "../protocol/job-kind.ts";

export type { Executor, ExecutorContext } from "../protocol/job-kind.ts";
export type { LeasedShard };

export type WorkerEvent =
  | { type: "registered"; volunteerId: string }
  | { type: "leased"; shard: LeasedShard; leaseId: string; fence: number; token: string }
  | { type: "progress"; shard: LeasedShard; frac: number }
  | { type: "submitted"; shard: LeasedShard; status: "accepted" | "pending-quorum" | "rejected"; reason?: string }
  | { type: "idle" }
  | { type: "error"; shard?: LeasedShard; message: string };

export interface WorkerOptions {
  /** Coordinator base URL, e.g. http://127.0.0.1:8787 */
  server: string;
  executors: Record<string, Executor>;
  onProgress?: (e: WorkerEvent) => void;
  signal?: AbortSignal;
  /** Stop after submitting this many shards. */
  maxShards?: number;
  /** Reuse a registration instead of registering. */
  token?: string;
  name?: string;
  agent?: string;
  /** An admin-issued invite, where the coordinator registers by invite only. */
  invite?: string;
  /** Wait between polls when nothing is ready (default 500 ms). */
  idleMs?: number;
  /** Stop after this many consecutive idle polls (default: never). */
  maxIdlePolls?: number;
  /** Hook between executor and upload (tests: tamper with results as a malicious volunteer would). */
  transform?: (shard: LeasedShard, out: Record<string, ArrayValue>) => Record<string, ArrayValue>;
}

export interface WorkerSummary {
  volunteerId: string;
  token: string;
  submitted: number;
  accepted: number;
  rejected: number;
  pending: number;
  errors: number;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });

export async function runWorker(o: WorkerOptions): Promise<WorkerSummary> {
  const emit = o.onProgress ?? (() => undefined);
  let token = o.token;
  let volunteerId = token?.split(".")[0] ?? "";
  while (!token) {
    try {
      ({ token, volunteerId } = await new CoordinatorClient(o.server).register(o.name, o.agent, o.invite));
      emit({ type: "registered", volunteerId });
    } catch (e) {
      // Registrations are limited per address (many volunteers behind one NAT): wait our turn.
      if (!(e instanceof CoordinatorError && e.status === 429) || o.signal?.aborted) throw e;
      await sleep(1000, o.signal);
    }
  }
  const api = new CoordinatorClient(o.server, token);
  const summary: WorkerSummary = { volunteerId, token, submitted: 0, accepted: 0, rejected: 0, pending: 0, errors: 0 };
  const kinds = Object.keys(o.executors);
  let idle = 0;
  while (!o.signal?.aborted && (o.maxShards === undefined || summary.submitted < o.maxShards)) {
    let lease: Lease | null;
    try {
      lease = await api.lease(kinds);
    } catch (e) {
      if (o.signal?.aborted) break;
      summary.errors++;
      emit({ type: "error", message: `lease: ${(e as Error).message}` });
      if (e instanceof CoordinatorError && (e.status === 401 || e.status === 403)) throw e;
      await sleep(o.idleMs ?? 500, o.signal);
      continue;
    }
    if (!lease) {
      emit({ type: "idle" });
      if (o.maxIdlePolls !== undefined && ++idle >= o.maxIdlePolls) break;
      await sleep(o.idleMs ?? 500, o.signal);
      continue;
    }
    idle = 0;
    const { shard, leaseId, fence } = lease;
    emit({ type: "leased", shard, leaseId, fence, token });
    // The executor stops when the worker stops or the lease is lost (a heartbeat refused).
    const shardAbort = new AbortController();
    const onStop = () => shardAbort.abort(o.signal?.reason);
    o.signal?.addEventListener("abort", onStop, { once: true });
    // Heartbeat every third of the lease, timed on this machine's clock (the server's deadline is on
    // the server's clock).
    const leaseMs = lease.leaseMs;
    let beating = true;
    const beat = async () => {
      while (beating && !shardAbort.signal.aborted) {
        await sleep(Math.max(50, leaseMs / 3), shardAbort.signal);
        if (!beating || shardAbort.signal.aborted) return;
        try {
          await api.heartbeat(leaseId, fence);
        } catch (e) {
          // A refusal (4xx but 429) means the lease is lost; network trouble and 5xx: try the next beat.
          if (e instanceof CoordinatorError && e.status >= 400 && e.status < 500 && e.status !== 429) {
            emit({ type: "error", shard, message: `heartbeat: ${e.message}` });
            shardAbort.abort(new Error("lease lost"));
          }
        }
      }
    };
    const heartbeats = beat();
    try {
      const cache = new Map<string, Promise<ArrayValue>>();
      const inputs: Inputs = {
        get(depKey, name) {
          if (!shard.deps.includes(depKey)) {
            return Promise.reject(new Error(`shard ${shard.key} has no dependency "${depKey}"`));
          }
          const k = `${depKey}\u0000${name}`;
          let p = cache.get(k);
          if (!p) {
            p = api.getArray(shard.jobId, depKey, name, shardAbort.signal);
            cache.set(k, p);
          }
          return p;
        },
      };
      const executor = o.executors[shard.kind];
      if (!executor) throw new Error(`no executor for shard kind "${shard.kind}"`);
      let out = await executor(shard.payload, inputs, {
        onProgress: (frac) => emit({ type: "progress", shard, frac }),
        signal: shardAbort.signal,
      });
      if (o.transform) out = o.transform(shard, out);
      for (const [name, a] of Object.entries(out)) await api.putArray(leaseId, fence, name, a, shardAbort.signal);
      beating = false;
      const verdict = await api.submit(leaseId, fence);
      summary.submitted++;
      if (verdict.status === "accepted") summary.accepted++;
      else if (verdict.status === "rejected") summary.rejected++;
      else summary.pending++;
      emit({ type: "submitted", shard, status: verdict.status, ...(verdict.reason ? { reason: verdict.reason } : {}) });
    } catch (e) {
      if (o.signal?.aborted) {
        // Stopping mid-shard: hand the lease back so the shard is reassigned now, not at its deadline.
        beating = false;
        await api.release(leaseId, fence);
        break;
      }
      summary.errors++;
      emit({
        type: "error",
        shard,
        message: e instanceof CoordinatorError ? e.message : `${shard.key}: ${(e as Error).message}`,
      });
    } finally {
      beating = false;
      shardAbort.abort();
      o.signal?.removeEventListener("abort", onStop);
      await heartbeats;
    }
  }
  return summary;
}
