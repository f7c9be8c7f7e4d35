// `npm run serve:edge`: the edge coordinator (server/main.worker.ts) in workerd on this machine. Bundles the
// worker with esbuild and the volunteer page (server/volunteer-page.ts) into a directory of this process's
// own (tests start several coordinators at once; `--build` writes .cache/edge for wrangler.toml), writes
// workerd's config there and runs the `workerd` binary from npm. The Durable Object's SQLite files live in
// --data, so a restart on the same directory carries on where it stopped.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { z } from "zod";
import { type CommandSpec, parseCommand } from "../src/cli/command.ts";
import { args, env, exit, isMain, onSignal } from "../src/platform.ts";
import { type EdgeConfig, encodeConfig } from "./edge-config.ts";
import { adminTokenOf, ServeFlags } from "./serve.ts";
import { buildVolunteerPage } from "./volunteer-page.ts";

const ROOT = new URL("../", import.meta.url).pathname;
/** What wrangler.toml deploys. */
const DEPLOY_BUILD = `${ROOT}.cache/edge`;
/** workerd's compatibility date: node:fs, node:os and friends are there without flags from 2026-08. */
export const COMPATIBILITY_DATE = "2026-11-01";

const run = (cmd: string, argv: string[]) =>
  new Promise<void>((ok, fail) =>
    execFile(cmd, argv, { cwd: ROOT }, (e, _o, err) => (e ? fail(new Error(`${cmd}: ${err || e.message}`)) : ok()))
  );

const builds = new Map<string, Promise<string>>();

/** Bundle the worker and the volunteer page into `dir`, once per process; resolves to `dir`. */
export function buildEdge(dir: string): Promise<string> {
  let built = builds.get(dir);
  if (built) return built;
  built = (async () => {
    mkdirSync(dir, { recursive: true });
    // The shaders ride inline (src/gpu/wgsl.ts), set before any kernel module loads: imports run in order.
    const shaders = Object.fromEntries(
      readdirSync(`${ROOT}wgsl`).filter((f) => f.endsWith(".wgsl")).map((
        f,
      ) => [f, readFileSync(`${ROOT}wgsl/${f}`, "utf8")]),
    );
    writeFileSync(`${dir}/shaders.js`, `globalThis.__WGSL__ = ${JSON.stringify(shaders)};\n`);
    const worker = JSON.stringify(`${ROOT}server/main.worker.ts`);
    writeFileSync(
      `${dir}/entry.js`,
      `import "./shaders.js";\nexport * from ${worker};\nexport { default } from ${worker};\n`,
    );
    await run(`${ROOT}node_modules/.bin/esbuild`, [
      `${dir}/entry.js`,
      "--bundle",
      "--format=esm",
      "--platform=browser",
      "--conditions=workerd,worker",
      "--target=es2022",
      "--external:node:*",
      "--external:cloudflare:*",
      // Modules resolve paths against their own URL when they load; workerd gives them none.
      `--define:import.meta.url="file:///edge/worker.js"`,
      `--outfile=${dir}/worker.js`,
      "--log-level=warning",
    ]);
    await buildVolunteerPage(`${dir}/volunteer`);
    return dir;
  })();
  built.catch(() => builds.delete(dir));
  builds.set(dir, built);
  return built;
}

let ownBuild: string | undefined;
/** This process's build directory. */
const processBuild = () => (ownBuild ??= mkdtempSync(join(tmpdir(), "edge-build-")));

async function workerdBinary(): Promise<string> {
  const m = (await import("workerd")).default;
  return typeof m === "string" ? m : m.default;
}

export interface EdgeOptions {
  /** 0: a free one. */
  port: number;
  host?: string;
  /** The Durable Object's storage directory. */
  data: string;
  adminToken: string;
  config?: EdgeConfig;
  testHooks?: boolean;
  /** Every line workerd prints (the coordinator's log among them). */
  onLine?: (line: string) => void;
}

const text = (s: string) => JSON.stringify(s);

function capnp(o: EdgeOptions & { host: string }, data: string, build: string): string {
  const bindings = [
    `(name = "COORDINATOR", durableObjectNamespace = "CoordinatorObject")`,
    `(name = "ASSETS", service = "assets")`,
    `(name = "ADMIN_TOKEN", text = ${text(o.adminToken)})`,
    `(name = "OPTIONS", text = ${text(encodeConfig(o.config ?? {}))})`,
    ...(o.testHooks ? [`(name = "TEST_HOOKS", text = "1")`] : []),
  ];
  return `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .coordinator),
    (name = "storage", disk = (path = ${text(data)}, writable = true)),
    (name = "assets", disk = (path = ${text(`${build}/volunteer`)})),
  ],
  sockets = [(name = "http", address = ${text(`${o.host}:${o.port}`)}, http = (), service = "main")],
);
const coordinator :Workerd.Worker = (
  modules = [(name = "worker.js", esModule = embed "worker.js")],
  compatibilityDate = ${text(COMPATIBILITY_DATE)},
  durableObjectNamespaces = [(className = "CoordinatorObject", uniqueKey = "coordinator", enableSql = true)],
  durableObjectStorage = (localDisk = "storage"),
  bindings = [${bindings.join(", ")}],
);
`;
}

