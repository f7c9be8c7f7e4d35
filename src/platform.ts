// The process around the code, the same on Deno and Node (and harmless in browsers, which have none):
// arguments, environment, exit, signals, the terminal, memory and subprocesses. The one place that
// knows either runtime's globals. Browser bundles include it, so it imports no node: module statically.

interface DenoGlobal {
  args: string[];
  env: { get(k: string): string | undefined; set(k: string, v: string): void; toObject(): Record<string, string> };
  exit(code: number): never;
  execPath(): string;
  memoryUsage(): { rss: number };
  addSignalListener(signal: string, f: () => void): void;
  stderr: { isTerminal(): boolean; writeSync(b: Uint8Array): number };
  test(def: { name: string; fn: () => unknown; sanitizeOps?: boolean; sanitizeResources?: boolean }): void;
  Command: new (
    cmd: string,
    o: {
      args: string[];
      cwd?: string;
      env?: Record<string, string>;
      stdin: "null";
      stdout: "piped" | "inherit";
      stderr: "piped" | "inherit";
    },
  ) => {
    spawn(): {
      pid: number;
      stdout: ReadableStream<Uint8Array>;
      stderr: ReadableStream<Uint8Array>;
      status: Promise<{ code: number; signal: string | null }>;
      kill(signal?: string): void;
    };
  };
}

interface NodeProcess {
  argv: string[];
  env: Record<string, string | undefined>;
  exit(code: number): never;
  execPath: string;
  memoryUsage(): { rss: number };
  on(signal: string, f: () => void): void;
  stderr: { isTTY?: boolean; write(s: string): boolean };
  versions?: { node?: string };
}

/** Deno's global namespace, where there is one. */
export const deno = (globalThis as { Deno?: DenoGlobal }).Deno;
const node = deno
  ? undefined
  : (globalThis as { process?: NodeProcess }).process?.versions?.node
  ? (globalThis as { process?: NodeProcess }).process
  : undefined;

export const runtime: "deno" | "node" | "browser" = deno ? "deno" : node ? "node" : "browser";

/** Command-line arguments after the script. */
export function args(): string[] {
  return deno?.args ?? node?.argv.slice(2) ?? [];
}

/** An environment variable; undefined where Deno may not read the environment, and in browsers unless a
 *  page put a `process.env` there (the browser tests forward TEST_SEED so). */
export function env(name: string): string | undefined {
  try {
    return deno
      ? deno.env.get(name)
      : (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
  } catch {
    return undefined;
  }
}

export function setEnv(name: string, value: string): void {
  if (deno) deno.env.set(name, value);
  else if (node) node.env[name] = value;
}

export function exit(code: number): never {
  if (deno) return deno.exit(code);
  if (node) return node.exit(code);
  throw new Error(`exit(${code}) outside a process`);
}

/** The Deno or Node executable running this process. */
export function execPath(): string {
  return deno?.execPath() ?? node?.execPath ?? "";
}

/** Resident set size in bytes, where the runtime tells. */
export function memoryRss(): number | undefined {
  return (deno ?? node)?.memoryUsage().rss;
}

export function onSignal(signal: "SIGINT" | "SIGTERM", f: () => void): void {
  if (deno) deno.addSignalListener(signal, f);
  else node?.on(signal, f);
}

export function stderrIsTerminal(): boolean {
  return deno ? deno.stderr.isTerminal() : !!node?.stderr.isTTY;
}

/** Write to stderr without a newline (progress bars). */
export function writeStderr(s: string): void {
  if (deno) deno.stderr.writeSync(new TextEncoder().encode(s));
  else node?.stderr.write(s);
}

/** Whether `meta` is the entry module (`import.meta.main` in Deno; the script path in Node). */
export function isMain(meta: ImportMeta): boolean {
  const m = meta as ImportMeta & { main?: boolean };
  if (m.main !== undefined) return m.main;
  return !!node && new URL(meta.url).pathname === node.argv[1];
}

/** The whole environment, for a child process to start from. */
export function environment(): Record<string, string | undefined> {
  return deno ? deno.env.toObject() : { ...node?.env };
}

export interface Child {
  pid: number;
  stdout: AsyncIterable<Uint8Array>;
  stderr: AsyncIterable<Uint8Array>;
  /** The exit code, or the signal that ended it. */
  exited: Promise<{ code: number | null; signal: string | null }>;
  kill(signal?: "SIGTERM" | "SIGKILL" | "SIGINT"): void;
}

/**
 * Start `command args` with its output piped. Deno's own Command under Deno: its node:child_process
 * reports a child that caught SIGTERM and exited 0 as killed by the signal.
 */
export async function spawnChild(
  command: string,
  argv: string[],
  opts: { cwd?: string; env?: Record<string, string>; inherit?: boolean } = {},
): Promise<Child> {
  const io = opts.inherit ? "inherit" : "piped";
  if (deno) {
    const c = new deno.Command(command, {
      args: argv,
      cwd: opts.cwd,
      env: opts.env,
      stdin: "null",
      stdout: io,
      stderr: io,
    }).spawn();
    const none = (async function* () {})();
    return {
      pid: c.pid,
      stdout: opts.inherit ? none : c.stdout,
      stderr: opts.inherit ? none : c.stderr,
      exited: c.status.then((st) => ({ code: st.signal ? null : st.code, signal: st.signal })),
      kill: (signal = "SIGTERM") => {
        try {
          c.kill(signal);
        } catch {
          // already gone
        }
      },
    };
  }
  const { spawn } = await import("node:child_process");
  const c = spawn(command, argv, {
    cwd: opts.cwd,
    env: { ...environment(), ...opts.env },
    stdio: ["ignore", io === "piped" ? "pipe" : "inherit", io === "piped" ? "pipe" : "inherit"],
  });
  const none = (async function* () {})();
  return {
    pid: c.pid ?? -1,
    stdout: c.stdout ?? none,
    stderr: c.stderr ?? none,
    exited: new Promise((resolve, reject) => {
      c.once("error", reject);
      c.once("exit", (code, signal) => resolve({ code, signal }));
    }),
    kill: (signal = "SIGTERM") => void c.kill(signal),
  };
}

/** Run `command args` with the terminal's stdio; resolves to its exit code (128 + n when a signal ended it). */
export async function run(
  command: string,
  argv: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<number> {
  const { code } = await (await spawnChild(command, argv, { ...opts, inherit: true })).exited;
  return code ?? 128;
}
