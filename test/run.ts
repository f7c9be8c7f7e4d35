// `npm test`: everything, on a fresh Debian machine, with nothing typed first.
//  1. The system packages the tests need (Chromium for the browser tests, Mesa's Vulkan and GL drivers for
//     WebGPU on the CPU, PostgreSQL for the storage tests, Fashion-MNIST for the user-data tests): installed
//     with apt-get when missing and we are root, else the one command to run is printed and nothing else
//     happens.
//  2. PostgreSQL: PG_TEST_URL when set; else a throwaway server of Debian's binaries in a temp directory
//     (as the postgres user when we are root: PostgreSQL refuses to run as root), stopped at the end.
//  3. lint, typecheck, the Node tests, the browser tests, the Deno tests, in that order; the first that
//     fails stops the run, and the exit code is its.
// Run one stage alone with `npm run test:node` (and :browser, :deno) once the machine is set up.
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { environment, exit, onSignal, run } from "../src/platform.ts";
import { freePort } from "./support/host.ts";

// dataset-fashion-mnist: Fashion-MNIST's official IDX files, the grey dataset the user-data tests scan.
const PACKAGES = [
  "chromium",
  "mesa-vulkan-drivers",
  "libegl-mesa0",
  "libgl1-mesa-dri",
  "postgresql",
  "dataset-fashion-mnist",
];
const STAGES = ["lint", "typecheck", "test:node", "test:browser", "test:deno"];
const isRoot = process.getuid?.() === 0;

const say = (s: string) => console.error(`[npm test] ${s}`);

function sh(
  cmd: string,
  args: string[],
  opts: { asPostgres?: boolean; env?: Record<string, string> } = {},
): { ok: boolean; out: string } {
  const [c, a] = opts.asPostgres && isRoot ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
  const r = spawnSync(c, a, { encoding: "utf8", env: { ...environment(), ...opts.env } });
  return { ok: r.status === 0, out: `${r.stdout ?? ""}${r.stderr ?? ""}${r.error?.message ?? ""}` };
}

function missingPackages(needPostgres: boolean): string[] {
  if (!sh("dpkg-query", ["--version"]).ok) return []; // not Debian: nothing to check or install here
  return PACKAGES.filter((p) =>
    (p !== "postgresql" || needPostgres) &&
    !/install ok installed/.test(sh("dpkg-query", ["-W", "-f=${Status}", p]).out)
  );
}

function ensurePackages(needPostgres: boolean): void {
  const missing = missingPackages(needPostgres);
  if (!missing.length) return;
  const install = ["install", "-y", "-q", "--no-install-recommends", ...missing];
  if (!isRoot || !sh("apt-get", ["--version"]).ok) {
    say(`the tests need these Debian packages, which are missing: ${missing.join(" ")}`);
    say(`install them, then run npm test again:  sudo apt-get update && sudo apt-get ${install.join(" ")}`);
    exit(1);
  }
  say(`installing ${missing.join(" ")} (apt-get)`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  for (const args of [["update", "-q"], install]) {
    const r = sh("apt-get", args, { env });
    if (!r.ok) {
      say(`apt-get ${args.join(" ")} failed:\n${r.out.slice(-2000)}`);
      exit(1);
    }
  }
}

/** A PostgreSQL server of Debian's binaries in a temp directory; resolves to its URL and a stop function. */
async function throwawayPostgres(): Promise<{ url: string; stop(): void }> {
  const versions = existsSync("/usr/lib/postgresql")
    ? readdirSync("/usr/lib/postgresql").filter((v) => existsSync(`/usr/lib/postgresql/${v}/bin/initdb`))
    : [];
  if (!versions.length) throw new Error("no PostgreSQL binaries under /usr/lib/postgresql/*/bin");
  const bin = `/usr/lib/postgresql/${versions.sort((a, b) => Number(b) - Number(a))[0]}/bin`;
  const dir = mkdtempSync(join(tmpdir(), "pg-test-"));
  chmodSync(dir, 0o777); // the postgres user writes here when we are root
  const data = join(dir, "data");
  const port = await freePort();
  const fail = (what: string, out: string) => {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${what} failed:\n${out.slice(-2000)}`);
  };
  const init = sh(`${bin}/initdb`, ["-D", data, "-U", "coord", "--auth=trust", "-E", "UTF8", "--no-sync"], {
    asPostgres: true,
  });
  if (!init.ok) fail("initdb", init.out);
  const opts =
    `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=300`;
  const start = sh(`${bin}/pg_ctl`, ["-D", data, "-o", opts, "-l", join(dir, "log"), "-w", "start"], {
    asPostgres: true,
  });
  if (!start.ok) fail("pg_ctl start", start.out);
  return {
    url: `postgres://coord@127.0.0.1:${port}/postgres`,
    stop() {
      sh(`${bin}/pg_ctl`, ["-D", data, "-m", "immediate", "-w", "stop"], { asPostgres: true });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const env: Record<string, string> = {};
// Mesa prints "XDG_RUNTIME_DIR is invalid or not set" for every process that opens a GPU without one.
if (!process.env.XDG_RUNTIME_DIR) {
  env.XDG_RUNTIME_DIR = mkdtempSync(join(tmpdir(), "xdg-"));
  chmodSync(env.XDG_RUNTIME_DIR, 0o700);
}
ensurePackages(!process.env.PG_TEST_URL);
let pg: { url: string; stop(): void } | undefined;
if (!process.env.PG_TEST_URL) {
  pg = await throwawayPostgres();
  env.PG_TEST_URL = pg.url;
  say(`PostgreSQL for the storage tests: a throwaway server at ${pg.url} (set PG_TEST_URL to use your own)`);
}
const stop = (code: number): never => {
  pg?.stop();
  if (env.XDG_RUNTIME_DIR) rmSync(env.XDG_RUNTIME_DIR, { recursive: true, force: true });
  return exit(code);
};
onSignal("SIGINT", () => stop(130));
onSignal("SIGTERM", () => stop(143));

for (const stage of STAGES) {
  say(stage);
  const code = await run("npm", ["run", "--silent", stage], { env });
  if (code !== 0) {
    say(`${stage} failed (exit ${code})`);
    stop(code);
  }
}
say("all passed");
stop(0);
