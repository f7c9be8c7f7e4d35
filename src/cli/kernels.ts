// The kernel workbench: npm run kernels -- list | test NAME | bench NAME [--json]
// `test` runs test/kernels/NAME.test.ts in Deno on this machine's adapter (every registered variant);
// `bench` runs bench/NAME.ts when there is one.
import { loadKernels } from "../../kernels/discover.ts";
import { runBench } from "./bench.ts";
import { stat } from "node:fs/promises";
import { args, execPath, exit, run } from "../platform.ts";

const root = new URL("../../", import.meta.url);
const exists = (rel: string) => stat(new URL(rel, root)).then(() => true, () => false);

async function list(): Promise<void> {
  for (const [name, op] of ops) {
    const test = (await exists(`test/kernels/${name}.test.ts`)) ? `test/kernels/${name}.test.ts` : "(no test)";
    const bench = (await exists(`bench/${name}.ts`)) ? `bench/${name}.ts` : "(no bench)";
    console.log(`${name} — ${op.description}\n  test: ${test}   bench: ${bench}`);
    for (const v of op.variants) {
      const mark = v.name === op.activeName ? "*" : " ";
      console.log(`  ${mark} ${v.name.padEnd(18)} ${v.file}${v.description ? `  — ${v.description}` : ""}`);
    }
  }
  console.log("\n* = active (choose with KERNEL_VARIANTS=op=variant,...). Add your own: kernels/README.md");
}

async function test(name: string): Promise<number> {
  const file = `test/kernels/${name}.test.ts`;
  if (!(await exists(file))) {
    console.error(`no test for "${name}" (${file}); kernels: ${[...ops.keys()].join(", ")}`);
    return 2;
  }
  return run(execPath(), ["test", "-A", "--no-check", file], { cwd: root.pathname });
}

const ops = await loadKernels();
const [verb, name, ...rest] = args();
if (verb === "list") await list();
else if (verb === "test" && name) exit(await test(name));
else if (verb === "bench" && name) {
  if (!(await exists(`bench/${name}.ts`))) {
    console.error(`no benchmark for "${name}" (bench/${name}.ts)`);
    exit(2);
  }
  await runBench([name, ...rest]);
} else {
  console.error("usage: npm run kernels -- list | test NAME | bench NAME [--json]");
  exit(2);
}
