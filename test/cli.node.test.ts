// The command-line tools as a user meets them: a mistake (an unknown flag, a missing file, a corrupt one) is
// one line on stderr naming the command and the problem, exit code 2, no stack trace, and no Mesa noise.
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { tempDir } from "./support/host.ts";

const DENO = "node_modules/.bin/deno";

function cli(...argv: string[]): { code: number | null; stderr: string } {
  const env = { ...process.env };
  delete env.XDG_RUNTIME_DIR; // Mesa complains without it, unless the runtime hides that
  const r = spawnSync(DENO, ["run", "-A", "--no-check", "src/cli/run.ts", ...argv], {
    encoding: "utf8",
    env,
    timeout: 120_000,
  });
  return { code: r.status, stderr: r.stderr };
}

describe("command-line mistakes", () => {
  const garbage = join(tempDir("cli"), "data.tar.gz");
  writeFileSync(garbage, new Uint8Array(3000).map((_, i) => (i * 7919) & 255));
  const cases: [string, string[], RegExp][] = [
    ["unknown flag", ["detect", "--bogus"], /^detect: .*'--bogus'/],
    [
      "missing file",
      ["poison", "preview", "--attack", "badnets", "--data", "/nonexistent/cifar.tar.gz"],
      /^poison: .*nonexistent/,
    ],
    ["corrupt file", ["poison", "preview", "--attack", "badnets", "--data", garbage], /^poison: .*corrupt/],
    [
      "missing file, after the device is acquired",
      ["detect", "--data", "/nonexistent/cifar.tar.gz"],
      /^detect: .*nonexistent/,
    ],
    ["unknown command", ["nope"], /^usage: run.ts COMMAND/],
  ];
  for (const [what, argv, message] of cases) {
    it(`${what}: one line, exit 2`, () => {
      const { code, stderr } = cli(...argv);
      // Progress lines may come first ("adapter: ..."); the mistake is the one line that names the command.
      const lines = stderr.trim().split("\n").filter((l) => /^(usage|\w+):/.test(l) && !l.startsWith("adapter:"));
      expect(`${code} ${lines.length} ${lines[0]}`).toMatch(new RegExp(`^2 1 ${message.source.slice(1)}`));
      expect(stderr).not.toMatch(/\bat .*\.ts:\d+|XDG_RUNTIME_DIR/);
    });
  }
});
