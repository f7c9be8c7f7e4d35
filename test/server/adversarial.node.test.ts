// Untrusted volunteers over real HTTP on loopback: ~20% malicious (wrong arrays, NaNs, replays,
// forged tokens), a patient cheater and a ring of colluders (volunteer processes, test/server/worker-child.ts),
// and 100 concurrent honest ones. Results must equal an all-honest run and every shard must be accepted
// exactly once.
import { setMaxListeners } from "node:events";
import { describe, expect, it } from "vitest";
import type { ArrayValue } from "../../src/protocol/job-kind.ts";
import { syntheticRows, testExecutors } from "../../server/jobs/test-kinds.ts";
import { runWorker, type WorkerEvent } from "../../src/volunteer/loop.ts";
import {
  type Backend,
  createJob,
  killed,
  NODE_TSX,
  ONE_ADDRESS_CROWD,
  register,
  type Running,
  spawnUntil,
  startCoordinator,
  waitForJob,
} from "./support.ts";

const SPEC = { n: 48, rowsPerShard: 4, block: 6, seed: 23 };

/** Every shard has one accepted result, and it holds the right numbers. */
async function checkAccepted(c: Running, jobId: string, spec: { n: number; seed: number; block: number }) {
  const shards = await c.store.listShards(jobId);
  const results = await c.store.jobResults(jobId);
  for (const sh of shards) {
    expect(`${sh.key}: ${results.filter((r) => r.key === sh.key && r.status === "accepted").length}`).toBe(
      `${sh.key}: 1`,
    );
    const p = sh.payload as { start: number; count: number };
    const want = syntheticRows({ seed: spec.seed, n: spec.n, start: p.start, count: p.count, block: spec.block });
    const got = (await c.inputs(jobId).get(sh.key, sh.deterministic ? "rows" : "scaled")).data;
    let err = 0;
    for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - (sh.deterministic ? 1 : 2) * want[i]));
    expect(err).toBeLessThanOrEqual(sh.deterministic ? 0 : 1.01e-3);
  }
  return { shards, results };
}

// Idle workers poll every idleMs: 100 of them at 200 ms is 500 requests/s on the one test process.
function honestRun(c: Running, workers: number, signal: AbortSignal, idleMs = 50) {
  return Array.from(
    { length: workers },
    (_, i) => runWorker({ server: c.url, executors: testExecutors, name: `honest-${i}`, signal, idleMs }),
  );
}

interface Volunteer {
  id: string;
  /** Resolves when its worker loop ends, to the reason (a quarantined volunteer's is the 403). */
  stopped: Promise<string>;
  kill: () => Promise<void>;
}

/** A volunteer process (test/server/worker-child.ts in `mode`), once registered; `onEvent` sees its events. */
async function volunteerProcess(
  url: string,
  mode: string,
  onEvent: (e: { type: string; key?: string; status?: string; forged?: boolean }) => void = () => {},
): Promise<Volunteer> {
  let id = "";
  let stop: (reason: string) => void = () => {};
  const stopped = new Promise<string>((r) => (stop = r));
  const child = await spawnUntil(
    process.execPath,
    [...NODE_TSX, "test/server/worker-child.ts", url, mode],
    /"type":"registered"/,
    (l) => {
      const e = JSON.parse(l);
      if (e.type === "registered") id = e.volunteerId;
      if (e.type === "stopped") stop(e.message ?? "");
      onEvent(e);
    },
  );
  child.once("exit", () => stop("exited"));
  return { id, stopped, kill: () => killed(child, "SIGTERM") };
}