export interface RunningEdge {
  url: string;
  child: ChildProcess;
  /** SIGTERM by default; SIGKILL for a crash. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A port nobody listens on now (workerd is told a number, not 0). */
const freePort = (host: string) =>
  new Promise<number>((ok, fail) => {
    const s = createServer().once("error", fail);
    s.listen(0, host, () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });

/** Start workerd and resolve once the coordinator answers. */
export async function startEdge(opts: EdgeOptions): Promise<RunningEdge> {
  const o = { ...opts, host: opts.host ?? "127.0.0.1" };
  o.port ||= await freePort(o.host);
  const dir = await buildEdge(processBuild());
  const data = resolve(o.data);
  mkdirSync(data, { recursive: true });
  const config = `${dir}/config-${o.port}.capnp`;
  writeFileSync(config, capnp(o, data, dir));
  const child = spawn(await workerdBinary(), ["serve", config], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  for (const stream of [child.stdout!, child.stderr!]) {
    let buf = "";
    stream.on("data", (d) => {
      buf += d;
      for (let i; (i = buf.indexOf("\n")) >= 0; buf = buf.slice(i + 1)) {
        lines.push(buf.slice(0, i));
        o.onLine?.(buf.slice(0, i));
      }
    });
  }
  const url = `http://${o.host === "0.0.0.0" ? "127.0.0.1" : o.host}:${o.port}`;
  const stop = (signal: NodeJS.Signals = "SIGTERM") =>
    new Promise<void>((done) => {
      if (child.exitCode !== null || child.signalCode !== null) return done();
      child.once("exit", () => done());
      child.kill(signal);
    });
  for (const t0 = Date.now();;) {
    if (child.exitCode !== null) throw new Error(`workerd exited (${child.exitCode}): ${lines.join("; ")}`);
    const ok = await fetch(`${url}/v1/ready`).then((r) => r.status === 404, () => false);
    if (ok) return { url, child, stop };
    if (Date.now() - t0 > 30_000) {
      await stop("SIGKILL");
      throw new Error(`workerd did not answer on ${url} within 30 s: ${lines.join("; ")}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const EdgeFlags = ServeFlags.pick({
  port: true,
  adminToken: true,
  leaseMs: true,
  sweepMs: true,
  registration: true,
  maxVolunteerShare: true,
}).extend({
  host: z.string().default("127.0.0.1").describe(
    "the address to listen on (every client counts as one address here: workerd does not give the peer's)",
  ),
  data: z.string().default("coordinator-data/edge").describe("the Durable Object's storage (its SQLite files)"),
  build: z.boolean().default(false).describe(
    "only bundle the worker and the volunteer page into .cache/edge, and exit (wrangler.toml deploys that)",
  ),
});
export type EdgeFlags = z.output<typeof EdgeFlags>;

export const serveEdgeCommand: CommandSpec<typeof EdgeFlags> = {
  name: "serve:edge",
  summary: "the coordinator in workerd (the edge build): one Durable Object holds its state, blobs and datasets",
  flags: EdgeFlags,
  examples: [
    "npm run serve:edge                               # 127.0.0.1:8787, storage in coordinator-data/edge",
    "npm run serve:edge -- --port 9000 --admin-token $ADMIN",
    "npm run serve:edge -- --build && npx wrangler deploy    # Cloudflare (server/README.md)",
  ],
};

async function main(): Promise<void> {
  try {
    const parsed = await parseCommand(serveEdgeCommand, args());
    if (parsed.exitWith !== undefined) {
      console.log(parsed.exitWith);
      exit(0);
    }
    const f = parsed.flags;
    if (f.build) {
      console.log(`built ${await buildEdge(DEPLOY_BUILD)}`);
      exit(0);
    }
    const adminToken = adminTokenOf(f.adminToken ?? env("COORDINATOR_ADMIN_TOKEN"), console.log);
    const edge = await startEdge({
      port: f.port,
      host: f.host,
      data: f.data,
      adminToken,
      config: {
        leaseMs: f.leaseMs,
        sweepMs: f.sweepMs,
        registration: f.registration,
        volunteerJobShare: f.maxVolunteerShare,
      },
      onLine: (l) => console.log(l),
    });
    console.log(`coordinator (workerd) listening on ${edge.url} (durable object storage ${resolve(f.data)})`);
    const stop = () => void edge.stop().then(() => exit(0));
    onSignal("SIGINT", stop);
    onSignal("SIGTERM", stop);
    edge.child.once("exit", (code) => exit(code ?? 1));
  } catch (e) {
    console.error(`serve:edge: ${(e as Error).message}`.replace(/\s*\n\s*/g, "; "));
    exit(2);
  }
}

if (isMain(import.meta)) await main();
