// A one-line progress bar on stderr (redrawn in place on a terminal, a line per update elsewhere).
declare const Deno: { stderr: { writeSync(b: Uint8Array): number; isTerminal(): boolean } } | undefined;

const enc = new TextEncoder();
const tty = typeof Deno !== "undefined" && Deno.stderr.isTerminal();

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
  if (typeof Deno !== "undefined") Deno.stderr.writeSync(enc.encode(out));
  else console.error(line);
}
