// The entry point of every command-line tool (the coordinator has its own, server/main.*.ts):
//   deno run -A src/cli/run.ts NAME [args]
// runs src/cli/NAME.ts with `args`, and turns any failure (a bad flag, a missing or corrupt file, a device
// that cannot be had) into one line on stderr and exit code 2. DEBUG=1 prints the stack as well.
import { args, env, exit, useArgs } from "../platform.ts";

const COMMANDS: Record<string, (argv: string[]) => Promise<unknown>> = {
  detect: () => import("./detect.ts"),
  train: () => import("./train.ts"),
  attribute: () => import("./attribute.ts"),
  poison: () => import("./poison.ts"),
  datamodels: () => import("./datamodels.ts"),
  kernels: () => import("./kernels.ts"),
  bench: async (argv) => (await import("./bench.ts")).runBench(argv),
  worker: () => import("../volunteer/worker.deno.ts"),
};

const [name, ...rest] = args();
const command = Object.hasOwn(COMMANDS, name ?? "") ? COMMANDS[name] : undefined;
if (!command) {
  console.error(`usage: run.ts COMMAND [args]; commands: ${Object.keys(COMMANDS).join(", ")}`);
  exit(2);
}
useArgs(rest);
try {
  await command(rest);
} catch (e) {
  const err = e as Error;
  console.error(`${name}: ${err?.message ?? String(e)}`.split("\n")[0]);
  if (env("DEBUG")) console.error(err?.stack);
  exit(2);
}
