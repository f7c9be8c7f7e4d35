// Helpers for the coordinator tests: stores on SQLite (better-sqlite3 / node:sqlite), PostgreSQL
// (PG_TEST_URL, one fresh schema per store) and workerd (a Durable Object per store, called over loopback
// through the edge coordinator's test routes), an in-process coordinator on a real loopback socket or the
// edge coordinator in a workerd process, and job/worker helpers.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { type AppOptions, createApp } from "../../server/app.ts";
import { DiskBlobStore } from "../../server/blobs.ts";
import type { JobStatus } from "../../src/protocol/api.ts";
import { CoordinatorClient } from "../../src/protocol/client.ts";
import { type HttpLimits, serveHttp } from "../../server/http.ts";
import { type EdgeConfig } from "../../server/edge-config.ts";
import { decodeValue, encodeValue } from "../../server/edge-test-hooks.ts";
import { ApiError } from "../../server/errors.ts";
import { TEST_KINDS } from "../../server/jobs/test-kinds.ts";
import { startEdge } from "../../server/serve-edge.ts";
import type { Inputs } from "../../src/protocol/job-kind.ts";
import type { SqlDriver } from "../../server/store/driver.ts";
import { openPg } from "../../server/store/pg.ts";
import { SqlStore, type StoreOptions } from "../../server/store/sql.ts";
import { env, runtime } from "../../src/platform.ts";
import { freePort, tempDir } from "../support/host.ts";

export type Backend = "sqlite" | "pg" | "workerd";

export const ADMIN = "test-admin-token-0123456789";

export { freePort, tempDir };

/** PostgreSQL for tests: PG_TEST_URL, or a clear failure (CI starts a server and sets it, see .ci/run). */
export function pgUrl(): string {
  const url = env("PG_TEST_URL");
  if (!url) {
    throw new Error(
      "PG_TEST_URL is not set: these tests need a PostgreSQL server (e.g. " +
        "postgres://coord:coord@127.0.0.1:5432/coord_test; .ci/run starts one and sets it)",
    );
  }
  return url;
}

let schemaCounter = 0;
export function freshSchema(): string {
  return `t_${Date.now().toString(36)}_${(Math.random() * 1e9).toString(36).replace(".", "")}_${schemaCounter++}`;
}

/** A SQLite driver for this runtime: node:sqlite under Deno, better-sqlite3 under Node. */
export async function openSqlite(path: string): Promise<SqlDriver> {
  if (runtime === "deno") return (await import("../../server/store/sqlite-deno.ts")).openSqliteDeno(path);
  return (await import("../../server/store/sqlite-node.ts")).openSqliteNode(path);
}

/**
 * A SqlStore whose every method runs inside the edge coordinator's Durable Object `name` (one per store),
 * with the test's clock sent along.
 */
export function remoteStore(url: string, name: string, now?: () => number): SqlStore {
  const call = async (method: string, args: unknown[]) => {
    const res = await fetch(`${url}/__test/store/${name}`, {
      method: "POST",
      body: encodeValue({ method, args, now: now?.() }),
    });
    const out = decodeValue(await res.text()) as { value?: unknown; error?: { message: string; status?: number } };
    if (!out.error) return out.value;
    throw out.error.status
      ? new ApiError(out.error.status as ApiError["status"], out.error.message)
      : new Error(out.error.message);
  };
  const db = {
    dialect: "sqlite",
    run: (...a: unknown[]) => call("db.run", a),
    all: (...a: unknown[]) => call("db.all", a),
  };
  const own: Record<PropertyKey, unknown> = { db, dialect: "sqlite", now: now ?? Date.now, then: undefined };
  return new Proxy(own, {
    get: (_, p) => (Object.hasOwn(own, p) ? own[p] : (...args: unknown[]) => call(String(p), args)),
  }) as unknown as SqlStore;
}

let storeHost: Promise<string> | undefined;

