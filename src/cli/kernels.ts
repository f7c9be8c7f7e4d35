// npm run kernels -- list | test NAME | bench NAME: the kernel workbench. `test` runs
// test/kernels/NAME.test.ts in Deno on this machine's adapter (every registered variant); `bench` runs
// bench/NAME.ts when there is one.
import { stat } from "node:fs/promises";
import { loadKernels } from "../../kernels/discover.ts";
import { execPath, exit, run } from "../platform.ts";
import { BenchFlags, runBench } from "./bench.ts";
import { type CommandSpec, type Parsed, UsageError } from "./command.ts";

const root = new URL("../../", import.meta.url);
const exists = (rel: string) => stat(new URL(rel, root)).then(() => true, () => false);

export const KernelsFlags = BenchFlags.extend({});

export const command: CommandSpec<typeof KernelsFlags> = {
  name: "kernels",
  summary: "list the kernel ops and their variants, run one op's tests or its benchmark",
  positionals: [
    { name: "verb", description: "what to do", choices: ["list", "test", "bench"] },
    { name: "name", description: "the op (test, bench)", optional: true },
  ],
  flags: KernelsFlags,
  examples: ["npm run kernels -- list", "npm run kernels -- test matmul", "npm run kernels -- bench matmul --json"],
};

export async function main({ flags, positionals: [verb, name] }: Parsed<typeof KernelsFlags>): Promise<void> {
  const ops = await loadKernels();
  if (verb === "list") {
    for (const [op, k] of ops) {
      const test = (await exists(`test/kernels/${op}.test.ts`)) ? `test/kernels/${op}.test.ts` : "(no test)";
      const bench = (await exists(`bench/${op}.ts`)) ? `bench/${op}.ts` : "(no bench)";
      console.log(`${op} — ${k.description}\n  test: ${test}   bench: ${bench}`);
      for (const v of k.variants) {
        const mark = v.name === k.activeName ? "*" : " ";
        console.log(`  ${mark} ${v.name.padEnd(18)} ${v.file}${v.description ? `  — ${v.description}` : ""}`);
      }
    }
    console.log("\n* = active (choose with KERNEL_VARIANTS=op=variant,...). Add your own: kernels/README.md");
    return;
  }
  if (!name) throw new UsageError(`${verb} needs an op; kernels: ${[...ops.keys()].join(", ")}`);
  const file = verb === "test" ? `test/kernels/${name}.test.ts` : `bench/${name}.ts`;
  if (!(await exists(file))) {
    throw new UsageError(`no ${verb === "test" ? "test" : "benchmark"} for "${name}" (${file})`);
  }
  if (verb === "test") exit(await run(execPath(), ["test", "-A", "--no-check", file], { cwd: root.pathname }));
  await runBench(name, flags);
}
