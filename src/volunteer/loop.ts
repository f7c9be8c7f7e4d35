// The generic volunteer loop: register, lease, run the shard's executor (dependencies downloaded
// lazily, heartbeats while it runs), upload the arrays, submit; until `signal` aborts or `maxShards`
// shards are submitted. Runtime-agnostic (Deno CLI worker, browser Web Worker, Node tests).
import { CoordinatorError, coordinatorClient, errorOf, getArray, putArray, releaseLease } from "../../server/client.ts";
import type { ArraySpec, ArrayValue, Executor, Inputs } from "../../server/job-kind.ts";

export type { Executor, ExecutorContext } from "../../server/job-kind.ts";

export interface LeasedShard {
  jobId: string;
  key: string;
  kind: string;
  payload: unknown;
  deps: string[];
  outputs: Record<string, ArraySpec>;
}

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
    const res = await coordinatorClient(o.server).v1.volunteers.$post({ json: { name: o.name, agent: o.agent } });
    if ((res.status as number) === 429 && !o.signal?.aborted) {
      // Registrations are limited per address (many volunteers behind one NAT): wait our turn.
      await (res as Response).body?.cancel();
      await sleep(1000 * Number((res as Response).headers.get("retry-after") ?? 1), o.signal);
      continue;
    }
    if (!res.ok) throw await errorOf(res);
    const reg = (await res.json()) as { volunteerId: string; token: string };
    token = reg.token;
    volunteerId = reg.volunteerId;
    emit({ type: "registered", volunteerId });
  }
  const api = coordinatorClient(o.server, token);
  const summary: WorkerSummary = { volunteerId, token, submitted: 0, accepted: 0, rejected: 0, pending: 0, errors: 0 };
  const kinds = Object.keys(o.executors);
  let idle = 0;
  while (!o.signal?.aborted && (o.maxShards === undefined || summary.submitted < o.maxShards)) {
    let res: Response;
    try {
      res = await api.v1.leases.$post({ json: { kinds } });
    } catch (e) {
      if (o.signal?.aborted) break;
      summary.errors++;
      emit({ type: "error", message: `lease: ${(e as Error).message}` });
      await sleep(o.idleMs ?? 500, o.signal);
      continue;
    }
    if (res.status === 204) {
      emit({ type: "idle" });
      if (o.maxIdlePolls !== undefined && ++idle >= o.maxIdlePolls) break;
      await sleep(o.idleMs ?? 500, o.signal);
      continue;
    }
    if (!res.ok) {
      const err = await errorOf(res);
      summary.errors++;
      emit({ type: "error", message: `lease: ${err.message}` });
      if (err.status === 401 || err.status === 403) throw err;
      await sleep(o.idleMs ?? 500, o.signal);
      continue;
    }
    idle = 0;
    const lease = (await res.json()) as { leaseId: string; fence: number; deadline: number; leaseMs?: number; shard: LeasedShard };
    const { shard, leaseId, fence } = lease;
    emit({ type: "leased", shard, leaseId, fence, token });
    // The executor stops when the worker stops or the lease is lost (a heartbeat refused).
    const shardAbort = new AbortController();
    const onStop = () => shardAbort.abort(o.signal?.reason);
    o.signal?.addEventListener("abort", onStop, { once: true });
    // Heartbeat every third of the lease, timed on this machine's clock (the server's deadline is on
    // the server's clock); old servers without leaseMs: from the deadline.
    const leaseMs = lease.leaseMs ?? Math.max(150, lease.deadline - Date.now());
    let beating = true;
    const beat = async () => {
      while (beating && !shardAbort.signal.aborted) {
        await sleep(Math.max(50, leaseMs / 3), shardAbort.signal);
        if (!beating || shardAbort.signal.aborted) return;
        try {
          const r = await api.v1.leases[":leaseId"].heartbeat.$post({ param: { leaseId }, json: { fence } });
          if (r.ok) await r.body?.cancel();
          else if ((r.status as number) >= 400 && (r.status as number) < 500 && (r.status as number) !== 429) {
            emit({ type: "error", shard, message: `heartbeat: ${(await errorOf(r)).message}` });
            shardAbort.abort(new Error("lease lost"));
          }
        } catch {
          // transient network trouble: try again at the next beat
        }
      }
    };
    const heartbeats = beat();
    try {
      const cache = new Map<string, Promise<ArrayValue>>();
      const inputs: Inputs = {
        get(depKey, name) {
          if (!shard.deps.includes(depKey)) return Promise.reject(new Error(`shard ${shard.key} has no dependency "${depKey}"`));
          const k = `${depKey}\u0000${name}`;
          let p = cache.get(k);
          if (!p) {
            p = getArray(o.server, token!, shard.jobId, depKey, name, shardAbort.signal);
            cache.set(k, p);
          }
          return p;
        },
      };
      const executor = o.executors[shard.kind];
      if (!executor) throw new Error(`no executor for shard kind "${shard.kind}"`);
      let out = await executor(shard.payload, inputs, { onProgress: (frac) => emit({ type: "progress", shard, frac }), signal: shardAbort.signal });
      if (o.transform) out = o.transform(shard, out);
      for (const [name, a] of Object.entries(out)) await putArray(o.server, token, leaseId, fence, name, a, shardAbort.signal);
      beating = false;
      const sub = await api.v1.leases[":leaseId"].submit.$post({ param: { leaseId }, json: { fence } });
      if (!sub.ok) throw await errorOf(sub);
      const verdict = (await sub.json()) as { status: "accepted" | "pending-quorum" | "rejected"; reason?: string };
      summary.submitted++;
      if (verdict.status === "accepted") summary.accepted++;
      else if (verdict.status === "rejected") summary.rejected++;
      else summary.pending++;
      emit({ type: "submitted", shard, status: verdict.status, ...(verdict.reason ? { reason: verdict.reason } : {}) });
    } catch (e) {
      if (o.signal?.aborted) {
        // Stopping mid-shard: hand the lease back so the shard is reassigned now, not at its deadline.
        beating = false;
        await releaseLease(o.server, token, leaseId, fence);
        break;
      }
      summary.errors++;
      emit({ type: "error", shard, message: e instanceof CoordinatorError ? e.message : `${shard.key}: ${(e as Error).message}` });
    } finally {
      beating = false;
      shardAbort.abort();
      o.signal?.removeEventListener("abort", onStop);
      await heartbeats;
    }
  }
  return summary;
}
