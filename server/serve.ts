// The coordinator's start-up for server/main.deno.ts and server/main.node.ts: flags (`npm run serve --
// --help`), storage, job kinds, the app, the HTTP server (server/http.ts). The SQLite binding comes in as
// a function.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { buildVolunteerPage } from "./volunteer-page.ts";
import { args, env, exit, onSignal } from "../src/platform.ts";
import { type CommandSpec, parseCommand } from "../src/cli/command.ts";
import { type AppOptions, createApp } from "./app.ts";
import { DiskBlobStore } from "./blobs.ts";
import { DEFAULT_HTTP_LIMITS, serveHttp } from "./http.ts";
import type { JobKind, JobKindRegistry } from "../src/protocol/job-kind.ts";
import type { SqlDriver } from "./store/driver.ts";
import { openPg } from "./store/pg.ts";
import { SqlStore } from "./store/sql.ts";

export const ServeFlags = z.object({
  port: z.number().int().min(0).max(65535).default(8787).describe("the port to listen on (0: any free one)"),
  host: z.string().default("0.0.0.0").describe("the address to listen on"),
  db: z.string().default("coordinator-data/coordinator.sqlite").describe("the SQLite file (WAL mode)"),
  pg: z.url().optional().describe("PostgreSQL instead of SQLite; several instances may share it (env DATABASE_URL)"),
  pgSchema: z.string().regex(/^[a-z_][a-z0-9_]*$/, "lower-case letters, digits and _").optional().describe(
    "the PostgreSQL schema to use (created if missing; default public)",
  ),
  blobs: z.string().default("coordinator-data/blobs").describe("result blobs by content hash; instances share it"),
  datasets: z.string().default("coordinator-data/datasets").describe(
    "uploaded datasets (POST /v1/datasets), named by content hash; instances share it",
  ),
  adminToken: z.string().min(16, "the admin token needs at least 16 characters").optional().describe(
    "the token that creates jobs (env COORDINATOR_ADMIN_TOKEN; printed when generated)",
  ),
  leaseMs: z.number().int().min(100).default(60_000).describe("lease length; each heartbeat extends a lease by this"),
  revalidateMs: z.number().int().min(100).default(30_000).describe(
    "re-check results a crashed instance left unvalidated this long",
  ),
  sweepMs: z.number().int().min(50).default(2000).describe("how often to look for those and for jobs to finish"),
  headersTimeoutMs: z.number().int().min(100).default(DEFAULT_HTTP_LIMITS.headersTimeoutMs).describe(
    "a request's headers must arrive within this (else 408 and the socket closes)",
  ),
  requestTimeoutMs: z.number().int().min(100).default(DEFAULT_HTTP_LIMITS.requestTimeoutMs).describe(
    "a whole request, body included, must arrive within this",
  ),
  maxConnectionsPerAddress: z.number().int().min(1).default(DEFAULT_HTTP_LIMITS.maxConnectionsPerAddress).describe(
    "open connections from one client address; more are closed at once",
  ),
  maxConnections: z.number().int().min(1).default(DEFAULT_HTTP_LIMITS.maxConnections).describe(
    "open connections in all",
  ),
  maxLeasesPerAddress: z.number().int().min(1).default(16).describe(
    "live leases all volunteers registered from one address may hold together",
  ),
  maxVolunteerShare: z.number().gt(0).max(1).default(1).describe(
    "share of a job's shards one volunteer may hold or have answered (at least one shard); 1: no cap. " +
      "A public deployment sets it low, e.g. 0.05 (server/README.md)",
  ),
  replayFraction: z.number().min(0).max(1).default(0.1).describe(
    "share of a proven volunteer's train results whose training segment is replayed (a new volunteer's: all; " +
      "replays need WebGPU: `npm run serve`, not serve:node)",
  ),
  auditFraction: z.number().min(0).max(1).default(0.05).describe(
    "share of agreed (or trusted solo) deterministic results the coordinator recomputes before accepting them " +
      "(a new volunteer's: all); a mismatch quarantines their senders (trak shards need WebGPU: `npm run serve`)",
  ),
  registration: z.enum(["open", "invite"]).default("open").describe(
    "who may register: anyone, or holders of an invite from POST /v1/invites (a public deployment: invite)",
  ),
  trustProxy: z.boolean().default(false).describe("take the client address from X-Forwarded-For (behind one proxy)"),
  kinds: z.array(z.enum(["default", "test"])).default(["default"]).describe(
    "job kinds to register: default (server/jobs: trak, datamodels) and/or test (server/jobs/test-kinds.ts)",
  ),
  volunteerDir: z.string().optional().describe(
    "the browser worker page served at /volunteer (default: bundled at start-up into .cache/volunteer-page)",
  ),
});
export type ServeFlags = z.output<typeof ServeFlags>;

