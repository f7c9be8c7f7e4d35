// One job end to end on each store, honest workers over real HTTP on loopback: every shard accepted
// exactly once; finish runs once, on the coordinator or as the job's finish shard, and finds the planted
// block. Run by lifecycle.node.test.ts and lifecycle.deno.test.ts.
import { describe, expect, it } from "vitest";
import { testExecutors } from "../../server/jobs/test-kinds.ts";
import { runWorker } from "../../src/volunteer/loop.ts";
import { ADMIN_AUTH, type Backend, createJob, startCoordinator, waitForJob } from "./support.ts";

export function lifecycleSuite(backends: Backend[]): void {
  for (const backend of backends) {
    describe(`coordinator lifecycle (${backend})`, () => {
      for (const finishShard of [false, true]) {
        it(
          "honest workers complete a job; each shard accepted once, by two agreeing volunteers or a spot " +
            `check; finish ${finishShard ? "as a shard" : "on the coordinator"}`,
          async () => {
            const c = await startCoordinator(backend);
            try {
              const jobId = await createJob(c.url, { n: 40, rowsPerShard: 5, block: 6, seed: 11, finishShard });
              const stop = new AbortController();
              const workers = Array.from(
                { length: 4 },
                (_, i) =>
                  runWorker({
                    server: c.url,
                    executors: testExecutors,
                    name: `w${i}`,
                    signal: stop.signal,
                    idleMs: 20,
                  }),
              );
              const s = await waitForJob(c.url, jobId);
              stop.abort();
              await Promise.all(workers);
              expect(s.state).toBe("done");
              expect(s.shards.accepted).toBe(finishShard ? 17 : 16);
              const summary = s.summary as { members: number[]; planted: number[] };
              expect(summary.members).toEqual(summary.planted);
              const shards = await c.store.listShards(jobId);
              const results = await c.store.jobResults(jobId);
              for (const sh of shards) {
                const accepted = results.filter((r) => r.key === sh.key && r.status === "accepted");
                expect(accepted.length).toBe(1);
                expect(sh.acceptedResult).toBe(accepted[0].id);
                if (sh.deterministic) {
                  const agreeing = results.filter((r) =>
                    r.key === sh.key && (r.status === "accepted" || r.status === "valid")
                  );
                  expect(new Set(agreeing.map((r) => r.volunteerId)).size).toBe(2);
                }
              }
              const report = await fetch(`${c.url}/v1/jobs/${jobId}/report/report.html`, { headers: ADMIN_AUTH });
              expect(report.status).toBe(200);
              expect(await report.text()).toMatch("members:");
            } finally {
              await c.close();
            }
          },
        );
      }
    });
  }
}
