// Helpers for the coordinator tests: stores on SQLite (better-sqlite3 / node:sqlite) and PostgreSQL
// (PG_TEST_URL, one fresh schema per store), an in-process coordinator on a real loopback socket,
// and job/worker helpers.
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { type AppOptions, createApp } from "../../server/app.ts";
import { DiskBlobStore } from "../../server/blobs.ts";
import type { JobStatus } from "../../src/protocol/api.ts";
import { CoordinatorClient } from "../../src/protocol/client.ts";
import { type HttpLimits, serveHttp } from "../../server/http.ts";
import { TEST_KINDS } from "../../server/jobs/test-kinds.ts";
import type { SqlDriver } from "../../server/store/driver.ts";
import { openPg } from "../../server/store/pg.ts";
import { SqlStore, type StoreOptions } from "../../server/store/sql.ts";
import { env, runtime } from "../../src/platform.ts";
import { freePort, tempDir } from "../support/host.ts";

export type Backend = "sqlite" | "pg";

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

/** A fresh database (PostgreSQL: a fresh schema), or an existing one given `at` (SQLite path / PG schema). */
export async function openStore(backend: Backend, opts: StoreOptions = {}, at?: string): Promise<SqlStore> {
  const driver = backend === "pg"
    ? await openPg(pgUrl(), { schema: at ?? freshSchema(), max: 30 })
    : await openSqlite(at ?? join(tempDir("coord-db"), "db.sqlite"));
  return new SqlStore(driver, opts).init();
}

export interface Running {
  url: string;
  app: ReturnType<typeof createApp>;
  store: SqlStore;
  close(): Promise<void>;
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
  opts: Partial<AppOptions> & { http?: Partial<HttpLimits> } = {},
  storeOpts: StoreOptions = {},
): Promise<Running> {
  const store = opts.store ?? (await openStore(backend, storeOpts));
  const app = createApp({
    store,
    blobs: new DiskBlobStore(tempDir("coord-blobs")),
    kinds: TEST_KINDS,
    adminToken: ADMIN,
    ...opts,
  });
  app.coordinator.start(500);
  const server = await serveHttp(app.fetch, 0, "127.0.0.1", opts.http);
  return {
    url: `http://127.0.0.1:${server.port}`,
    app,
    store,
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
