// Real processes for the volunteer tests (Deno): a coordinator on a loopback port with its own SQLite
// file and blob directory, and `deno task worker` processes, each with its output collected.
import { CoordinatorClient } from "../../src/protocol/client.ts";
import type { JobStatus } from "../../src/protocol/api.ts";
import { type Child, execPath, spawnChild } from "../../src/platform.ts";
import { tempDir } from "../support/host.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
export const ADMIN = "volunteer-test-admin-token";

export class Proc {
  lines: string[] = [];
  #waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  constructor(readonly name: string, readonly child: Child, echo = false) {
    this.exited = child.exited;
    const pump = async (s: AsyncIterable<Uint8Array>) => {
      const dec = new TextDecoder();
      let buf = "";
      for await (const chunk of s) {
        buf += dec.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          this.lines.push(line);
          if (echo) console.log(`[${name}] ${line}`);
          this.#waiters = this.#waiters.filter((w) => {
            const m = line.match(w.re);
            if (m) w.resolve(m);
            return !m;
          });
        }
      }
    };
    void pump(child.stdout);
    void pump(child.stderr);
  }
  /** Resolves with the first line (already seen or to come) matching `re`. */
  waitFor(re: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    for (const l of this.lines) {
      const m = l.match(re);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () =>
          reject(
            new Error(
              `${this.name}: no line matching ${re} in ${timeoutMs} ms; last lines:\n${
                this.lines.slice(-15).join("\n")
              }`,
            ),
          ),
        timeoutMs,
      );
      this.#waiters.push({ re, resolve: (m) => (clearTimeout(t), resolve(m)) });
    });
  }
  kill(sig: "SIGTERM" | "SIGKILL" = "SIGTERM"): void {
    this.child.kill(sig);
  }
}

/** `deno run` of a script of this repository, with its output collected. */
export async function deno(
  name: string,
  args: string[],
  echo = false,
  env: Record<string, string> = {},
): Promise<Proc> {
  return new Proc(
    name,
    await spawnChild(execPath(), ["run", "-A", "--no-check", ...args], {
      cwd: ROOT,
      env: { XDG_RUNTIME_DIR: "/tmp", ...env },
    }),
    echo,
  );
}

export async function startCoordinator(
  opts: { leaseMs?: number; echo?: boolean; flags?: string[] } = {},
): Promise<{ proc: Proc; url: string; dir: string }> {
  const dir = tempDir("volunteer-coordinator");
  const proc = await deno("coordinator", [
    "server/main.deno.ts",
    "--port",
    "0",
    "--host",
    "127.0.0.1",
    "--db",
    `${dir}/db.sqlite`,
    "--blobs",
    `${dir}/blobs`,
    "--admin-token",
    ADMIN,
    "--lease-ms",
    String(opts.leaseMs ?? 60_000),
    ...(opts.flags ?? []),
  ], opts.echo ?? false);
  const m = await proc.waitFor(/listening on (http:\/\/\S+)/, 60_000);
  return { proc, url: m[1], dir };
}

export function startWorker(name: string, server: string, extra: string[] = [], echo = false): Promise<Proc> {
  return deno(name, ["src/cli/run.ts", "worker", "--server", server, "--name", name, ...extra], echo);
}

export function createJob(url: string, kind: string, spec: unknown): Promise<string> {
  return new CoordinatorClient(url, ADMIN).createJob(kind, spec);
}

export function jobStatus(url: string, id: string): Promise<JobStatus> {
  return new CoordinatorClient(url, ADMIN).jobStatus(id);
}

export async function waitForJob(
  url: string,
  id: string,
  until: (s: JobStatus) => boolean,
  timeoutMs: number,
): Promise<JobStatus> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await jobStatus(url, id);
    if (until(s)) return s;
    if (s.state === "failed") throw new Error(`job ${id} failed: ${JSON.stringify(s)}`);
    if (Date.now() > end) throw new Error(`job ${id}: timed out in state ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}
