// Shared start-up of the coordinator for server/main.deno.ts and server/main.node.ts: flags, storage,
// job kinds, the app, the HTTP server (server/http.ts). The SQLite binding comes in as a function.
//   --port N (8787)  --host H (0.0.0.0)
//   --db PATH        SQLite file, WAL (default coordinator-data/coordinator.sqlite)
//   --pg URL         PostgreSQL instead of SQLite (several instances may share it; env DATABASE_URL)
//   --pg-schema S    PostgreSQL schema to use (created if missing; default public)
//   --blobs DIR      content-addressed result blobs (default coordinator-data/blobs; shared by instances)
//   --admin-token T  token that creates jobs (env COORDINATOR_ADMIN_TOKEN; printed when generated)
//   --lease-ms N     lease length, extended by heartbeats (60000)
//   --revalidate-ms N  re-check results left unvalidated this long by a crashed instance (30000)
//   --sweep-ms N     how often to look for such results and for complete, unfinished jobs (2000)
//   --headers-timeout-ms N, --request-timeout-ms N   a request's headers, and all of it, must arrive
//                    within these (10000, 120000)
//   --max-connections-per-address N, --max-connections N   open connections (64 per address, 1024 in all)
//   --max-leases-per-address N   live leases all volunteers registered from one address may hold (16)
//   --trust-proxy    take the client address from X-Forwarded-For (behind one reverse proxy)
//   --kinds LIST     job kinds to register: "default" (server/jobs), "test" (server/jobs/test-kinds.ts), or both
// "default,test"
//   --volunteer-dir DIR  the browser worker page served at /volunteer (default: bundled at start-up by
//                    server/volunteer-page.ts into .cache/volunteer-page)
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import type { Hono } from "hono";
import { buildVolunteerPage } from "./volunteer-page.ts";
import { args, env, exit, onSignal } from "../src/platform.ts";
import { createApp } from "./app.ts";
import { DiskBlobStore } from "./blobs.ts";
import { DEFAULT_HTTP_LIMITS, serveHttp } from "./http.ts";
import type { JobKind, JobKindRegistry } from "../src/protocol/job-kind.ts";
import type { SqlDriver } from "./store/driver.ts";
import { openPg } from "./store/pg.ts";
import { SqlStore } from "./store/sql.ts";

const Flags = z.object({
  port: z.coerce.number().int().min(0).max(65535).default(8787),
  host: z.string().default("0.0.0.0"),
  db: z.string().default("coordinator-data/coordinator.sqlite"),
  pg: z.string().url().optional(),
  "pg-schema": z.string().regex(/^[a-z_][a-z0-9_]*$/, "lower-case letters, digits and _").optional(),
  blobs: z.string().default("coordinator-data/blobs"),
  "admin-token": z.string().min(16, "the admin token needs at least 16 characters").optional(),
  "lease-ms": z.coerce.number().int().min(100).default(60_000),
  "revalidate-ms": z.coerce.number().int().min(100).default(30_000),
  "sweep-ms": z.coerce.number().int().min(50).default(2000),
  "headers-timeout-ms": z.coerce.number().int().min(100).default(DEFAULT_HTTP_LIMITS.headersTimeoutMs),
  "request-timeout-ms": z.coerce.number().int().min(100).default(DEFAULT_HTTP_LIMITS.requestTimeoutMs),
  "max-connections-per-address": z.coerce.number().int().min(1).default(DEFAULT_HTTP_LIMITS.maxConnectionsPerAddress),
  "max-connections": z.coerce.number().int().min(1).default(DEFAULT_HTTP_LIMITS.maxConnections),
  "max-leases-per-address": z.coerce.number().int().min(1).default(16),
  "trust-proxy": z.enum(["true", "false"]).default("false").transform((v) => v === "true"),
  kinds: z.string().regex(/^(default|test)(,(default|test))*$/, 'use "default", "test" or "default,test"').default(
    "default",
  ),
  "volunteer-dir": z.string().optional(),
});
export type ServeFlags = z.infer<typeof Flags>;

/** Flags that take no value. */
const SWITCHES = new Set(["trust-proxy"]);

