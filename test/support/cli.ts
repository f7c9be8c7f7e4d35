// The command-line tools run as a user runs them: Deno, src/cli/run.ts (or another entry), from Node tests.
import { spawnSync } from "node:child_process";

const DENO = "node_modules/.bin/deno";

export function cli(
  argv: string[],
  entry = "src/cli/run.ts",
  timeoutMs = 300_000,
): { code: number | null; stdout: string; stderr: string } {
  const env = { ...process.env };
  delete env.XDG_RUNTIME_DIR; // Mesa complains without it, unless the runtime hides that
  delete env.VK_ICD_FILENAMES; // vitest points Dawn at SwiftShader; Deno is faster on lavapipe
  const r = spawnSync(DENO, ["run", "-A", "--no-check", entry, ...argv], { encoding: "utf8", env, timeout: timeoutMs });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
