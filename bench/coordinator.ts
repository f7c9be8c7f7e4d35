// Coordinator throughput: lease + upload + submit round trips per second with 1, 10 and 100
// concurrent volunteers (each its own token), on SQLite (node:sqlite, WAL, a temp file), on
// PostgreSQL (PG_TEST_URL or BENCH_PG_URL; a fresh schema), both served from this Deno process on a
// loopback socket, and on the edge coordinator (workerd, its Durable Object's SQLite, its own process).
// The clients are fetch loops in this process, so on a 2-core machine the figures are a floor. Shards are
// the "test-bench" kind (server/jobs/test-kinds.ts): a 16-float output and a trivial spot check, so the
// time is the coordinator's own (HTTP, validation, SQL).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp } from "../server/app.ts";
import { DiskBlobStore } from "../server/blobs.ts";
import { CoordinatorClient } from "../src/protocol/client.ts";
import { serveHttp } from "../server/http.ts";
import { startEdge } from "../server/serve-edge.ts";
import { TEST_KINDS } from "../server/jobs/test-kinds.ts";
import type { SqlDriver } from "../server/store/driver.ts";
import { openPg } from "../server/store/pg.ts";
import { openSqliteDeno } from "../server/store/sqlite-deno.ts";
import { SqlStore } from "../server/store/sql.ts";
import { type BenchReport, median } from "./harness.ts";
import { env } from "../src/platform.ts";

const ADMIN = "bench-admin-token-0123456789";

// Every client is on loopback: lift the per-address limits that would otherwise throttle them.
const unlimited = { perSecond: 1e6, burst: 1e6 };
const LIFTED = {
  rateLimit: unlimited,
  addressRateLimit: unlimited,
  registerRateLimit: unlimited,
  maxSourceLeases: Infinity,
  sourceJobShare: Infinity,
};

type Measured = Record<"roundTrips" | "seconds" | "perSecond" | "p50ms" | "p95ms", number>;

async function inProcess(driver: SqlDriver, clients: number, rounds: number): Promise<Measured> {
  const store = await new SqlStore(driver).init();
  const app = createApp({
    store,
    blobs: new DiskBlobStore(mkdtempSync(join(tmpdir(), "bench-blobs-"))),
    kinds: TEST_KINDS,
    adminToken: ADMIN,
    ...LIFTED,
  });
  const server = await serveHttp(app.fetch, 0, "127.0.0.1", { maxConnectionsPerAddress: 1e6 });
  try {
    return await roundTrips(`http://127.0.0.1:${server.port}`, clients, rounds);
  } finally {
    await server.close();
    await app.coordinator.stop();
    await store.close();
  }
}

async function onWorkerd(clients: number, rounds: number): Promise<Measured> {
  const data = mkdtempSync(join(tmpdir(), "bench-edge-"));
  const edge = await startEdge({ port: 0, data, adminToken: ADMIN, config: LIFTED });
  try {
    return await roundTrips(edge.url, clients, rounds);
  } finally {
    await edge.stop();
  }
}

async function roundTrips(url: string, clients: number, rounds: number): Promise<Measured> {
  await new CoordinatorClient(url, ADMIN).createJob("test-bench", { shards: rounds });
  const tokens: string[] = [];
  for (let i = 0; i < clients; i++) tokens.push((await new CoordinatorClient(url).register(`bench-${i}`)).token);
  const latencies: number[] = [];
  let done = 0;
  const t0 = performance.now();
  await Promise.all(
    tokens.map(async (token) => {
      const api = new CoordinatorClient(url, token);
      for (;;) {
        const s = performance.now();
        const l = await api.lease();
        if (!l) return;
        const payload = l.shard.payload as { i: number; len: number };
        const x = new Float32Array(payload.len);
        x[0] = payload.i;
        await api.putArray(l.leaseId, l.fence, "x", { dtype: "f32", shape: [x.length], data: x });
        if ((await api.submit(l.leaseId, l.fence)).status !== "accepted") {
          throw new Error("bench: a result was not accepted");
        }
        latencies.push(performance.now() - s);
        done++;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    roundTrips: done,
    seconds: secs,
    perSecond: done / secs,
    p50ms: median(latencies),
    p95ms: latencies[Math.floor(latencies.length * 0.95)],
  };
}

export async function run(args: { sizes?: number[]; log?: (s: string) => void }): Promise<BenchReport> {
  const rows: Record<string, number | string>[] = [];
  const notes: string[] = [];
  const pgUrl = env("BENCH_PG_URL") ?? env("PG_TEST_URL");
  const backends: [string, (clients: number, rounds: number) => Promise<Measured>][] = [[
    "sqlite",
    (c, r) => inProcess(openSqliteDeno(join(mkdtempSync(join(tmpdir(), "bench-db-")), "db.sqlite")), c, r),
  ]];
  if (pgUrl) {
    const schema = () => `bench_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6)}`;
    backends.push(["postgresql", async (c, r) => inProcess(await openPg(pgUrl, { schema: schema(), max: 20 }), c, r)]);
  } else {notes.push(
      "PostgreSQL skipped: set PG_TEST_URL (or BENCH_PG_URL) to a server this user may create schemas on.",
    );}
  backends.push(["workerd (Durable Object)", onWorkerd]);
  for (const [name, measure] of backends) {
    for (const clients of args.sizes ?? [1, 10, 100]) {
      const rounds = Math.max(200, clients * 10);
      args.log?.(`${name}: ${clients} clients, ${rounds} round trips`);
      rows.push({ store: name, clients, ...(await measure(clients, rounds)) });
    }
  }
  notes.push(
    "One round trip = POST /v1/leases + PUT one 64-byte array + POST submit (spot check, accept). SQLite and " +
      "PostgreSQL: server and clients share one Deno process; workerd runs in its own.",
  );
  return { adapter: "CPU (coordinator; no GPU work)", rows, notes };
}
