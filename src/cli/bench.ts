// npm run bench -- NAME: runs bench/NAME.ts (every bench/*.ts but the harness is a benchmark exporting
// run(args): BenchReport) and prints its table, or its rows as JSON.
import { readdirSync } from "node:fs";
import { z } from "zod";
import { BENCH_MODELS, printReport } from "../../bench/harness.ts";
import type { CommandSpec, Parsed } from "./command.ts";

type BenchModel = keyof typeof BENCH_MODELS;

export const BENCHES = readdirSync(new URL("../../bench/", import.meta.url)).filter((f) =>
  f.endsWith(".ts") && f !== "harness.ts"
).map((f) => f.slice(0, -3)).sort();

export const BenchFlags = z.object({
  sizes: z.array(z.number().int().positive()).optional().describe("problem sizes, where the benchmark takes them"),
  model: z.enum(Object.keys(BENCH_MODELS) as [BenchModel, ...BenchModel[]]).optional().describe(
    "the network, where the benchmark takes one (train, attribute)",
  ),
  profile: z.boolean().default(false).describe(
    "also time every kernel on the device (timestamp queries) and print where a step's time goes (train)",
  ),
  json: z.boolean().default(false).describe("print the rows as JSON on stdout (progress stays on stderr)"),
});

export const command: CommandSpec<typeof BenchFlags> = {
  name: "bench",
  summary: "run a benchmark against its peer in the same process and print a table",
  positionals: [{ name: "name", description: "the benchmark (bench/NAME.ts)", choices: BENCHES }],
  flags: BenchFlags,
  examples: [
    "npm run bench -- matmul",
    "npm run bench -- search --sizes 2000 --json",
    "npm run bench -- attribute --model trak-cnn   # against PyTorch on the CNN trak's examples use",
  ],
};

export async function runBench(name: string, flags: z.output<typeof BenchFlags>): Promise<void> {
  const mod = await import(`../../bench/${name}.ts`);
  const log = (s: string) => console.error(s);
  printReport(
    `bench ${name}`,
    await mod.run({ sizes: flags.sizes, model: flags.model, profile: flags.profile, log }),
    flags.json,
  );
}

export function main({ flags, positionals }: Parsed<typeof BenchFlags>): Promise<void> {
  return runBench(positionals[0], flags);
}
