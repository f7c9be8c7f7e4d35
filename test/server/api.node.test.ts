// Malformed, oversize, forged and stale requests get a 4xx `{ error }` with a clear message and
// change no state (every table and the blob directory are compared before and after).
import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { arrayBytes } from "../../src/protocol/arrays.ts";
import type { DiskBlobStore } from "../../server/blobs.ts";
import { CoordinatorClient } from "../../src/protocol/client.ts";
import { syntheticRows, TEST_KINDS, testExecutors, testMatrix, TestMatrixSpec } from "../../server/jobs/test-kinds.ts";
import type { SqlStore } from "../../server/store/sql.ts";
import { runWorker } from "../../src/volunteer/loop.ts";
import { ADMIN, createJob, register, startCoordinator, waitForJob } from "./support.ts";

async function snapshot(store: SqlStore, blobs: DiskBlobStore): Promise<string> {
  const tables = ["jobs", "shards", "shard_deps", "volunteers", "leases", "lease_arrays", "results"];
  const out: Record<string, unknown> = {};
  for (const t of tables) out[t] = await store.db.all(`SELECT * FROM ${t} ORDER BY 1, 2`);
  out.blobs = readdirSync(blobs.dir, { recursive: true }).map(String).sort();
  return JSON.stringify(out);
}

