// Real processes for the volunteer tests (Deno): a coordinator on a loopback port with its own SQLite
// file and blob directory, and `deno task worker` processes, each with its output collected.
declare const Deno: {
  Command: new (cmd: string, o: { args: string[]; cwd?: string; env?: Record<string, string>; stdout: "piped"; stderr: "piped" }) => { spawn(): Child };
  execPath(): string;
  makeTempDir(): Promise<string>;
};
interface Child {
  pid: number;
  stdout: ReadableStream<Uint8Array>;
  stderr: ReadableStream<Uint8Array>;
  status: Promise<{ code: number; signal: string | null }>;
  kill(sig?: string): void;
}

const ROOT = new URL("../../", import.meta.url).pathname;
export const ADMIN = "volunteer-test-admin-token";

export class Proc {
  lines: string[] = [];
  #waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  readonly exited: Promise<{ code: number; signal: string | null }>;
  constructor(readonly name: string, readonly child: Child, echo = false) {
    const pump = async (s: ReadableStream<Uint8Array>) => {
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
    this.exited = child.status;
  }
  /** Resolves with the first line (already seen or to come) matching `re`. */
  waitFor(re: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    for (const l of this.lines) {
      const m = l.match(re);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.name}: no line matching ${re} in ${timeoutMs} ms; last lines:\n${this.lines.slice(-15).join("\n")}`)), timeoutMs);
      this.#waiters.push({ re, resolve: (m) => (clearTimeout(t), resolve(m)) });
    });
  }
  kill(sig = "SIGTERM"): void {
    try {
      this.child.kill(sig);
    } catch {
      // already gone
    }
  }
}

function deno(name: string, args: string[], echo: boolean): Proc {
  const child = new Deno.Command(Deno.execPath(), { args: ["run", "-A", "--no-check", ...args], cwd: ROOT, env: { XDG_RUNTIME_DIR: "/tmp" }, stdout: "piped", stderr: "piped" }).spawn();
  return new Proc(name, child, echo);
}

export async function startCoordinator(opts: { leaseMs?: number; echo?: boolean } = {}): Promise<{ proc: Proc; url: string; dir: string }> {
  const dir = await Deno.makeTempDir();
  const proc = deno("coordinator", [
    "server/main.deno.ts", "--port", "0", "--host", "127.0.0.1", "--db", `${dir}/db.sqlite`, "--blobs", `${dir}/blobs`,
    "--admin-token", ADMIN, "--lease-ms", String(opts.leaseMs ?? 60_000),
  ], opts.echo ?? false);
  const m = await proc.waitFor(/listening on (http:\/\/\S+)/, 60_000);
  return { proc, url: m[1], dir };
}

export function startWorker(name: string, server: string, extra: string[] = [], echo = false): Proc {
  return deno(name, ["src/volunteer/worker.deno.ts", "--server", server, "--name", name, ...extra], echo);
}

export async function createJob(url: string, kind: string, spec: unknown): Promise<string> {
  const res = await fetch(`${url}/v1/jobs`, { method: "POST", headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" }, body: JSON.stringify({ kind, spec }) });
  const body = await res.json();
  if (res.status !== 201) throw new Error(`create job: ${res.status} ${JSON.stringify(body)}`);
  return body.jobId;
}

export interface JobStatus {
  state: string;
  shards: { total: number; accepted: number; leased: number; pending: number };
  summary?: Record<string, unknown>;
  error?: string;
}

export async function jobStatus(url: string, id: string): Promise<JobStatus> {
  return (await fetch(`${url}/v1/jobs/${id}`)).json();
}

export async function waitForJob(url: string, id: string, until: (s: JobStatus) => boolean, timeoutMs: number): Promise<JobStatus> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await jobStatus(url, id);
    if (until(s)) return s;
    if (s.state === "failed") throw new Error(`job ${id} failed: ${JSON.stringify(s)}`);
    if (Date.now() > end) throw new Error(`job ${id}: timed out in state ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}
