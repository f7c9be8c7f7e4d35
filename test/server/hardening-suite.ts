// The coordinator against an attacker who holds no special access, through the app (`app.request`,
// with the client address Hono's `c.env` carries): names that are inherited object keys, specs that
// pass their schema but cannot be planned, identities registered to hoard leases, random tokens sprayed
// to reset rate limits, guesses at the admin token, and uploads replaced or abandoned to fill the blob
// directory. Run by hardening.node.test.ts (SQLite, PostgreSQL) and hardening.deno.test.ts (SQLite).
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type AppOptions, createApp } from "../../server/app.ts";
import { arrayBytes } from "../../src/protocol/arrays.ts";
import { DiskBlobStore } from "../../server/blobs.ts";
import { datasetRoutes, JOB_KINDS } from "../../server/jobs/index.ts";
import { syntheticRows, TEST_KINDS } from "../../server/jobs/test-kinds.ts";
import type { StoreOptions } from "../../server/store/sql.ts";
import { ADMIN, type Backend, openStore, tempDir } from "./support.ts";

type App = ReturnType<typeof createApp>;
type Lease = {
  leaseId: string;
  fence: number;
  shard: { key: string; payload: { start: number; count: number; n: number; seed: number; block: number } };
};

async function withApp(
  backend: Backend,
  opts: Partial<AppOptions>,
  fn: (app: App, clock: { t: number }) => Promise<void>,
  storeOpts: StoreOptions = {},
) {
  const clock = { t: Date.now() };
  const store = await openStore(backend, { now: () => clock.t, ...storeOpts });
  const kinds = new Map([...TEST_KINDS, ...JOB_KINDS]);
  const app = createApp({
    store,
    blobs: new DiskBlobStore(tempDir("coord-blobs")),
    kinds,
    adminToken: ADMIN,
    routes: [datasetRoutes],
    ...opts,
  });
  try {
    await fn(app, clock);
  } finally {
    await app.coordinator.stop();
    await store.close();
  }
}

/** A request from client address `from`. */
function call(
  app: App,
  from: string,
  path: string,
  init: { method?: string; token?: string; json?: unknown; body?: Uint8Array; headers?: Record<string, string> } = {},
) {
  const headers: Record<string, string> = {
    ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
    ...init.headers,
  };
  let body: BodyInit | undefined;
  if (init.json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(init.json);
  } else if (init.body) body = init.body as Uint8Array<ArrayBuffer>;
  return app.request(path, { method: init.method ?? (body ? "POST" : "GET"), headers, body }, { remoteAddr: from });
}

async function register(app: App, from: string): Promise<{ volunteerId: string; token: string }> {
  const res = await call(app, from, "/v1/volunteers", { json: { name: "v" } });
  expect(res.status).toBe(201);
  return (await res.json()) as { volunteerId: string; token: string };
}

async function createJob(app: App, spec: Record<string, unknown>, kind = "test-matrix"): Promise<string> {
  const res = await call(app, "10.9.9.9", "/v1/jobs", { token: ADMIN, json: { kind, spec } });
  expect(res.status).toBe(201);
  return ((await res.json()) as { jobId: string }).jobId;
}

const lease = (app: App, from: string, token: string) => call(app, from, "/v1/leases", { token, json: {} });

/** A lease on shard `key`: shards are drawn at random, so others drawn on the way are released. */
async function leaseOn(app: App, from: string, token: string, key: string): Promise<Lease> {
  for (let tries = 0; tries < 50; tries++) {
    const l = (await (await lease(app, from, token)).json()) as Lease;
    if (l.shard.key === key) return l;
    await call(app, from, `/v1/leases/${l.leaseId}/release`, { token, json: { fence: l.fence } });
  }
  throw new Error(`no lease on ${key} in 50 draws`);
}