describe("coordinator API: bad requests", () => {
  it("answers 4xx with a clear message and leaves every table untouched", async () => {
    const c = await startCoordinator("sqlite", { leaseMs: 1500, jsonLimit: 4096 });
    const blobs = c.app!.coordinator.blobs as DiskBlobStore;
    try {
      const jobId = await createJob(c.url, { n: 8, rowsPerShard: 4, block: 3, seed: 5, scale: false });
      const v1 = await register(c.url, "one");
      const v2 = await register(c.url, "two");
      const auth = (t: string) => ({ authorization: `Bearer ${t}` });
      const json = { "content-type": "application/json" };
      const leaseRes = await fetch(`${c.url}/v1/leases`, {
        method: "POST",
        headers: { ...json, ...auth(v1.token) },
        body: "{}",
      });
      const lease = (await leaseRes.json()) as {
        leaseId: string;
        fence: number;
        shard: { key: string; payload: { start: number; count: number } };
      };
      const p = lease.shard.payload;
      const good = syntheticRows({ seed: 5, n: 8, start: p.start, count: p.count, block: 3 });
      const L = `${c.url}/v1/leases/${lease.leaseId}`;
      const put = (
        headers: Record<string, string>,
        body: Uint8Array | string,
        path = `${L}/arrays/rows?fence=${lease.fence}`,
      ) =>
        fetch(path, {
          method: "PUT",
          headers: {
            "content-type": "application/octet-stream",
            "x-dtype": "f32",
            "x-shape": "4,8",
            ...auth(v1.token),
            ...headers,
          },
          body: body as BodyInit,
        });
      const nan = good.slice();
      nan[5] = NaN;
      const inf = good.slice();
      inf[0] = -Infinity;

      const cases: [string, () => Promise<Response>, number, string][] = [
        [
          "bad JSON",
          () => fetch(`${c.url}/v1/jobs`, { method: "POST", headers: { ...json, ...auth(ADMIN) }, body: "{kind:" }),
          400,
          "JSON",
        ],
        [
          "no admin token",
          () =>
            fetch(`${c.url}/v1/jobs`, {
              method: "POST",
              headers: json,
              body: JSON.stringify({ kind: "test-matrix", spec: {} }),
            }),
          401,
          "bearer token",
        ],
        [
          "forged admin token",
          () =>
            fetch(`${c.url}/v1/jobs`, {
              method: "POST",
              headers: { ...json, ...auth(v1.token) },
              body: JSON.stringify({ kind: "test-matrix", spec: {} }),
            }),
          403,
          "admin",
        ],
        [
          "unknown kind",
          () =>
            fetch(`${c.url}/v1/jobs`, {
              method: "POST",
              headers: { ...json, ...auth(ADMIN) },
              body: JSON.stringify({ kind: "nope", spec: {} }),
            }),
          400,
          'unknown job kind "nope"',
        ],
        [
          "invalid spec",
          () =>
            fetch(`${c.url}/v1/jobs`, {
              method: "POST",
              headers: { ...json, ...auth(ADMIN) },
              body: JSON.stringify({ kind: "test-matrix", spec: { n: "big" } }),
            }),
          400,
          "n:",
        ],
        [
          "oversize JSON",
          () =>
            fetch(`${c.url}/v1/volunteers`, {
              method: "POST",
              headers: json,
              body: JSON.stringify({ name: "x".repeat(10_000) }),
            }),
          413,
          "too large",
        ],
        [
          "invalid registration",
          () => fetch(`${c.url}/v1/volunteers`, { method: "POST", headers: json, body: JSON.stringify({ name: 7 }) }),
          400,
          "name",
        ],
        [
          "lease without token",
          () => fetch(`${c.url}/v1/leases`, { method: "POST", headers: json, body: "{}" }),
          401,
          "bearer",
        ],
        [
          "lease with forged token",
          () =>
            fetch(`${c.url}/v1/leases`, {
              method: "POST",
              headers: { ...json, ...auth(`${v1.volunteerId}.forged`) },
              body: "{}",
            }),
          401,
          "unknown volunteer token",
        ],
        ["unknown job", () => fetch(`${c.url}/v1/jobs/nope`), 404, "unknown job"],
        [
          "wrong dtype",
          () => put({ "x-dtype": "i32" }, arrayBytes({ dtype: "f32", shape: [4, 8], data: good })),
          422,
          "does not match the planned f32",
        ],
        ["bad dtype", () => put({ "x-dtype": "f64" }, new Uint8Array(128)), 422, "x-dtype must be one of"],
        [
          "wrong shape",
          () => put({ "x-shape": "8,4" }, arrayBytes({ dtype: "f32", shape: [8, 4], data: good })),
          422,
          "does not match the planned [4,8]",
        ],
        ["bad shape header", () => put({ "x-shape": "4;8" }, new Uint8Array(128)), 422, "x-shape"],
        ["short body", () => put({}, new Uint8Array(100)), 422, "needs 128"],
        ["oversize body", () => put({}, new Uint8Array(4096)), 413, "at most 128 bytes"],
        ["NaN", () => put({}, new Uint8Array(nan.buffer)), 422, "element 5 is NaN"],
        ["Infinity", () => put({}, new Uint8Array(inf.buffer)), 422, "element 0 is -Infinity"],
        [
          "not octet-stream",
          () => put({ "content-type": "application/json" }, "[1,2]"),
          415,
          "application/octet-stream",
        ],
        [
          "unknown output",
          () => put({}, new Uint8Array(good.buffer), `${L}/arrays/other?fence=${lease.fence}`),
          404,
          'no output "other"',
        ],
        [
          "wrong fence",
          () => put({}, new Uint8Array(good.buffer), `${L}/arrays/rows?fence=${lease.fence + 1}`),
          409,
          "stale fence",
        ],
        ["missing fence", () => put({}, new Uint8Array(good.buffer), `${L}/arrays/rows`), 400, "fence"],
        ["foreign token upload", () => put(auth(v2.token), new Uint8Array(good.buffer)), 403, "another volunteer"],
        [
          "unknown lease",
          () => put({}, new Uint8Array(good.buffer), `${c.url}/v1/leases/${crypto.randomUUID()}/arrays/rows?fence=1`),
          404,
          "unknown lease",
        ],
        [
          "malformed lease id",
          () => put({}, new Uint8Array(good.buffer), `${c.url}/v1/leases/xyz/arrays/rows?fence=1`),
          400,
          "leaseId",
        ],
        [
          "submit with nothing staged",
          () =>
            fetch(`${L}/submit`, {
              method: "POST",
              headers: { ...json, ...auth(v1.token) },
              body: JSON.stringify({ fence: lease.fence }),
            }),
          400,
          "missing arrays: rows",
        ],
        [
          "submit with wrong fence",
          () =>
            fetch(`${L}/submit`, {
              method: "POST",
              headers: { ...json, ...auth(v1.token) },
              body: JSON.stringify({ fence: 0 }),
            }),
          409,
          "stale fence",
        ],
        [
          "submit with foreign token",
          () =>
            fetch(`${L}/submit`, {
              method: "POST",
              headers: { ...json, ...auth(v2.token) },
              body: JSON.stringify({ fence: lease.fence }),
            }),
          403,
          "another volunteer",
        ],
        [
          "submit with bad body",
          () =>
            fetch(`${L}/submit`, {
              method: "POST",
              headers: { ...json, ...auth(v1.token) },
              body: JSON.stringify({ fence: "one" }),
            }),
          400,
          "fence",
        ],
        [
          "heartbeat with wrong fence",
          () =>
            fetch(`${L}/heartbeat`, {
              method: "POST",
              headers: { ...json, ...auth(v1.token) },
              body: JSON.stringify({ fence: 99 }),
            }),
          409,
          "stale fence",
        ],
        [
          "unaccepted dep array",
          () =>
            fetch(`${c.url}/v1/jobs/${jobId}/shards/${encodeURIComponent(lease.shard.key)}/arrays/rows`, {
              headers: auth(v1.token),
            }),
          404,
          "no accepted result",
        ],
        [
          "unknown shard",
          () => fetch(`${c.url}/v1/jobs/${jobId}/shards/nope/arrays/rows`, { headers: auth(v1.token) }),
          404,
          'unknown shard "nope"',
        ],
        [
          "report before done",
          () => fetch(`${c.url}/v1/jobs/${jobId}/report/summary.json`, { headers: auth(ADMIN) }),
          404,
          "not written yet",
        ],
        ["private job's status, no token", () => fetch(`${c.url}/v1/jobs/${jobId}`), 401, "is private"],
        [
          "private job's report, a volunteer's token",
          () => fetch(`${c.url}/v1/jobs/${jobId}/report/summary.json`, { headers: auth(v1.token) }),
          403,
          "not the admin token",
        ],
        ["unknown job's status", () => fetch(`${c.url}/v1/jobs/nope`), 404, "unknown job nope"],
        ["unknown route", () => fetch(`${c.url}/v2/whatever`), 404, "no route"],
      ];
      const before = await snapshot(c.store, blobs);
      for (const [name, call, status, msg] of cases) {
        const res = await call();
        const body = (await res.json().catch(() => ({ error: "(not JSON)" }))) as { error?: string };
        expect(`${name}: ${res.status} ${body.error}`).toBe(`${name}: ${status} ${body.error}`);
        expect(`${name}: ${body.error}`).toMatch(msg);
      }
      expect(await snapshot(c.store, blobs)).toBe(before);

      // the lease still works after all that: a correct upload is staged
      await new CoordinatorClient(c.url, v1.token).putArray(lease.leaseId, lease.fence, "rows", {
        dtype: "f32",
        shape: [4, 8],
        data: good,
      });
      // ...until it expires: then uploads and submits are refused, and the state stays as it was
      await new Promise((r) => setTimeout(r, 1600));
      const afterExpiry = await snapshot(c.store, blobs);
      const late = await put({}, new Uint8Array(good.buffer));
      expect(late.status).toBe(410);
      expect(((await late.json()) as { error: string }).error).toMatch("expired");
      const lateSubmit = await fetch(`${L}/submit`, {
        method: "POST",
        headers: { ...json, ...auth(v1.token) },
        body: JSON.stringify({ fence: lease.fence }),
      });
      expect(lateSubmit.status).toBe(410);
      expect(await snapshot(c.store, blobs)).toBe(afterExpiry);
    } finally {
      await c.close();
    }
  });

  it("a job's status is the admin's unless the job was created public", async () => {
    const c = await startCoordinator("sqlite");
    try {
      const spec = { n: 8, rowsPerShard: 4, block: 3, seed: 5, scale: false };
      const admin = new CoordinatorClient(c.url, ADMIN);
      const anyone = new CoordinatorClient(c.url);
      const privateJob = await admin.createJob("test-matrix", spec);
      const publicJob = await admin.createJob("test-matrix", spec, { public: true });
      expect((await admin.jobStatus(privateJob)).shards.total).toBe(2);
      expect((await anyone.jobStatus(publicJob)).shards.total).toBe(2);
      await expect(anyone.jobStatus(privateJob)).rejects.toThrow(/is private/);
      const report = await fetch(`${c.url}/v1/jobs/${publicJob}/report/summary.json`);
      expect(((await report.json()) as { error: string }).error).toMatch("not written yet");
    } finally {
      await c.close();
    }
  });

  it("a worker registers with its invite where the coordinator asks for one, and is refused without", async () => {
    const c = await startCoordinator("sqlite", { registration: "invite" });
    try {
      const [invite] = await new CoordinatorClient(c.url, ADMIN).createInvites();
      const run = (o: { invite?: string }) =>
        runWorker({ server: c.url, executors: {}, maxIdlePolls: 1, idleMs: 1, ...o });
      await expect(run({})).rejects.toThrow(/registration needs an invite/);
      const summary = await run({ invite });
      expect(summary.volunteerId).toMatch(/^[0-9a-f-]{36}$/);
      expect((await c.store.getVolunteer(summary.volunteerId))?.name).toBe("anonymous");
    } finally {
      await c.close();
    }
  });

  it("a volunteer cannot hoard leases, nor keep one alive past the most a shard may take", async () => {
    const c = await startCoordinator("sqlite", { maxLiveLeases: 3, maxLeaseAgeMs: 600 });
    try {
      await createJob(c.url, { n: 20, rowsPerShard: 2, block: 3, seed: 9, scale: false });
      const v = await register(c.url);
      const lease = () =>
        fetch(`${c.url}/v1/leases`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${v.token}` },
          body: "{}",
        });
      const got: { leaseId: string; fence: number }[] = [];
      for (let i = 0; i < 3; i++) got.push((await (await lease()).json()) as { leaseId: string; fence: number });
      const fourth = await lease();
      expect(fourth.status).toBe(429);
      expect(((await fourth.json()) as { error: string }).error).toMatch("3 live leases");
      const beat = () =>
        fetch(`${c.url}/v1/leases/${got[0].leaseId}/heartbeat`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${v.token}` },
          body: JSON.stringify({ fence: got[0].fence }),
        });
      expect((await beat()).status).toBe(200);
      await new Promise((r) => setTimeout(r, 700));
      const old = await beat();
      expect(old.status).toBe(410);
      expect(((await old.json()) as { error: string }).error).toMatch("will not be extended");
    } finally {
      await c.close();
    }
  });

  it("a job planned before its kind's finish became a shard fails at its end with a clear error", async () => {
    // The kind as it is now (no finish on the coordinator), and a job an older version planned without a shard.
    const { finish: _, ...nowAShard } = testMatrix;
    const c = await startCoordinator("sqlite", { kinds: new Map([...TEST_KINDS, ["test-matrix", nowAShard]]) });
    const stop = new AbortController();
    try {
      const spec = TestMatrixSpec.parse({ n: 8, rowsPerShard: 4, block: 3, seed: 2, scale: false });
      await c.store.createJob("planned-long-ago", "test-matrix", spec, testMatrix.plan(spec));
      const workers = [0, 1].map((i) =>
        runWorker({ server: c.url, executors: testExecutors, name: `w${i}`, signal: stop.signal, idleMs: 20 })
      );
      const s = await waitForJob(c.url, "planned-long-ago");
      stop.abort();
      await Promise.all(workers);
      expect(s.state).toBe("failed");
      expect(s.error).toMatch(/test-matrix finishes in a shard now, and this job has none: create it again/);
    } finally {
      stop.abort();
      await c.close();
    }
  });

  it("rate-limits a token that floods the coordinator", async () => {
    const c = await startCoordinator("sqlite", { rateLimit: { perSecond: 5, burst: 10 } });
    try {
      const v = await register(c.url);
      const codes: number[] = [];
      for (let i = 0; i < 15; i++) {
        codes.push(
          (await fetch(`${c.url}/v1/leases`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${v.token}` },
            body: "{}",
          })).status,
        );
      }
      expect(codes.filter((s) => s === 204).length).toBe(10);
      expect(codes.filter((s) => s === 429).length).toBe(5);
    } finally {
      await c.close();
    }
  });
});
