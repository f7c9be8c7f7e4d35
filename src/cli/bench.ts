// npm run bench -- NAME [--json] [--sizes 256,512]: runs bench/NAME.ts, prints a table (or JSON rows).
// Every bench/NAME.ts but the harness is a benchmark exporting run(args): BenchReport.
import { readdirSync } from "node:fs";
import { printReport } from "../../bench/harness.ts";
import { exit } from "../platform.ts";

const BENCHES = readdirSync(new URL("../../bench/", import.meta.url)).filter((f) =>
  f.endsWith(".ts") && f !== "harness.ts"
).map((f) => f.slice(0, -3)).sort();

export async function runBench(argv: string[]): Promise<void> {
  const name = argv.find((a) => !a.startsWith("--"));
  const json = argv.includes("--json");
  const sizesArg = argv[argv.indexOf("--sizes") + 1];
  if (!name || !BENCHES.includes(name)) {
    console.error(`usage: npm run bench -- NAME [--json] [--sizes a,b,c]\nbenchmarks: ${BENCHES.join(", ")}`);
    exit(2);
    return;
  }
  const mod = await import(`../../bench/${name}.ts`);
  const log = json ? undefined : (s: string) => console.error(s); // progress on stderr keeps --json clean
  const report = await mod.run({ sizes: argv.includes("--sizes") ? sizesArg.split(",").map(Number) : undefined, log });
  printReport(`bench ${name}`, report, json);
}
