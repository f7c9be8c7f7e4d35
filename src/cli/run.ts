// The entry point of every command-line tool (the coordinator has its own, server/main.*.ts):
//   deno run -A src/cli/run.ts NAME [args]
// parses `args` against src/cli/NAME.ts's command (flags from its zod schema: --help, --config,
// --print-config), runs its main, and turns any failure (a bad flag, a missing or corrupt file, a device
// that cannot be had) into one line on stderr and exit code 2. DEBUG=1 prints the stack as well.
import { removePartialWrites } from "../data/io.ts";
import { args, env, exit, isMain, onSignal } from "../platform.ts";
import { type CommandSpec, parseCommand, type Parsed } from "./command.ts";

interface CommandModule {
  command: CommandSpec;
  main(parsed: Parsed<CommandSpec["flags"]>): Promise<unknown>;
  /** The command stops itself on SIGINT (the worker hands its lease back first). */
  ownSignals?: boolean;
}

export const COMMANDS: Record<string, () => Promise<CommandModule>> = {
  detect: () => import("./detect.ts") as Promise<CommandModule>,
  train: () => import("./train.ts") as Promise<CommandModule>,
  evaluate: () => import("./evaluate.ts") as Promise<CommandModule>,
  attribute: () => import("./attribute.ts") as Promise<CommandModule>,
  poison: () => import("./poison.ts") as Promise<CommandModule>,
  datamodels: () => import("./datamodels.ts") as Promise<CommandModule>,
  kernels: () => import("./kernels.ts") as Promise<CommandModule>,
  bench: () => import("./bench.ts") as Promise<CommandModule>,
  worker: () => import("../volunteer/worker.deno.ts") as Promise<CommandModule>,
};

if (isMain(import.meta)) {
  const [name, ...rest] = args();
  if (!name || !Object.hasOwn(COMMANDS, name)) {
    console.error(`usage: run.ts COMMAND [args]; commands: ${Object.keys(COMMANDS).join(", ")}`);
    exit(2);
  }
  try {
    const mod = await COMMANDS[name]();
    // Ctrl-C: every file is written to a temp name and renamed, so no cache entry or report is ever half
    // written; drop the temp files of writes in progress, and a rerun resumes from the cached stages.
    if (!mod.ownSignals) {
      onSignal("SIGINT", () => {
        console.error(`\n${name}: interrupted; finished stages stay cached, run the same command to resume`);
        void removePartialWrites().finally(() => exit(130));
      });
    }
    const parsed = await parseCommand(mod.command, rest);
    if (parsed.exitWith !== undefined) {
      console.log(parsed.exitWith);
      exit(0);
    }
    await mod.main(parsed);
  } catch (e) {
    const err = e as Error;
    console.error(`${name}: ${err?.message ?? String(e)}`.replace(/\s*\n\s*/g, "; "));
    if (env("DEBUG")) console.error(err?.stack);
    exit(2);
  }
}
