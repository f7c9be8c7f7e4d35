// Crashes: kill -9 of the coordinator process mid-job (Node on SQLite or PostgreSQL, or workerd; restart on
// the same database: the job completes, no shard lost or accepted twice), and kill -9 of a worker process
// mid-shard (its lease expires and the shard is completed by someone else).
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { testExecutors } from "../../server/jobs/test-kinds.ts";
import { openPg } from "../../server/store/pg.ts";
import { openSqliteNode } from "../../server/store/sqlite-node.ts";
import { SqlStore } from "../../server/store/sql.ts";
import { startEdge } from "../../server/serve-edge.ts";
import { runWorker } from "../../src/volunteer/loop.ts";
import {
  ADMIN,
  type Backend,
  createJob,
  freePort,
  freshSchema,
  jobStatus,
  killed,
  NODE_TSX,
  pgUrl,
  remoteStore,
  spawnUntil,
  startCoordinator,
  tempDir,
  waitForJob,
} from "./support.ts";

for (const backend of ["sqlite", "pg", "workerd"] as Backend[]) {
  describe(`crash recovery (${backend})`, () => {
    it(
      "kill -9 of the coordinator mid-job, restart on the same database: the job completes, each shard accepted " +
        "once",
      async () => {
        const dir = tempDir("coord-crash");
        const port = await freePort();
        const schema = freshSchema();
        const dbArgs = backend === "pg" ? ["--pg", pgUrl(), "--pg-schema", schema] : ["--db", join(dir, "db.sqlite")];
        const args = [
          "server/main.node.ts",
          "--port",
          String(port),
          "--host",
          "127.0.0.1",
          ...dbArgs,
          "--blobs",
          join(dir, "blobs"),
          "--admin-token",
          ADMIN,
          "--kinds",
          "test",
          "--volunteer-dir",
          dir,
          "--lease-ms",
          "1500",
          "--revalidate-ms",
          "500",
          "--sweep-ms",
          "200",
        ];
        const url = `http://127.0.0.1:${port}`;
        const start = async () => {
          if (backend !== "workerd") return spawnUntil(process.execPath, [...NODE_TSX, ...args], /listening on/);
          const config = { leaseMs: 1500, revalidateAfterMs: 500, sweepMs: 200 };
          return (await startEdge({ port, data: join(dir, "edge"), adminToken: ADMIN, config, testHooks: true })).child;
        };
        // The stores as they are after the job: the database itself, or through the restarted workerd.
        const openStore = async () =>
          backend === "workerd" ? remoteStore(url, "coordinator") : new SqlStore(
            backend === "pg" ? await openPg(pgUrl(), { schema }) : openSqliteNode(join(dir, "db.sqlite")),
          );
        let child = await start();
        const stop = new AbortController();
        let workers: Promise<unknown>[] = [];
        try {
          const spec = { n: 60, rowsPerShard: 2, block: 6, seed: 31, slowMs: 30, finishShard: true };
          const jobId = await createJob(url, spec);
          workers = Array.from(
            { length: 6 },
            (_, i) =>
              runWorker({ server: url, executors: testExecutors, name: `w${i}`, signal: stop.signal, idleMs: 50 }),
          );
          for (;;) {
            const s = await jobStatus(url, jobId);
            if (s.shards.accepted >= 15) break;
            await new Promise((r) => setTimeout(r, 20));
          }
          await killed(child, "SIGKILL");
          const atCrash = (await jobStatus(url, jobId).catch(() => null)) === null;
          expect(atCrash).toBe(true); // really down
          await new Promise((r) => setTimeout(r, 300));
          child = await start();
          const done = await waitForJob(url, jobId, 60_000);
          stop.abort();
          await Promise.all(workers);
          expect(done.state).toBe("done");
          expect(done.shards.accepted).toBe(61); // 30 rows, 30 scale and the finish shard
          const summary = done.summary as { members: number[]; planted: number[] };
          expect(summary.members).toEqual(summary.planted);
          if (backend !== "workerd") await killed(child, "SIGTERM");
          const store = await openStore();
          try {
            const results = await store.jobResults(jobId);
            for (const sh of await store.listShards(jobId)) {
              const acc = results.filter((r) => r.key === sh.key && r.status === "accepted");
              expect(`${sh.key}: ${acc.length}`).toBe(`${sh.key}: 1`);
              expect(sh.acceptedResult).toBe(acc[0].id);
            }
          } finally {
            await store.close();
          }
        } finally {
          stop.abort();
          await Promise.all(workers);
          await killed(child, "SIGKILL");
        }
      },
    );
  });
}

describe("crash recovery: worker", () => {
  it("kill -9 of a worker mid-shard: its lease expires and the shard is completed by others", async () => {
    const c = await startCoordinator("sqlite", { leaseMs: 800 });
    const stop = new AbortController();
    let helpers: Promise<unknown>[] = [];
    let child: ChildProcess | undefined;
    try {
      const jobId = await createJob(c.url, { n: 8, rowsPerShard: 4, block: 3, seed: 3, scale: false, slowMs: 1500 });
      let leased: { key: string; leaseId: string; fence: number } | undefined;
      child = await spawnUntil(
        process.execPath,
        [...NODE_TSX, "test/server/worker-child.ts", c.url],
        /"type":"leased"/,
        (l) => {
          const e = JSON.parse(l) as { type: string; key: string; leaseId: string; fence: number };
          if (e.type === "leased") leased ??= e;
        },
      );
      // it heartbeats while the executor sleeps: the lease outlives its first deadline
      await new Promise((r) => setTimeout(r, 1000));
      expect((await c.store.getLease(leased!.leaseId))!.deadline).toBeGreaterThan(Date.now());
      await killed(child, "SIGKILL");
      const killedAt = Date.now();
      helpers = Array.from(
        { length: 3 },
        (_, i) =>
          runWorker({ server: c.url, executors: testExecutors, name: `h${i}`, signal: stop.signal, idleMs: 50 }),
      );
      const done = await waitForJob(c.url, jobId, 30_000);
      expect(done.state).toBe("done");
      const dead = (await c.store.getLease(leased!.leaseId))!;
      expect(dead.state).toBe("active"); // never submitted...
      expect(dead.deadline).toBeLessThan(killedAt + 900); // ...and expired without heartbeats
      const results = await c.store.shardResults(jobId, leased!.key);
      expect(results.filter((r) => r.leaseId === dead.id).length).toBe(0);
      expect(results.filter((r) => r.status === "accepted").length).toBe(1);
      // reissued leases, fences past the dead one's neighbours
      for (const r of results) expect(r.fence).toBeGreaterThan(dead.fence - 2);
      expect(Math.max(...results.map((r) => r.fence))).toBeGreaterThan(dead.fence);
    } finally {
      stop.abort();
      await Promise.all(helpers);
      if (child) await killed(child, "SIGKILL");
      await c.close();
    }
  });
});
