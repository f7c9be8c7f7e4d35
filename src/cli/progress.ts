// A one-line progress bar on stderr (redrawn in place on a terminal, a line per update elsewhere).
declare const Deno: { stderr: { writeSync(b: Uint8Array): number; isTerminal(): boolean } } | undefined;

const enc = new TextEncoder();
const tty = typeof Deno !== "undefined" && Deno.stderr.isTerminal();

export function progressBar(label: string, done: number, total: number, extra = ""): void {
  const width = 30;
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const filled = Math.round(frac * width);
  const line = `${label} [${"=".repeat(filled)}${" ".repeat(width - filled)}] ${done}/${total} ${extra}`;
  const out = tty ? `\r${line}\x1b[K${done >= total ? "\n" : ""}` : `${line}\n`;
  if (typeof Deno !== "undefined") Deno.stderr.writeSync(enc.encode(out));
  else console.error(line);
}
