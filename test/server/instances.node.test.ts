// Several coordinator instances behind one address: two apps on one PostgreSQL schema and one blob
// directory, volunteers spread over both. Every shard is accepted once and the job finishes once.
import { setMaxListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { DiskBlobStore } from "../../server/blobs.ts";
import { testExecutors } from "../../server/jobs/test-kinds.ts";
import { runWorker } from "../../src/volunteer/loop.ts";
import {
  ADMIN_AUTH,
  createJob,
  freshSchema,
  openStore,
  type Running,
  startCoordinator,
  tempDir,
  waitForJob,
} from "./support.ts";

describe("several coordinator instances (pg)", () => {
  it("share the work: each shard accepted once, one finish", async () => {
    const schema = freshSchema();
    const blobs = new DiskBlobStore(tempDir("coord-shared-blobs"));
    const logs: string[][] = [[], []];
    const instances: Running[] = [];
    for (const i of [0, 1]) {
      instances.push(
        await startCoordinator("pg", {
          store: await openStore("pg", {}, schema),
          blobs,
          instanceId: `instance-${i}`,
          log: (m) => logs[i].push(m),
        }),
      );
    }
    const stop = new AbortController();
    setMaxListeners(100, stop.signal);
    try {
      const jobId = await createJob(instances[0].url, { n: 60, rowsPerShard: 3, block: 6, seed: 17 });
      const workers = Array.from(
        { length: 12 },
        (_, i) =>
          runWorker({
            server: instances[i % 2].url,
            executors: testExecutors,
            name: `w${i}`,
            signal: stop.signal,
            idleMs: 50,
          }),
      );
      const done = await waitForJob(instances[1].url, jobId, 60_000);
      stop.abort();
      await Promise.all(workers);
      expect(done.state).toBe("done");
      const summary = done.summary as { members: number[]; planted: number[] };
      expect(summary.members).toEqual(summary.planted);
      // each shard accepted once, and exactly one instance ran the finish step
      const results = await instances[0].store.jobResults(jobId);
      for (const sh of await instances[0].store.listShards(jobId)) {
        expect(`${sh.key}: ${results.filter((r) => r.key === sh.key && r.status === "accepted").length}`).toBe(
          `${sh.key}: 1`,
        );
      }
      const finishers = logs.map((l) => l.filter((m) => m.includes("all shards accepted, finishing")).length);
      expect(finishers[0] + finishers[1]).toBe(1);
      // both instances serve the report (the files are in the shared blob store)
      for (const c of instances) {
        const res = await fetch(`${c.url}/v1/jobs/${jobId}/report/summary.json`, { headers: ADMIN_AUTH });
        expect(res.status).toBe(200);
      }
    } finally {
      stop.abort();
      for (const c of instances) await c.close();
    }
  });
});
