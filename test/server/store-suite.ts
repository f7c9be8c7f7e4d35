// The storage suite: the same checks on every backend (SQLite via better-sqlite3 in Node and
// node:sqlite in Deno, and a real PostgreSQL server). A settable clock expires leases without sleeping.
import { describe, expect, it } from "vitest";
import type { ShardPlan } from "../../src/protocol/job-kind.ts";
import { join } from "node:path";
import { ADDED_COLUMNS } from "../../server/store/rows.ts";
import type { SqlStore } from "../../server/store/sql.ts";
import { type Backend, freshSchema, openStore, tempDir } from "./support.ts";

const rowsShard = (key: string, deps: string[] = [], deterministic = true): ShardPlan => ({
  key,
  kind: "k",
  payload: { key },
  deps,
  outputs: { x: { dtype: "f32", shape: [2] } },
  deterministic,
});

async function withStore(backend: Backend, fn: (s: SqlStore, clock: { t: number }) => Promise<void>) {
  const clock = { t: 1_000_000 };
  const store = await openStore(backend, { now: () => clock.t });
  try {
    await fn(store, clock);
  } finally {
    await store.close();
  }
}

async function volunteers(s: SqlStore, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `vol-${i}-${crypto.randomUUID()}`);
  for (const id of ids) await s.createVolunteer(id, id, "", `hash-${id}`);
  return ids;
}

const stage = (s: SqlStore, leaseId: string, vol: string, fence: number, hash = "a".repeat(64)) =>
  s.stageArray(leaseId, vol, fence, "x", { dtype: "f32", shape: [2], hash });