const rowsOf = (l: Lease, shift = 0) => {
  const p = l.shard.payload;
  const rows = syntheticRows({ seed: p.seed, n: p.n, start: p.start, count: p.count, block: p.block }).map((v) =>
    v + shift
  );
  return arrayBytes({ dtype: "f32", shape: [p.count, p.n], data: rows });
};

const upload = (app: App, from: string, token: string, l: Lease, bytes: Uint8Array, name = "rows") =>
  call(app, from, `/v1/leases/${l.leaseId}/arrays/${name}?fence=${l.fence}`, {
    method: "PUT",
    token,
    body: bytes,
    headers: {
      "content-type": "application/octet-stream",
      "x-dtype": "f32",
      "x-shape": `${l.shard.payload.count},${l.shard.payload.n}`,
    },
  });

const submit = async (app: App, from: string, token: string, l: Lease) =>
  (await (await call(app, from, `/v1/leases/${l.leaseId}/submit`, { token, json: { fence: l.fence } })).json()) as {
    status: string;
  };

export function hardeningSuite(backends: Backend[]): void {
  for (const backend of backends) {
    describe(`coordinator hardening (${backend})`, () => {
      it("inherited object keys (constructor, toString, __proto__) name nothing: 404, never 500", async () => {
        await withApp(backend, {}, async (app) => {
          const jobId = await createJob(app, { n: 8, rowsPerShard: 8, block: 3, seed: 4, scale: false });
          const [a, b] = [await register(app, "10.0.0.1"), await register(app, "10.0.0.2")];
          const la = (await (await lease(app, "10.0.0.1", a.token)).json()) as Lease;
          const lb = (await (await lease(app, "10.0.0.2", b.token)).json()) as Lease;
          for (const name of ["constructor", "toString", "__proto__"]) {
            const put = await upload(app, "10.0.0.1", a.token, la, rowsOf(la), name);
            expect(`${name}: ${put.status}`).toBe(`${name}: 404`);
          }
          // Accept the one shard (two agreeing volunteers) so its arrays can be asked for by name.
          for (const [v, l, from] of [[a, la, "10.0.0.1"], [b, lb, "10.0.0.2"]] as const) {
            expect((await upload(app, from, v.token, l, rowsOf(l))).status).toBe(204);
            await submit(app, from, v.token, l);
          }
          expect(
            (await call(app, "10.0.0.1", `/v1/jobs/${jobId}/shards/rows%2F0/arrays/rows`, { token: a.token })).status,
          ).toBe(200);
          for (const name of ["constructor", "toString", "__proto__"]) {
            const paths = [
              `/v1/jobs/${jobId}/report/${name}`,
              `/v1/jobs/${jobId}/shards/rows%2F0/arrays/${name}`,
              `/v1/datasets/${name}`,
            ];
            for (const path of paths) {
              const res = await call(app, "10.0.0.1", path, { token: path.includes("/report/") ? ADMIN : a.token });
              expect(`${path}: ${res.status}`).toBe(`${path}: 404`);
            }
          }
        });
      });

      it("a spec that passes its schema but cannot be planned is the caller's error: 400 with the reason", async () => {
        await withApp(backend, {}, async (app) => {
          const cases: [string, Record<string, unknown>, string][] = [
            ["test-matrix", { n: 10, rowsPerShard: 5, block: 10, seed: 1 }, "block must be smaller than n"],
            ["trak", { data: "nope" }, 'unknown dataset "nope"'],
          ];
          for (const [kind, spec, reason] of cases) {
            const res = await call(app, "10.9.9.9", "/v1/jobs", { token: ADMIN, json: { kind, spec } });
            const { error } = (await res.json()) as { error: string };
            expect(`${kind}: ${res.status}`).toBe(`${kind}: 400`);
            expect(error).toMatch(reason);
          }
        });
      });

      it(
        "identities registered from one address cannot starve a volunteer from another, nor hold leases for " +
          "long",
        async () => {
          // Registrations are limited per address too (below); lifted here to reach the probe's 32 identities.
          await withApp(
            backend,
            { leaseMs: 3 * 3600_000, registerRateLimit: { perSecond: 1000, burst: 1000 } },
            async (app, clock) => {
              await createJob(app, { n: 40, rowsPerShard: 1, block: 3, seed: 2, scale: false });
              const codes: number[] = [];
              const held: { token: string; l: Lease }[] = [];
              for (let i = 0; i < 32; i++) {
                const v = await register(app, "10.0.0.1");
                for (let j = 0; j < 4; j++) {
                  const res = await lease(app, "10.0.0.1", v.token);
                  codes.push(res.status);
                  if (res.status === 200) held.push({ token: v.token, l: (await res.json()) as Lease });
                }
              }
              // 40 shards x 2 replicas = 80 lease slots; one address may hold 16 of them and half of the job.
              expect(held.length).toBe(16);
              expect(codes.filter((s) => s === 429).length).toBe(128 - 16);
              const newcomer = await register(app, "10.0.0.2");
              expect((await lease(app, "10.0.0.2", newcomer.token)).status).toBe(200);

              // A volunteer with no valid results may keep a lease alive 1 h; one with 3 valid results, 12 h.
              const beat = (h: (typeof held)[number]) =>
                call(app, "10.0.0.1", `/v1/leases/${h.l.leaseId}/heartbeat`, {
                  token: h.token,
                  json: { fence: h.l.fence },
                });
              const proven = held[4]; // the second identity's first lease (each identity holds 4)
              expect(proven.token).not.toBe(held[0].token);
              await app.coordinator.store.db.run(`UPDATE volunteers SET valid = 3 WHERE id = ?`, [
                proven.token.split(".")[0],
              ]);
              expect((await beat(held[0])).status).toBe(200);
              clock.t += 61 * 60_000;
              const late = await beat(held[0]);
              expect(late.status).toBe(410);
              expect(((await late.json()) as { error: string }).error).toMatch("will not be extended");
              expect((await beat(proven)).status).toBe(200);
            },
          );
        },
      );

      it("one address's volunteers hold at most half of a job's shards; the rest go to others", async () => {
        await withApp(backend, {}, async (app) => {
          await createJob(app, { n: 12, rowsPerShard: 2, block: 3, seed: 3, scale: false });
          const got: number[] = [];
          for (let i = 0; i < 6; i++) {
            got.push((await lease(app, "10.0.0.1", (await register(app, "10.0.0.1")).token)).status);
          }
          expect(got).toEqual([200, 200, 200, 204, 204, 204]);
          expect((await lease(app, "10.0.0.3", (await register(app, "10.0.0.3")).token)).status).toBe(200);
        });
      });

      it("registration by invite: each admin-issued invite registers one volunteer, once", async () => {
        await withApp(backend, { registration: "invite" }, async (app) => {
          const join = (json: Record<string, unknown>, from = "10.0.3.1") =>
            call(app, from, "/v1/volunteers", { json: { name: "v", ...json } });
          const error = async (res: Response) => `${res.status} ${((await res.json()) as { error: string }).error}`;
          expect(await error(await join({}))).toBe("403 registration needs an invite from the coordinator's admin");
          const made = await call(app, "10.9.9.9", "/v1/invites", { token: ADMIN, json: { count: 2 } });
          expect(made.status).toBe(201);
          const { invites } = (await made.json()) as { invites: string[] };
          expect(new Set(invites).size).toBe(2);
          const first = await join({ invite: invites[0] });
          expect(first.status).toBe(201);
          const { token } = (await first.json()) as { token: string };
          expect((await lease(app, "10.0.3.1", token)).status).toBe(204); // a working volunteer token
          expect(await error(await join({ invite: invites[0] }, "10.0.3.2"))).toBe(
            "403 unknown or already used invite",
          );
          expect(await error(await join({ invite: "made-up" }, "10.0.3.2"))).toBe("403 unknown or already used invite");
          const byVolunteer = await call(app, "10.0.3.1", "/v1/invites", { token, json: {} });
          expect(byVolunteer.status).toBe(403);
          expect((await join({ invite: invites[1] }, "10.0.3.3")).status).toBe(201);
          const rows = await app.coordinator.store.db.all<{ used_by: string | null }>(`SELECT used_by FROM invites`);
          expect(rows.filter((r) => r.used_by).length).toBe(2);
        });
      });

      it("one volunteer holds or answers at most its share of a job's shards (volunteerJobShare)", async () => {
        await withApp(backend, { volunteerJobShare: 0.25 }, async (app) => {
          await createJob(app, { n: 16, rowsPerShard: 2, block: 3, seed: 3, scale: false }); // 8 shards
          const v = await register(app, "10.0.2.1");
          const held = [];
          for (let i = 0; i < 2; i++) held.push((await (await lease(app, "10.0.2.1", v.token)).json()) as Lease);
          expect((await lease(app, "10.0.2.1", v.token)).status).toBe(204);
          // An answered shard still counts: submitting frees the lease, not the share.
          await upload(app, "10.0.2.1", v.token, held[0], rowsOf(held[0]));
          expect((await submit(app, "10.0.2.1", v.token, held[0])).status).toBe("pending-quorum");
          expect((await lease(app, "10.0.2.1", v.token)).status).toBe(204);
          const other = await register(app, "10.0.2.2");
          expect((await lease(app, "10.0.2.2", other.token)).status).toBe(200);
        });
      });

      it(
        "the blob directory keeps only what rows reference, after replaced, abandoned and rejected " +
          "uploads",
        async () => {
          await withApp(backend, { leaseMs: 60_000 }, async (app, clock) => {
            const blobs = app.coordinator.blobs as DiskBlobStore;
            const files = async () => (await blobs.list()).length;
            const jobId = await createJob(app, { n: 8, rowsPerShard: 4, block: 3, seed: 6, scale: false });
            const [v1, v2, v3, v4] = [
              await register(app, "10.0.1.1"),
              await register(app, "10.0.1.2"),
              await register(app, "10.0.1.3"),
              await register(app, "10.0.1.4"),
            ];
            const l1 = (await (await lease(app, "10.0.1.1", v1.token)).json()) as Lease;
            // Replaced: twenty different valid arrays under one name; only the last stays staged.
            for (let i = 20; i >= 0; i--) {
              expect((await upload(app, "10.0.1.1", v1.token, l1, rowsOf(l1, i * 1e-3))).status).toBe(204);
            }
            expect(await files()).toBe(21);
            expect(await app.coordinator.collectGarbage(0)).toEqual({ deleted: 20, kept: 1 });
            // Abandoned: another volunteer's lease uploads, then expires without submitting.
            const l2 = (await (await lease(app, "10.0.1.2", v2.token)).json()) as Lease;
            for (let i = 1; i <= 3; i++) await upload(app, "10.0.1.2", v2.token, l2, rowsOf(l2, i));
            expect(await files()).toBe(4);
            clock.t += 60_001;
            await mkdir(join(blobs.dir, "00"), { recursive: true });
            await writeFile(join(blobs.dir, "00", `${"0".repeat(64)}.1234-abcd.tmp`), "a write that crashed");
            // all younger than the grace period
            expect(await app.coordinator.collectGarbage()).toEqual({ deleted: 0, kept: 5 });
            expect(await app.coordinator.collectGarbage(0)).toEqual({ deleted: 5, kept: 0 }); // l1 expired too
            // Rejected: on a fresh lease round, a wrong result loses to two agreeing ones and its blob goes.
            const [a, b, c] = [[v1, "10.0.1.1"], [v3, "10.0.1.3"], [v4, "10.0.1.4"]] as const;
            const la = (await (await lease(app, a[1], a[0].token)).json()) as Lease;
            const lb = await leaseOn(app, b[1], b[0].token, la.shard.key);
            await upload(app, a[1], a[0].token, la, rowsOf(la));
            expect((await submit(app, a[1], a[0].token, la)).status).toBe("pending-quorum");
            await upload(app, b[1], b[0].token, lb, rowsOf(lb, 0.5));
            expect((await submit(app, b[1], b[0].token, lb)).status).toBe("pending-quorum");
            const lc = await leaseOn(app, c[1], c[0].token, la.shard.key);
            await upload(app, c[1], c[0].token, lc, rowsOf(lc));
            expect((await submit(app, c[1], c[0].token, lc)).status).toBe("accepted");
            expect(await files()).toBe(2); // the agreed rows (one blob: same bytes) and the wrong ones
            expect(await app.coordinator.collectGarbage(0)).toEqual({ deleted: 1, kept: 1 });
            const live = await app.coordinator.store.referencedBlobs();
            expect((await blobs.list()).map((e) => e.hash).sort()).toEqual([...live].sort());
            const got = await call(
              app,
              "10.0.1.1",
              `/v1/jobs/${jobId}/shards/${encodeURIComponent(la.shard.key)}/arrays/rows`,
              { token: v1.token },
            );
            expect(got.status).toBe(200);
            expect(new Uint8Array(await got.arrayBuffer())).toEqual(rowsOf(la));
          });
        },
      );
    });
  }

  describe(`rate limits (${backends[0]})`, () => {
    it("100,000 random tokens from 100,000 addresses do not reset a real volunteer's bucket", async () => {
      await withApp(backends[0], { rateLimit: { perSecond: 0.01, burst: 3 } }, async (app) => {
        const v = await register(app, "10.0.0.1");
        const codes = [];
        for (let i = 0; i < 4; i++) codes.push((await lease(app, "10.0.0.1", v.token)).status);
        expect(codes).toEqual([204, 204, 204, 429]);
        const t0 = Date.now();
        let unknown = 0;
        for (let i = 0; i < 100_000; i++) {
          const from = `11.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
          const res = await lease(app, from, `${crypto.randomUUID()}.${i}`);
          if (res.status === 401) unknown++;
        }
        console.log(`[${backends[0]}] 100,000 sprayed tokens in ${Date.now() - t0} ms`);
        expect(unknown).toBe(100_000);
        const after = await lease(app, "10.0.0.1", v.token);
        expect(after.status).toBe(429);
        expect(after.headers.get("retry-after")).not.toBe(null);
      });
    });

    it("registrations are limited per address", async () => {
      await withApp(backends[0], {}, async (app) => {
        const codes: number[] = [];
        for (let i = 0; i < 25; i++) codes.push((await call(app, "10.0.0.5", "/v1/volunteers", { json: {} })).status);
        expect(codes.filter((s) => s === 201).length).toBe(20);
        expect(codes.slice(20).every((s) => s === 429)).toBe(true);
        expect((await call(app, "10.0.0.6", "/v1/volunteers", { json: {} })).status).toBe(201);
      });
    });

    it("failed guesses at the admin token lock the guessing address out, not others", async () => {
      await withApp(backends[0], {}, async (app) => {
        const job = (token: string, from: string) =>
          call(app, from, "/v1/jobs", {
            token,
            json: { kind: "test-matrix", spec: { n: 8, rowsPerShard: 4, block: 3, seed: 1 } },
          });
        const codes: number[] = [];
        for (let i = 0; i < 25; i++) codes.push((await job(`guess-${i}-0123456789abcdef`, "10.0.0.66")).status);
        expect(codes.slice(0, 20).every((s) => s === 403)).toBe(true);
        expect(codes.slice(20).every((s) => s === 429)).toBe(true);
        expect((await job(ADMIN, "10.0.0.66")).status).toBe(429);
        expect((await job(ADMIN, "10.0.0.67")).status).toBe(201);
      });
    });
  });
}