/** One workerd for the stores of this test process (each store its own object). */
function edgeStoreHost(): Promise<string> {
  storeHost ??= (async () => {
    const edge = await startEdge({
      port: 0,
      data: tempDir("edge-stores"),
      adminToken: ADMIN,
      testHooks: true,
    });
    process.once("exit", () => edge.child.kill("SIGKILL"));
    return edge.url;
  })();
  return storeHost;
}

/** A fresh database (PostgreSQL: a fresh schema), or an existing one given `at` (SQLite path / PG schema /
 *  workerd object name). */
export async function openStore(backend: Backend, opts: StoreOptions = {}, at?: string): Promise<SqlStore> {
  if (backend === "workerd") return remoteStore(await edgeStoreHost(), at ?? freshSchema(), opts.now);
  const driver = backend === "pg"
    ? await openPg(pgUrl(), { schema: at ?? freshSchema(), max: 30 })
    : await openSqlite(at ?? join(tempDir("coord-db"), "db.sqlite"));
  return new SqlStore(driver, opts).init();
}

export interface Running {
  url: string;
  /** The in-process app (not for workerd). */
  app?: ReturnType<typeof createApp>;
  store: SqlStore;
  /** Accepted arrays, downloaded as a volunteer downloads them. */
  inputs(jobId: string): Inputs;
  /** Fix every random draw of the coordinator (solo leases, replays, audits); undefined: random again. */
  setRandom(value: number | undefined): Promise<void>;
  close(): Promise<void>;
}

/** Accepted arrays through the volunteer route, by a volunteer registered for reading. */
function arraysOver(url: string): Running["inputs"] {
  let reader: Promise<CoordinatorClient> | undefined;
  return (jobId) => ({
    get: async (key, name) => {
      reader ??= register(url, "reader").then((r) => new CoordinatorClient(url, r.token));
      return (await reader).getArray(jobId, key, name);
    },
  });
}

type CoordinatorOptions = Partial<AppOptions> & { http?: Partial<HttpLimits> };

/** The edge coordinator in its own workerd process; `opts` travel as its configuration (data only). */
async function startEdgeCoordinator(opts: CoordinatorOptions): Promise<Running> {
  const { http: _, store: __, random, log: ___, ...config } = opts;
  if (random) throw new Error("workerd: fix random draws with setRandom, not a function");
  const edge = await startEdge({
    port: 0,
    data: tempDir("edge-coordinator"),
    adminToken: ADMIN,
    config: { sweepMs: 500, ...(config as EdgeConfig) },
    testHooks: true,
  });
  return {
    url: edge.url,
    store: remoteStore(edge.url, "coordinator"),
    inputs: arraysOver(edge.url),
    async setRandom(value) {
      await fetch(`${edge.url}/__test/random`, { method: "POST", body: JSON.stringify({ value }) });
    },
    close: () => edge.stop(),
  };
}

/**
 * Options for a crowd of volunteers that all connect from this machine's one loopback address: the
 * per-address limits (requests, registrations, connections, leases) would otherwise treat them as one
 * client, as they would a NAT.
 */
export const ONE_ADDRESS_CROWD = {
  addressRateLimit: { perSecond: 1e6, burst: 1e6 },
  registerRateLimit: { perSecond: 1e6, burst: 1e6 },
  maxSourceLeases: Infinity,
  sourceJobShare: Infinity,
  http: { maxConnectionsPerAddress: 10_000 },
} satisfies Partial<AppOptions> & { http: Partial<HttpLimits> };

