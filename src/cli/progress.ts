// A one-line progress bar on stderr (redrawn in place on a terminal, a line per update elsewhere).
import { stderrIsTerminal, writeStderr } from "../platform.ts";

const tty = stderrIsTerminal();

let lastLine = 0;

export function progressBar(label: string, done: number, total: number, extra = ""): void {
  // Off a terminal (CI logs), print at most one line every 5 s per bar, plus the final one.
  const now = Date.now();
  if (!tty && done < total && now - lastLine < 5000) return;
  lastLine = now;
  const width = 30;
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const filled = Math.round(frac * width);
  const line = `${label} [${"=".repeat(filled)}${" ".repeat(width - filled)}] ${done}/${total} ${extra}`;
  const out = tty ? `\r${line}\x1b[K${done >= total ? "\n" : ""}` : `${line}\n`;
  writeStderr(out);
}
