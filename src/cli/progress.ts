// Progress on stderr, fitted to where it goes: on a terminal a bar redrawn in place; elsewhere (CI, a log
// file, a job runner) one line when a stage starts, at every quarter and at its end, with its rate; and
// nothing at all in quiet mode (--quiet, --json).
import { stderrIsTerminal, writeStderr } from "../platform.ts";

let mode: "bar" | "lines" | "quiet" = stderrIsTerminal() ? "bar" : "lines";
let current = "";
let quarter = -1;

export function quietProgress(): void {
  mode = "quiet";
}

/** Informational lines (the adapter, a cache hit), on stderr unless quiet. */
export function note(line: string): void {
  if (mode !== "quiet") writeStderr(`${line}\n`);
}

export function progressBar(label: string, done: number, total: number, extra = ""): void {
  if (mode === "quiet") return;
  const frac = total > 0 ? Math.min(1, done / total) : 1;
  const name = label.trim();
  if (mode === "lines") {
    const q = Math.floor(frac * 4);
    if (name === current && q === quarter) return;
    if (name !== current) quarter = -1;
    current = name;
    quarter = q;
    writeStderr(`${name}: ${Math.round(frac * 100)}% (${done}/${total})${extra ? ` ${extra}` : ""}\n`);
    return;
  }
  const width = 30;
  const filled = Math.round(frac * width);
  const line = `${label} [${"=".repeat(filled)}${" ".repeat(width - filled)}] ${done}/${total} ${extra}`;
  if (name !== current && current) writeStderr("\n");
  current = name;
  writeStderr(`\r${line}\x1b[K${done >= total ? "\n" : ""}`);
  if (done >= total) current = "";
}