export function parseFlags(argv: string[], env: (k: string) => string | undefined): ServeFlags {
  const raw: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument "${a}"`);
    const eq = a.indexOf("=");
    if (eq > 0) raw[a.slice(2, eq)] = a.slice(eq + 1);
    else if (SWITCHES.has(a.slice(2))) raw[a.slice(2)] = "true";
    else {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith("--")) throw new Error(`flag ${a} needs a value`);
      raw[a.slice(2)] = v;
      i++;
    }
  }
  const known = Object.keys(Flags.shape);
  const unknown = Object.keys(raw).filter((k) => !known.includes(k));
  if (unknown.length) {
    throw new Error(
      `unknown flag(s): ${unknown.map((k) => `--${k}`).join(", ")}; known: ${known.map((k) => `--${k}`).join(" ")}`,
    );
  }
  if (!raw.pg && env("DATABASE_URL")) raw.pg = env("DATABASE_URL")!;
  if (!raw["admin-token"] && env("COORDINATOR_ADMIN_TOKEN")) raw["admin-token"] = env("COORDINATOR_ADMIN_TOKEN")!;
  const r = Flags.safeParse(raw);
  if (!r.success) throw new Error(r.error.issues.map((i) => `--${i.path.join(".")}: ${i.message}`).join("\n"));
  return r.data;
}

async function loadKinds(list: string): Promise<{ kinds: JobKindRegistry; routes: Hono[] }> {
  const kinds: JobKindRegistry = new Map<string, JobKind<unknown>>();
  const routes: Hono[] = [];
  for (const which of list.split(",")) {
    if (which === "default") {
      const m = await import("./jobs/index.ts");
      for (const [k, v] of m.JOB_KINDS) kinds.set(k, v);
      routes.push(m.datasetRoutes());
    } else {
      const m = await import("./jobs/test-kinds.ts");
      for (const [k, v] of m.TEST_KINDS) kinds.set(k, v);
    }
  }
  return { kinds, routes };
}

export async function startCoordinator(
  flags: ServeFlags,
  openSqlite: (path: string) => SqlDriver,
  log: (s: string) => void = console.log,
) {
  let driver: SqlDriver;
  if (flags.pg) driver = await openPg(flags.pg, { schema: flags["pg-schema"] });
  else {
    mkdirSync(dirname(flags.db), { recursive: true });
    driver = openSqlite(flags.db);
  }
  const store = await new SqlStore(driver).init();
  mkdirSync(flags.blobs, { recursive: true });
  const { kinds, routes } = await loadKinds(flags.kinds);
  let adminToken = flags["admin-token"];
  if (!adminToken) {
    adminToken = Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString("base64url");
    log(`admin token (generated; pass --admin-token or COORDINATOR_ADMIN_TOKEN to fix it): ${adminToken}`);
  }
  const app = createApp({
    store,
    blobs: new DiskBlobStore(flags.blobs),
    kinds,
    adminToken,
    leaseMs: flags["lease-ms"],
    revalidateAfterMs: flags["revalidate-ms"],
    maxSourceLeases: flags["max-leases-per-address"],
    trustProxy: flags["trust-proxy"],
    volunteerDir: flags["volunteer-dir"] ?? (await buildVolunteerPage()),
    routes,
    log: (m) => log(m),
  });
  app.coordinator.start(flags["sweep-ms"]);
  const server = await serveHttp(app.fetch, flags.port, flags.host, {
    headersTimeoutMs: flags["headers-timeout-ms"],
    requestTimeoutMs: flags["request-timeout-ms"],
    maxConnectionsPerAddress: flags["max-connections-per-address"],
    maxConnections: flags["max-connections"],
  });
  log(
    `coordinator listening on http://${flags.host === "0.0.0.0" ? "127.0.0.1" : flags.host}:${server.port} (${
      flags.pg ? "postgresql" : `sqlite ${flags.db}`
    }; kinds: ${[...kinds.keys()].join(", ")})`,
  );
  return {
    app,
    port: server.port,
    async close() {
      await server.close();
      await app.coordinator.stop();
      await store.close();
    },
  };
}

/** The `serve` command: flags from the command line and environment, stopped by SIGINT or SIGTERM. */
export async function serveMain(openSqlite: (path: string) => SqlDriver): Promise<void> {
  try {
    const running = await startCoordinator(parseFlags(args(), env), openSqlite);
    const stop = () => void running.close().then(() => exit(0));
    onSignal("SIGINT", stop);
    onSignal("SIGTERM", stop);
  } catch (e) {
    console.error(`serve: ${(e as Error).message}`);
    exit(2);
  }
}
