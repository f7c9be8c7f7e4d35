// The coordinator as an edge function: the same app (server/app.ts) in workerd, locally through
// `npm run serve:edge` (server/serve-edge.ts) or on Cloudflare (wrangler.toml). A stateless front
// forwards every request to one SQLite-backed Durable Object, which holds the store, the result blobs
// (SqlBlobStore) and the uploaded datasets (SqlDatasets) in its database; its alarm is the sweeper. The
// volunteer page is static assets (the ASSETS binding). Every job kind runs here: their finish is a shard
// that volunteers compute, and without WebGPU the object checks train results on the host, as Node does.
import { extname } from "node:path";
import { CONTENT_TYPES, createApp } from "./app.ts";
import { SqlBlobStore } from "./blobs.ts";
import { decodeConfig } from "./edge-config.ts";
import { storeHook, type TestHooks } from "./edge-test-hooks.ts";
import { datasetRoutes, JOB_KINDS, SqlDatasets, useDatasets } from "./jobs/index.ts";
import { TEST_KINDS } from "./jobs/test-kinds.ts";
import { type DoStorage, openSqliteDo } from "./store/sqlite-do.ts";
import { SqlStore } from "./store/sql.ts";

interface Fetcher {
  fetch(req: Request): Promise<Response>;
}

interface DurableObjectState {
  storage: DoStorage & {
    getAlarm(): Promise<number | null>;
    setAlarm(at: number): Promise<void>;
  };
  blockConcurrencyWhile<T>(fn: () => Promise<T>): Promise<T>;
}

interface Env {
  COORDINATOR: { idFromName(name: string): unknown; get(id: unknown): Fetcher };
  ASSETS?: Fetcher;
  ADMIN_TOKEN: string;
  /** JSON of an EdgeConfig (server/edge-config.ts). */
  OPTIONS?: string;
  /** "1": the client address is CF-Connecting-IP (set by Cloudflare's edge, which overwrites a client's). */
  TRUST_CF_CONNECTING_IP?: string;
  /** "1": the /__test/ routes of server/edge-test-hooks.ts (the tests' store proxy). Never in a deployment. */
  TEST_HOOKS?: string;
}

/** The client's address as the front saw it; only the front can reach the object, so it cannot be forged. */
const CLIENT = "x-coordinator-client";

type App = ReturnType<typeof createApp>;

export class CoordinatorObject {
  private store: Promise<SqlStore> | undefined;
  private app: Promise<App> | undefined;
  private readonly config;
  private lastCollection = 0;
  private readonly hooks: TestHooks = {};

  constructor(private readonly ctx: DurableObjectState, private readonly env: Env) {
    this.config = decodeConfig(env.OPTIONS);
  }

  private openStore(): Promise<SqlStore> {
    this.store ??= new SqlStore(openSqliteDo(this.ctx.storage), { now: () => this.hooks.now ?? Date.now() }).init();
    return this.store;
  }

  private openApp(): Promise<App> {
    this.app ??= this.ctx.blockConcurrencyWhile(async () => {
      const store = await this.openStore();
      const blobs = await new SqlBlobStore(store.db).init();
      useDatasets(await new SqlDatasets(store.db).init());
      const { sweepMs: _, ...options } = this.config;
      const app = createApp({
        ...options,
        store,
        blobs,
        kinds: new Map([...JOB_KINDS, ...TEST_KINDS]),
        routes: [(guards) => datasetRoutes(guards)],
        adminToken: this.env.ADMIN_TOKEN,
        random: () => this.hooks.random ?? Math.random(),
        log: (m) => console.log(m),
      });
      if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now());
      return app;
    });
    return this.app;
  }

  async fetch(req: Request): Promise<Response> {
    if (this.env.TEST_HOOKS === "1" && new URL(req.url).pathname.startsWith("/__test/")) {
      return storeHook(req, this.hooks, () => this.openStore(), () => (this.store = undefined));
    }
    const app = await this.openApp();
    return app.fetch(req, { remoteAddr: req.headers.get(CLIENT) ?? "" });
  }

  /** The sweeper: finish complete jobs, re-check results a crash left, collect garbage; then again. */
  async alarm(): Promise<void> {
    const { coordinator } = await this.openApp();
    try {
      await coordinator.sweep();
      if (Date.now() - this.lastCollection >= (this.config.gcIntervalMs ?? 10 * 60_000)) {
        this.lastCollection = Date.now();
        await coordinator.collectGarbage();
      }
      await coordinator.settled();
    } finally {
      await this.ctx.storage.setAlarm(Date.now() + (this.config.sweepMs ?? 2000));
    }
  }
}

/** A file of the volunteer page, with its content type (a module script must be served as JavaScript). */
async function volunteerPage(assets: Fetcher, req: Request, path: string): Promise<Response> {
  const res = await assets.fetch(new Request(new URL(path, req.url), req));
  if (!res.ok) return Response.json({ error: `no file ${path.slice(1)}` }, { status: 404 });
  const headers = new Headers(res.headers);
  headers.set("content-type", CONTENT_TYPES[extname(path)] ?? "application/octet-stream");
  return new Response(res.body, { status: res.status, headers });
}

export default {
  fetch(req: Request, env: Env): Promise<Response> {
    const url = new URL(req.url);
    if (env.ASSETS && /^\/volunteer(\/|$)/.test(url.pathname)) {
      return volunteerPage(env.ASSETS, req, url.pathname.slice("/volunteer".length).replace(/(^|\/)$/, "/index.html"));
    }
    // Each test store is an object of its own; everything else is the one coordinator.
    const testStore = env.TEST_HOOKS === "1" ? /^\/__test\/store\/([\w-]+)$/.exec(url.pathname)?.[1] : undefined;
    const headers = new Headers(req.headers);
    headers.set(CLIENT, env.TRUST_CF_CONNECTING_IP === "1" ? req.headers.get("cf-connecting-ip") ?? "" : "127.0.0.1");
    const object = env.COORDINATOR.get(env.COORDINATOR.idFromName(testStore ?? "coordinator"));
    return object.fetch(new Request(req, { headers }));
  },
};