for (const backend of ["sqlite", "pg", "workerd"] as Backend[]) {
  describe(`coordinator under adversarial volunteers (${backend})`, () => {
    it("20% malicious volunteers are rejected and the result equals an all-honest run", async () => {
      const c = await startCoordinator(backend, { leaseMs: 700, ...ONE_ADDRESS_CROWD });
      try {
        // the all-honest reference run
        const refId = await createJob(c.url, SPEC);
        let stop = new AbortController();
        let workers = honestRun(c, 4, stop.signal);
        const ref = await waitForJob(c.url, refId);
        stop.abort();
        await Promise.all(workers);
        expect(ref.state).toBe("done");

        const jobId = await createJob(c.url, SPEC);
        stop = new AbortController();
        const refused: number[] = [];
        const malicious = new Set<string>();
        const liarRuns: Promise<unknown>[] = [];
        // A liar runs until a check catches it: then it is quarantined and every request it makes is refused.
        const note = async (o: Omit<Parameters<typeof runWorker>[0], "server" | "token">) => {
          const { volunteerId, token } = await register(c.url, o.name);
          malicious.add(volunteerId);
          liarRuns.push(
            runWorker({ ...o, server: c.url, token }).catch((e: Error) => {
              expect(e.message).toMatch(/^403: this volunteer is quarantined: /);
            }),
          );
        };
        // wrong numbers: each liar shifts by its own amount, so two liars never agree with each other
        for (const [i, shift] of [0.01, 0.02].entries()) {
          await note({
            executors: testExecutors,
            name: `liar-${i}`,
            signal: stop.signal,
            idleMs: 50,
            transform: (_s, out) =>
              Object.fromEntries(
                Object.entries(out).map(([k, a]) => [k, {
                  ...a,
                  data: (a.data as Float32Array).map((v) => v + shift),
                } as ArrayValue]),
              ),
          });
        }
        // NaNs: every upload is refused; its leases expire and go to others
        await note({
          executors: testExecutors,
          name: "nan",
          signal: stop.signal,
          idleMs: 50,
          transform: (_s, out) =>
            Object.fromEntries(
              Object.entries(out).map((
                [k, a],
              ) => [k, { ...a, data: (a.data as Float32Array).map((v, j) => (j === 3 ? NaN : v)) } as ArrayValue]),
            ),
        });
        // replays and forgeries: honest numbers, then the same submission again, a heartbeat on the
        // submitted lease, a forged token (its own id, a made-up secret) and a stale fence
        const replay = await register(c.url, "replayer");
        const replayLeases: { leaseId: string; fence: number }[] = [];
        const attempts: Promise<unknown>[] = [];
        const replayer = runWorker({
          server: c.url,
          executors: testExecutors,
          token: replay.token,
          signal: stop.signal,
          idleMs: 50,
          onProgress: (e: WorkerEvent) => {
            if (e.type === "leased") replayLeases.push({ leaseId: e.leaseId, fence: e.fence });
            if (e.type !== "submitted") return;
            const { leaseId, fence } = replayLeases[replayLeases.length - 1];
            const post = (path: string, token: string, body: unknown) =>
              fetch(`${c.url}/v1/leases/${leaseId}/${path}`, {
                method: "POST",
                headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
                body: JSON.stringify(body),
              }).then((r) => refused.push(r.status));
            attempts.push(
              post("submit", replay.token, { fence }),
              post("heartbeat", replay.token, { fence }),
              post("submit", `${replay.volunteerId}.forged-secret`, { fence }),
              post("submit", replay.token, { fence: fence - 1 }),
            );
          },
        });
        // The honest crowd starts last, so that the liars are in from the first shards.
        workers = honestRun(c, 16, stop.signal);
        const done = await waitForJob(c.url, jobId, 60_000);
        stop.abort();
        await Promise.all([...workers, ...liarRuns]);
        await replayer;
        await Promise.all(attempts);
        expect(done.state).toBe("done");
        // same search result and matrix as the honest run; the noisy totals agree within the noise
        const a = done.summary as { members: number[]; objective: number; matrixTotal: number; scaledTotal: number };
        const b = ref.summary as typeof a;
        expect(a.members).toEqual(b.members);
        expect(a.objective).toBe(b.objective);
        expect(a.matrixTotal).toBe(b.matrixTotal);
        expect(Math.abs(a.scaledTotal - b.scaledTotal)).toBeLessThan(48 * 48 * 2e-3);
        const { results } = await checkAccepted(c, jobId, SPEC);
        // Liars' results never count, and their streaks are reset (the replayer's own honest results may count).
        // A liar is quarantined exactly when a check compared its numbers (one may not be before the job ends).
        for (const id of malicious) {
          const caught = results.some((r) =>
            r.volunteerId === id && r.status === "rejected" && /disagreed|spot check/.test(r.reason ?? "")
          );
          expect(`${id}: ${(await c.store.getVolunteer(id))!.quarantine !== null}`).toBe(`${id}: ${caught}`);
        }
        for (const id of malicious) {
          expect(
            results.filter((r) => r.volunteerId === id && (r.status === "accepted" || r.status === "valid")).length,
          ).toBe(0);
          const v = (await c.store.getVolunteer(id))!;
          expect(v.streak).toBe(0);
        }
        const liars = [...malicious].map((id) => results.filter((r) => r.volunteerId === id).length).reduce(
          (x, y) => x + y,
          0,
        );
        expect(liars).toBeGreaterThan(0);
        // every replay/forgery attempt that came back was refused with a 4xx
        expect(refused.length).toBeGreaterThan(0);
        for (const s of refused) expect(s >= 400 && s < 500).toBe(true);
      } finally {
        await c.close();
      }
    });

    it("a patient cheater process: honest until trusted, then forging; caught, its accepted work re-runs", async () => {
      // Trusted after 10 valid results (the default). Trusted volunteers get solo leases until two of the
      // cheater's forgeries have been accepted unchecked, replicas after that: the next forgery is caught.
      const forgedAccepted: string[] = [];
      const c = await startCoordinator(backend, {
        leaseMs: 2000,
        trustStreak: 10,
        auditFraction: 0, // the replicated check is what catches it here; the audit has its own test
        ...ONE_ADDRESS_CROWD,
      });
      await c.setRandom(0);
      let cheater: Volunteer | undefined;
      try {
        const spec = { n: 60, rowsPerShard: 1, block: 6, seed: 31 }; // rows/i, and scale/i computed from rows/i
        // Honest through the first job, where it earns trust (10 accepted results); in the next it forges the
        // rows shards it is the first to hold, and every rows shard once one got through: solo ones get through
        // until the coordinator stops granting them, and the first replicated one catches it.
        cheater = await volunteerProcess(c.url, "patient:10", (e) => {
          if (e.type === "submitted" && e.forged && e.status === "accepted") {
            if (forgedAccepted.push(e.key!) === 2) void c.setRandom(0.99);
          }
        });
        let stop = new AbortController();
        let workers = honestRun(c, 3, stop.signal, 20);
        const ref = await waitForJob(c.url, await createJob(c.url, spec), 60_000);
        stop.abort();
        await Promise.all(workers);
        expect((await c.store.getVolunteer(cheater.id))!.streak).toBeGreaterThanOrEqual(10);

        const jobId = await createJob(c.url, spec);
        stop = new AbortController();
        workers = honestRun(c, 3, stop.signal, 20);
        const done = await waitForJob(c.url, jobId, 60_000);
        stop.abort();
        await Promise.all(workers);
        const ended = await Promise.race([
          cheater.stopped,
          new Promise((r) => setTimeout(() => r("still running 20 s after the job finished"), 20_000)),
        ]);
        expect(done.state).toBe("done");
        const a = done.summary as { members: number[]; objective: number; matrixTotal: number; scaledTotal: number };
        const b = ref.summary as typeof a;
        expect([a.members, a.objective, a.matrixTotal]).toEqual([b.members, b.objective, b.matrixTotal]);
        expect(Math.abs(a.scaledTotal - b.scaledTotal)).toBeLessThan(60 * 60 * 2e-3);
        expect((await c.store.getVolunteer(cheater.id))!.quarantine).toMatch(/^disagreed with the accepted/);
        expect(ended).toMatch(/^403: this volunteer is quarantined/);
        console.log(
          `patient cheater (${backend}): ${forgedAccepted.length} forged results accepted before it was caught`,
        );
        expect(forgedAccepted.length).toBeGreaterThan(0);
        const { results } = await checkAccepted(c, jobId, spec);
        const standing = results.filter((r) =>
          r.volunteerId === cheater!.id && (r.status === "accepted" || r.status === "valid")
        );
        expect(standing.length).toBe(0);
        expect(done.events.map((e) => e.message).join("\n")).toMatch(`volunteer ${cheater.id} was quarantined`);
      } finally {
        await cheater?.kill();
        await c.close();
      }
    });

    it("a ring of 30% of the volunteers agreeing on forged rows: audited, quarantined, result honest", async () => {
      // Default settings. Results agreed on by a volunteer with fewer than 3 valid ones are recomputed here: a
      // pair of the ring's fresh identities is caught at once; a ring member paired with an honest one
      // disagrees, and is caught when two honest ones agree. (A ring that first earns trust is audited on 5%
      // of the shards it decides, about r^2 of them for a ring of share r: server/README.md.)
      const c = await startCoordinator(backend, { leaseMs: 2000, ...ONE_ADDRESS_CROWD });
      let members: Volunteer[] = [];
      try {
        const spec = { ...SPEC, scale: false };
        const jobId = await createJob(c.url, spec);
        const stop = new AbortController();
        // The ring alone first, three processes: its members can only be each other's replicas, and agree.
        members = await Promise.all(Array.from({ length: 3 }, () => volunteerProcess(c.url, "ring")));
        const ring = members.map((m) => m.id);
        const audited = async () => {
          let n = 0;
          for (const id of ring) if (/own computation/.test((await c.store.getVolunteer(id))?.quarantine ?? "")) n++;
          return n;
        };
        for (let t = 0; (await audited()) < 2; t++) {
          if (t > 400) throw new Error("no ring pair was audited in 20 s");
          await new Promise((r) => setTimeout(r, 50));
        }
        const honest = honestRun(c, 7, stop.signal, 20);
        const done = await waitForJob(c.url, jobId, 60_000);
        stop.abort();
        await Promise.all([...members.map((m) => m.stopped), ...honest]);
        expect(done.state).toBe("done");
        const { results } = await checkAccepted(c, jobId, spec);
        let caught = 0;
        for (const id of ring) {
          const sent = results.filter((r) => r.volunteerId === id);
          expect(sent.filter((r) => r.status === "accepted" || r.status === "valid").length).toBe(0);
          const { quarantine } = (await c.store.getVolunteer(id))!;
          if (sent.length) expect(quarantine).toMatch(/coordinator's own computation|disagreed with the accepted/);
          if (quarantine) caught++;
        }
        console.log(
          `ring (${backend}): ${caught} of 3 members quarantined; events:\n${
            done.events.map((e) => e.message).join("\n")
          }`,
        );
        expect(caught).toBeGreaterThan(0);
      } finally {
        await Promise.all(members.map((m) => m.kill()));
        await c.close();
      }
    });

    it("100 concurrent volunteers: every shard accepted exactly once", async () => {
      const c = await startCoordinator(backend, { rateLimit: { perSecond: 1000, burst: 1000 }, ...ONE_ADDRESS_CROWD });
      try {
        const spec = { n: 200, rowsPerShard: 2, block: 10, seed: 7 };
        const jobId = await createJob(c.url, spec);
        const stop = new AbortController();
        setMaxListeners(200, stop.signal); // 100 workers each listen for the stop
        let maxLeased = 0;
        const watch = setInterval(
          () => void c.store.shardCounts(jobId).then((s) => (maxLeased = Math.max(maxLeased, s.leased))),
          20,
        );
        const workers = honestRun(c, 100, stop.signal, 200);
        const done = await waitForJob(c.url, jobId, 90_000);
        clearInterval(watch);
        stop.abort();
        const summaries = await Promise.all(workers);
        expect(done.state).toBe("done");
        expect(done.shards.accepted).toBe(200);
        const { results } = await checkAccepted(c, jobId, spec);
        expect(results.filter((r) => r.status === "accepted").length).toBe(200);
        expect(summaries.filter((s) => s.submitted > 0).length).toBeGreaterThan(50);
        expect(maxLeased).toBeGreaterThan(20);
        console.log(
          `[${backend}] 100 volunteers: ${results.length} results for 200 shards, at most ${maxLeased} shards leased ` +
            `at once`,
        );
      } finally {
        await c.close();
      }
    });
  });
}