export function storeSuite(backend: Backend): void {
  describe(`store (${backend})`, () => {
    it("a database made before the added columns gets them at start, with their defaults", async () => {
      const at = backend === "pg" ? freshSchema() : join(tempDir("coord-db"), "db.sqlite");
      const old = await openStore(backend, {}, at);
      await old.createJob("job1", "k", {}, [rowsShard("a")], true);
      await old.createVolunteer("v1", "v1", "", "hash-v1", "10.0.0.1");
      for (const { table, column } of ADDED_COLUMNS) await old.db.run(`ALTER TABLE ${table} DROP COLUMN ${column}`);
      await old.close();
      const s = await openStore(backend, {}, at);
      try {
        expect((await s.getJob("job1"))?.public).toBe(false);
        expect((await s.getVolunteer("v1"))?.source).toBe("");
        await s.createJob("job2", "k", {}, [rowsShard("a")], true);
        expect((await s.getJob("job2"))?.public).toBe(true);
      } finally {
        await s.close();
      }
    });

    it("deterministic shards go to two different volunteers; deps gate leasing; fences grow per shard", async () => {
      await withStore(backend, async (s) => {
        await s.createJob("job1", "k", {}, [rowsShard("a"), rowsShard("b", ["a"])]);
        const [v1, v2, v3] = await volunteers(s, 3);
        const l1 = await s.claimLease(v1, undefined, 1000, false);
        expect(l1?.shard.key).toBe("a");
        // the same volunteer never gets a second replica of "a"; "b" waits for "a"
        expect(await s.claimLease(v1, undefined, 1000, false)).toBe(null);
        const l2 = await s.claimLease(v2, undefined, 1000, false);
        expect(l2?.shard.key).toBe("a");
        expect(l2!.lease.fence).toBeGreaterThan(l1!.lease.fence);
        expect(await s.claimLease(v3, undefined, 1000, false)).toBe(null);
        expect(await s.claimLease(v3, ["other-kind"], 1000, false)).toBe(null);
        await stage(s, l1!.lease.id, v1, l1!.lease.fence);
        const sub = await s.submit(l1!.lease.id, v1, l1!.lease.fence);
        expect(sub.result.status).toBe("pending");
        const acc = await s.accept(sub.result.id, null, []);
        expect(acc.status).toBe("accepted");
        expect(acc.jobComplete).toBe(false);
        const lb = await s.claimLease(v3, ["k"], 1000, false);
        expect(lb?.shard.key).toBe("b");
        expect((await s.shardCounts("job1")).accepted).toBe(1);
      });
    });

    it(
      "a lease expires and is reissued with a higher fence; expired, foreign, stale and replayed uses are " +
        "refused",
      async () => {
        await withStore(backend, async (s, clock) => {
          await s.createJob("job2", "k", {}, [rowsShard("a", [], false)]);
          const [v1, v2] = await volunteers(s, 2);
          const l1 = (await s.claimLease(v1, undefined, 1000, false))!;
          expect(await s.claimLease(v2, undefined, 1000, false)).toBe(null); // nondeterministic: one at a time
          clock.t += 600;
          const d = await s.heartbeat(l1.lease.id, v1, l1.lease.fence, 1000);
          expect(d).toBe(clock.t + 1000);
          await expect(s.heartbeat(l1.lease.id, v2, l1.lease.fence, 1000)).rejects.toThrow("another volunteer");
          await expect(s.heartbeat(l1.lease.id, v1, l1.lease.fence + 7, 1000)).rejects.toThrow("stale fence");
          clock.t += 1001;
          expect((await s.shardCounts("job2")).leased).toBe(0);
          await expect(s.heartbeat(l1.lease.id, v1, l1.lease.fence, 1000)).rejects.toThrow("expired");
          await expect(stage(s, l1.lease.id, v1, l1.lease.fence)).rejects.toThrow("expired");
          const l2 = (await s.claimLease(v2, undefined, 1000, false))!;
          expect(l2.shard.key).toBe("a");
          expect(l2.lease.fence).toBeGreaterThan(l1.lease.fence);
          await expect(s.submit(l2.lease.id, v2, l2.lease.fence)).rejects.toThrow("missing arrays: x");
          await stage(s, l2.lease.id, v2, l2.lease.fence);
          const sub = await s.submit(l2.lease.id, v2, l2.lease.fence);
          await expect(s.submit(l2.lease.id, v2, l2.lease.fence)).rejects.toThrow("already submitted");
          await expect(s.submit(l1.lease.id, v1, l1.lease.fence)).rejects.toThrow("expired");
          expect((await s.accept(sub.result.id, null, [])).jobComplete).toBe(true);
          expect((await s.jobResults("job2")).length).toBe(1);
        });
      },
    );

    it("a released lease frees its shard at once, and can no longer be used", async () => {
      await withStore(backend, async (s) => {
        await s.createJob("job-release", "k", {}, [rowsShard("a", [], false)]);
        const [v1, v2] = await volunteers(s, 2);
        const l1 = (await s.claimLease(v1, undefined, 60_000, false))!;
        expect(await s.claimLease(v2, undefined, 60_000, false)).toBe(null);
        await expect(s.release(l1.lease.id, v2, l1.lease.fence)).rejects.toThrow("another volunteer");
        await expect(s.release(l1.lease.id, v1, l1.lease.fence + 1)).rejects.toThrow("stale fence");
        expect((await s.shardCounts("job-release")).leased).toBe(1);
        await s.release(l1.lease.id, v1, l1.lease.fence);
        expect((await s.shardCounts("job-release")).leased).toBe(0);
        await expect(stage(s, l1.lease.id, v1, l1.lease.fence)).rejects.toThrow("released");
        const l2 = (await s.claimLease(v2, undefined, 60_000, false))!;
        expect(l2.shard.key).toBe("a");
        expect(l2.lease.fence).toBeGreaterThan(l1.lease.fence);
      });
    });

    it(
      "concurrent claims: every shard leased to exactly two distinct volunteers, fences unique per " +
        "shard",
      async () => {
        await withStore(backend, async (s) => {
          const shards = Array.from({ length: 6 }, (_, i) => rowsShard(`s${i}`));
          await s.createJob("job3", "k", {}, shards);
          const vols = await volunteers(s, 20);
          const got = (await Promise.all(vols.map((v) => s.claimLease(v, undefined, 10_000, false)))).filter((x) =>
            x !== null
          );
          expect(got.length).toBe(12);
          for (const sh of shards) {
            const mine = got.filter((g) => g!.shard.key === sh.key);
            expect(mine.length).toBe(2);
            expect(new Set(mine.map((g) => g!.lease.volunteerId)).size).toBe(2);
            expect(new Set(mine.map((g) => g!.lease.fence)).size).toBe(2);
          }
        });
      },
    );

    it("a shard is accepted exactly once under concurrent accepts; late submissions are rejected", async () => {
      await withStore(backend, async (s) => {
        await s.createJob("job4", "k", {}, [rowsShard("a", [], false)]);
        const vols = await volunteers(s, 5);
        // let five volunteers hold results on the one shard at once (the coordinator would ask for
        // more replicas only after disagreements), then accept them all concurrently
        await s.db.run(`UPDATE shards SET replicas = 5 WHERE job_id = 'job4'`);
        const results: string[] = [];
        for (const v of vols) {
          const l = (await s.claimLease(v, undefined, 1000, false))!;
          await stage(s, l.lease.id, v, l.lease.fence);
          results.push((await s.submit(l.lease.id, v, l.lease.fence)).result.id);
        }
        const outcomes = await Promise.all(results.map((r) => s.accept(r, null, [])));
        expect(outcomes.filter((o) => o.status === "accepted").length).toBe(1);
        expect(outcomes.filter((o) => o.jobComplete).length).toBe(1);
        const rows = await s.jobResults("job4");
        expect(rows.filter((r) => r.status === "accepted").length).toBe(1);
        expect(rows.filter((r) => r.status === "rejected").length).toBe(4);
        // a submission after acceptance is rejected as late and changes nothing
        const [v6] = await volunteers(s, 1);
        await s.db.run(`UPDATE shards SET state = 'open' WHERE job_id = 'job4'`);
        const l6 = (await s.claimLease(v6, undefined, 1000, false))!;
        await s.db.run(`UPDATE shards SET state = 'accepted' WHERE job_id = 'job4'`);
        await stage(s, l6.lease.id, v6, l6.lease.fence);
        const late = await s.submit(l6.lease.id, v6, l6.lease.fence);
        expect(late.result.status).toBe("rejected");
        expect((await s.getShard("job4", "a"))!.acceptedResult).toBe(rows.find((r) => r.status === "accepted")!.id);
      });
    });

    it(
      "the finish step is claimed by exactly one of many concurrent claimers, and re-claimable only after its " +
        "deadline",
      async () => {
        await withStore(backend, async (s, clock) => {
          await s.createJob("job5", "k", {}, [rowsShard("a", [], false)]);
          const [v] = await volunteers(s, 1);
          expect(await s.claimFinish("job5", "early", 1000)).toBe(false); // shards still open
          const l = (await s.claimLease(v, undefined, 1000, false))!;
          await stage(s, l.lease.id, v, l.lease.fence);
          await s.accept((await s.submit(l.lease.id, v, l.lease.fence)).result.id, null, []);
          expect(await s.jobsToFinish()).toEqual(["job5"]);
          const claims = await Promise.all(
            Array.from({ length: 12 }, (_, i) => s.claimFinish("job5", `owner-${i}`, 1000)),
          );
          expect(claims.filter(Boolean).length).toBe(1);
          const owner = `owner-${claims.indexOf(true)}`;
          expect(await s.jobsToFinish()).toEqual([]);
          clock.t += 500;
          expect(await s.extendFinish("job5", owner, 1000)).toBe(true);
          clock.t += 900;
          expect(await s.claimFinish("job5", "thief", 1000)).toBe(false);
          clock.t += 200;
          expect(await s.claimFinish("job5", "rescuer", 1000)).toBe(true);
          expect(await s.completeFinish("job5", owner, { late: true }, {})).toBe(false);
          expect(await s.completeFinish("job5", "rescuer", { ok: true }, { "summary.json": "b".repeat(64) })).toBe(
            true,
          );
          const job = (await s.getJob("job5"))!;
          expect(job.state).toBe("done");
          expect(job.summary).toEqual({ ok: true });
        });
      },
    );

    it("results whose validation died with a coordinator are found once they hold every replica slot", async () => {
      await withStore(backend, async (s, clock) => {
        await s.createJob("job7", "k", {}, [{ ...rowsShard("d"), kind: "d" }, {
          ...rowsShard("n", [], false),
          kind: "n",
        }]);
        const [v1, v2] = await volunteers(s, 2);
        // Shards are drawn at random: the kinds say which one each claim takes.
        const submitOne = async (v: string, kind = "d") => {
          const l = (await s.claimLease(v, [kind], 1000, false))!;
          await stage(s, l.lease.id, v, l.lease.fence);
          return (await s.submit(l.lease.id, v, l.lease.fence)).result;
        };
        const d1 = await submitOne(v1); // "d": one of two replicas in, the other slot still leasable
        const n1 = await submitOne(v1, "n"); // "n": its only slot holds an unchecked result
        expect(n1.key).toBe("n");
        clock.t += 1000;
        expect((await s.stuckResults(clock.t - 500)).map((r) => r.id)).toEqual([n1.id]);
        const d2 = await submitOne(v2);
        expect(d2.key).toBe("d");
        // d2 is too recent; d1 is old and the two now fill "d" (re-checking d1 beside d2's own check is harmless)
        expect((await s.stuckResults(clock.t - 500)).map((r) => r.id).sort()).toEqual([d1.id, n1.id].sort());
        clock.t += 1000;
        expect((await s.stuckResults(clock.t - 500)).map((r) => r.id).sort()).toEqual([d1.id, n1.id, d2.id].sort());
        await s.accept(d2.id, d1.id, []);
        expect((await s.stuckResults(clock.t - 500)).map((r) => r.id)).toEqual([n1.id]);
      });
    });

    it("quarantine requeues what a volunteer answered and what was computed from it; the finish re-runs", async () => {
      await withStore(backend, async (s) => {
        const shard = (key: string, deps: string[], deterministic: boolean) => ({
          ...rowsShard(key, deps, deterministic),
          kind: key,
        });
        // t: a training shard; f: computed from t's result; g: independent; u: nobody touched by the cheat.
        await s.createJob("jq", "k", {}, [
          shard("t", [], false),
          shard("f", ["t"], true),
          shard("g", [], true),
          shard("u", [], true),
        ]);
        const [cheat, h1, h2] = await volunteers(s, 3);
        const answer = async (v: string, key: string) => {
          const l = (await s.claimLease(v, [key], 1000, false))!;
          expect(l.shard.key).toBe(key);
          await stage(s, l.lease.id, v, l.lease.fence);
          return (await s.submit(l.lease.id, v, l.lease.fence)).result;
        };
        expect((await s.accept((await answer(cheat, "t")).id, null, [])).status).toBe("accepted");
        const f1 = await answer(h1, "f");
        expect((await s.accept((await answer(h2, "f")).id, f1.id, [])).status).toBe("accepted");
        const g1 = await answer(cheat, "g");
        expect((await s.accept((await answer(h1, "g")).id, g1.id, [])).status).toBe("accepted");
        const u1 = await answer(h1, "u");
        expect((await s.accept((await answer(h2, "u")).id, u1.id, [])).status).toBe("accepted");
        expect(await s.claimFinish("jq", "me", 1000)).toBe(true);
        expect(await s.completeFinish("jq", "me", { ok: 1 }, { "a.json": "b".repeat(64) })).toBe(true);

        expect(await s.quarantine(cheat, "forged")).toEqual(["jq"]);
        expect(await s.quarantine(cheat, "again")).toEqual([]);
        expect((await s.getVolunteer(cheat))!.quarantine).toBe("forged");
        const shards = Object.fromEntries((await s.listShards("jq")).map((x) => [x.key, x]));
        expect(["t", "f", "g", "u"].map((k) => shards[k].state)).toEqual(["open", "open", "open", "accepted"]);
        expect([shards.t.replicas, shards.f.replicas, shards.f.depsLeft]).toEqual([1, 2, 1]);
        const live = (await s.jobResults("jq")).filter((r) => r.status !== "rejected").map((r) => r.key);
        expect(live.sort()).toEqual(["u", "u"]);
        const job = (await s.getJob("jq"))!;
        expect([job.state, job.summary, job.files]).toEqual(["running", null, {}]);
        expect(job.events.map((e) => e.message)).toEqual([
          `requeued: volunteer ${cheat} was quarantined (forged): 3 shard(s) requeued`,
        ]);
        // f waits for t again; t and g are leasable, and the honest volunteers may answer them again.
        expect(await s.claimLease(h1, ["f"], 1000, false)).toBe(null);
        expect((await s.claimLease(h2, ["t"], 1000, false))?.shard.key).toBe("t");
        expect((await s.claimLease(h1, ["g"], 1000, false))?.shard.key).toBe("g");
      });
    });

    it("a solo lease (trusted volunteer) counts as both replicas; a disagreement asks for a third", async () => {
      await withStore(backend, async (s) => {
        await s.createJob("job6", "k", {}, [rowsShard("a"), rowsShard("b")]);
        const [v1, v2, v3, v4] = await volunteers(s, 4);
        const solo = (await s.claimLease(v1, undefined, 1000, true))!;
        expect(solo.lease.weight).toBe(2);
        const b = solo.shard.key === "a" ? "b" : "a";
        const other = (await s.claimLease(v2, undefined, 1000, false))!;
        expect(other.shard.key).toBe(b);
        const r2 = (await s.claimLease(v3, undefined, 1000, false))!;
        expect(r2.shard.key).toBe(b);
        expect(await s.claimLease(v4, undefined, 1000, false)).toBe(null);
        for (const [l, v] of [[other, v2], [r2, v3]] as const) await stage(s, l.lease.id, v, l.lease.fence);
        await s.submit(other.lease.id, v2, other.lease.fence);
        await s.submit(r2.lease.id, v3, r2.lease.fence);
        await s.wantAnotherReplica("job6", b);
        const third = (await s.claimLease(v4, undefined, 1000, false))!;
        expect(third.shard.key).toBe(b);
      });
    });
  });
}
