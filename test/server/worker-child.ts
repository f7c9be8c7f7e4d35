// A volunteer in its own process, with the test executors, printing each event as a JSON line.
// Usage: tsx test/server/worker-child.ts SERVER_URL [MODE]
//   honest     (default) never cheats
//   ring       adds 0.5 to every rows result it sends (a ring of these agrees on the forgery)
//   patient:K  honest until K of its results were accepted (trusted by then, at a trust streak <= K) and in
//              every job it saw before; in later jobs it forges the shards it is the first to hold (fence 1:
//              nobody else has them, so a trusted volunteer's lease is likely solo) and, once a forgery got
//              through, every rows shard
// A submitted line says whether the result was forged.
import type { ArrayValue } from "../../src/protocol/job-kind.ts";
import { testExecutors } from "../../server/jobs/test-kinds.ts";
import { runWorker } from "../../src/volunteer/loop.ts";

const [server, mode = "honest"] = process.argv.slice(2);
const patience = /^patient:(\d+)$/.exec(mode);
if (!patience && !["honest", "ring"].includes(mode)) throw new Error(`unknown mode ${mode}`);
let accepted = 0, forgedAccepted = 0;
const trusted = () => patience !== null && accepted >= Number(patience[1]);
const fences = new Map<string, number>();
const earlierJobs = new Set<string>();
const forging = (shard: { key: string; jobId: string }) =>
  mode === "ring" ||
  (trusted() && !earlierJobs.has(shard.jobId) && (fences.get(shard.key) === 1 || forgedAccepted > 0));
const forged = new Set<string>();
const print = (e: Record<string, unknown>) => console.log(JSON.stringify(e));

await runWorker({
  server,
  executors: testExecutors,
  name: mode,
  idleMs: 20,
  transform: (shard, out) => {
    if (!forging(shard) || !out.rows) return out;
    forged.add(shard.key);
    return { ...out, rows: { ...out.rows, data: (out.rows.data as Float32Array).map((v) => v + 0.5) } as ArrayValue };
  },
  onProgress: (e) => {
    if (e.type === "leased") {
      fences.set(e.shard.key, e.fence);
      if (!trusted()) earlierJobs.add(e.shard.jobId);
      print({ type: e.type, key: e.shard.key, jobId: e.shard.jobId, leaseId: e.leaseId, fence: e.fence });
    } else if (e.type === "submitted") {
      if (e.status === "accepted") accepted++;
      if (e.status === "accepted" && forged.has(e.shard.key)) forgedAccepted++;
      print({ type: e.type, key: e.shard.key, status: e.status, forged: forged.has(e.shard.key) });
    } else if (e.type === "registered") print(e);
    else print({ type: e.type });
  },
}).then(() => print({ type: "stopped" }), (e: Error) => print({ type: "stopped", message: e.message }));