export const serveCommand: CommandSpec<typeof ServeFlags> = {
  name: "serve",
  summary: "the volunteer coordinator: cuts jobs into shards, leases them, validates what comes back",
  flags: ServeFlags,
  examples: [
    "npm run serve                                    # SQLite in coordinator-data/, port 8787",
    "npm run serve -- --pg postgres://user:pass@host/db --blobs /shared/blobs",
    "npm run serve:node -- --port 9000 --admin-token $ADMIN",
  ],
};

async function loadKinds(
  list: string[],
  datasets: string,
): Promise<{ kinds: JobKindRegistry; routes: AppOptions["routes"] & object }> {
  const kinds: JobKindRegistry = new Map<string, JobKind<unknown>>();
  const routes: AppOptions["routes"] & object = [];
  for (const which of new Set(list)) {
    if (which === "default") {
      const m = await import("./jobs/index.ts");
      for (const [k, v] of m.JOB_KINDS) kinds.set(k, v);
      m.useDatasets(new m.DiskDatasets(datasets));
      routes.push((guards) => m.datasetRoutes(guards));
    } else {
      const m = await import("./jobs/test-kinds.ts");
      for (const [k, v] of m.TEST_KINDS) kinds.set(k, v);
    }
  }
  return { kinds, routes };
}

/** The admin token given, or a generated one, printed. */
export function adminTokenOf(given: string | undefined, log: (s: string) => void): string {
  if (given) return given;
  const token = Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString("base64url");
  log(`admin token (generated; pass --admin-token or COORDINATOR_ADMIN_TOKEN to fix it): ${token}`);
  return token;
}

export async function startCoordinator(
  flags: ServeFlags,
  openSqlite: (path: string) => SqlDriver,
  log: (s: string) => void = console.log,
) {
  let driver: SqlDriver;
  if (flags.pg) driver = await openPg(flags.pg, { schema: flags.pgSchema });
  else {
    mkdirSync(dirname(flags.db), { recursive: true });
    driver = openSqlite(flags.db);
  }
  const store = await new SqlStore(driver).init();
  mkdirSync(flags.blobs, { recursive: true });
  const { kinds, routes } = await loadKinds(flags.kinds, flags.datasets);
  const adminToken = adminTokenOf(flags.adminToken, log);
  const app = createApp({
    store,
    blobs: new DiskBlobStore(flags.blobs),
    kinds,
    adminToken,
    leaseMs: flags.leaseMs,
    revalidateAfterMs: flags.revalidateMs,
    maxSourceLeases: flags.maxLeasesPerAddress,
    volunteerJobShare: flags.maxVolunteerShare,
    replayFraction: flags.replayFraction,
    auditFraction: flags.auditFraction,
    registration: flags.registration,
    trustProxy: flags.trustProxy,
    volunteerDir: flags.volunteerDir ?? (await buildVolunteerPage()),
    routes,
    log: (m) => log(m),
  });
  app.coordinator.start(flags.sweepMs);
  const server = await serveHttp(app.fetch, flags.port, flags.host, {
    headersTimeoutMs: flags.headersTimeoutMs,
    requestTimeoutMs: flags.requestTimeoutMs,
    maxConnectionsPerAddress: flags.maxConnectionsPerAddress,
    maxConnections: flags.maxConnections,
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

/** The `serve` command: flags from the command line and the environment, stopped by SIGINT or SIGTERM. */
export async function serveMain(openSqlite: (path: string) => SqlDriver): Promise<void> {
  try {
    const parsed = await parseCommand(serveCommand, args());
    if (parsed.exitWith !== undefined) {
      console.log(parsed.exitWith);
      exit(0);
    }
    const flags = {
      ...parsed.flags,
      pg: parsed.flags.pg ?? env("DATABASE_URL"),
      adminToken: parsed.flags.adminToken ?? env("COORDINATOR_ADMIN_TOKEN"),
    };
    const running = await startCoordinator(flags, openSqlite);
    const stop = () => void running.close().then(() => exit(0));
    onSignal("SIGINT", stop);
    onSignal("SIGTERM", stop);
  } catch (e) {
    console.error(`serve: ${(e as Error).message}`.replace(/\s*\n\s*/g, "; "));
    exit(2);
  }
}