/** The app on a real loopback socket, through server/http.ts as the coordinator serves it. */
export async function startCoordinator(
  backend: Backend,
  opts: CoordinatorOptions = {},
  storeOpts: StoreOptions = {},
): Promise<Running> {
  if (backend === "workerd") return startEdgeCoordinator(opts);
  const store = opts.store ?? (await openStore(backend, storeOpts));
  const fixed: { random?: number } = {};
  const random = opts.random ?? Math.random;
  const app = createApp({
    store,
    blobs: new DiskBlobStore(tempDir("coord-blobs")),
    kinds: TEST_KINDS,
    adminToken: ADMIN,
    ...opts,
    random: () => fixed.random ?? random(),
  });
  app.coordinator.start(500);
  const server = await serveHttp(app.fetch, 0, "127.0.0.1", opts.http);
  return {
    url: `http://127.0.0.1:${server.port}`,
    app,
    store,
    inputs: arraysOver(`http://127.0.0.1:${server.port}`),
    async setRandom(value) {
      fixed.random = value;
    },
    async close() {
      await server.close();
      await app.coordinator.stop();
      await store.close();
    },
  };
}

export const ADMIN_AUTH = { authorization: `Bearer ${ADMIN}` };

export function createJob(url: string, spec: Record<string, unknown>, kind = "test-matrix"): Promise<string> {
  return new CoordinatorClient(url, ADMIN).createJob(kind, spec);
}

export function jobStatus(url: string, jobId: string): Promise<JobStatus> {
  return new CoordinatorClient(url, ADMIN).jobStatus(jobId);
}

export async function waitForJob(url: string, jobId: string, timeoutMs = 30_000): Promise<JobStatus> {
  const t0 = Date.now();
  for (;;) {
    const s = await jobStatus(url, jobId);
    if (s.state === "done" || s.state === "failed") return s;
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(`job ${jobId} still ${s.state} after ${timeoutMs} ms: ${JSON.stringify(s.shards)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function register(url: string, name = "v"): Promise<{ volunteerId: string; token: string }> {
  return new CoordinatorClient(url).register(name);
}

// ------------------------------------------------------------------ child processes

// `node --import tsx` rather than the tsx binary: the binary runs node as a grandchild, which a
// kill -9 of the spawned process would leave running.
export const NODE_TSX = ["--import", "tsx"];

/** Start `command args` and resolve once a stdout line matches `ready`. */
export function spawnUntil(
  command: string,
  args: string[],
  ready: RegExp,
  onLine?: (l: string) => void,
  env?: Record<string, string>,
): Promise<ChildProcess> {
  const child = spawn(command, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: env ? { ...process.env, ...env } : undefined,
  });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  return new Promise((resolve, reject) => {
    let buf = "";
    let resolved = false;
    child.stdout!.on("data", (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        onLine?.(line);
        if (!resolved && ready.test(line)) {
          resolved = true;
          resolve(child);
        }
      }
    });
    child.once("exit", (code) => {
      if (!resolved) reject(new Error(`child ${args.join(" ")} exited (${code}) before ready: ${err}`));
    });
  });
}

export const killed = (child: ChildProcess, signal: NodeJS.Signals) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill(signal);
  });

const DENO = new URL("../../node_modules/.bin/deno", import.meta.url).pathname;

/**
 * A coordinator process (`deno run server/main.deno.ts` or `node server/main.node.ts` with `args`) on
 * 127.0.0.1, once it listens; `log` collects what it prints.
 */
export async function spawnCoordinator(
  runtime: "deno" | "node",
  args: string[],
  env?: Record<string, string>,
): Promise<{ child: ChildProcess; url: string; port: number; log: string[] }> {
  const [cmd, pre] = runtime === "deno"
    ? [DENO, ["run", "-A", "--no-check", "server/main.deno.ts"]]
    : [process.execPath, [...NODE_TSX, "server/main.node.ts"]];
  let url = "";
  const log: string[] = [];
  const child = await spawnUntil(cmd, [...pre, "--host", "127.0.0.1", ...args], /listening on/, (l) => {
    log.push(l);
    url = /listening on (http:\/\/\S+)/.exec(l)?.[1] ?? url;
  }, env);
  return { child, url, port: Number(new URL(url).port), log };
}
