// Shared benchmark plumbing: median timing and table/JSON output. Benchmarks are not tests: they time
// our code against a peer in the same process on the same adapter.
export interface BenchReport {
  adapter: string;
  rows: Record<string, number | string>[];
  notes?: string[];
  /** More top-level fields of the JSON output. */
  extra?: Record<string, unknown>;
}

import { spawnSync } from "node:child_process";
import process from "node:process";
import { median } from "../src/math.ts";
import { layersOf, ModelConfig } from "../src/nn/models.ts";
export { median };

/**
 * Median milliseconds per call of `runBatch(reps)`, which must do `reps` calls and wait for a completed
 * readback. The batch size grows until one sample takes >= minMs, amortising the ~11 ms readback.
 */
export async function timeMs(
  runBatch: (reps: number) => Promise<void>,
  opts: { samples?: number; minMs?: number } = {},
): Promise<number> {
  const samples = opts.samples ?? 5;
  const minMs = opts.minMs ?? 250;
  await runBatch(1); // warm-up: compile and first-touch
  let reps = 1;
  for (;;) {
    const t0 = performance.now();
    await runBatch(reps);
    const ms = performance.now() - t0;
    if (ms >= minMs || reps >= 256) break;
    reps = Math.min(256, Math.ceil((reps * minMs * 1.2) / Math.max(ms, 1)));
  }
  const times: number[] = [];
  for (let s = 0; s < samples; s++) {
    const t0 = performance.now();
    await runBatch(reps);
    times.push((performance.now() - t0) / reps);
  }
  return median(times);
}

export function printReport(title: string, r: BenchReport, json: boolean): void {
  if (json) {
    console.log(JSON.stringify({ adapter: r.adapter, rows: r.rows, ...r.extra }));
    return;
  }
  console.log(`${title} on ${r.adapter}`);
  const cols = [...new Set(r.rows.flatMap((x) => Object.keys(x)))];
  const fmt = (
    v: unknown,
  ) => (typeof v === "number" ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2)) : String(v ?? ""));
  const widths = cols.map((c) => Math.max(c.length, ...r.rows.map((x) => fmt(x[c]).length)));
  const line = (cells: string[]) => "| " + cells.map((c, i) => c.padStart(widths[i])).join(" | ") + " |";
  console.log(line(cols));
  console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
  for (const row of r.rows) console.log(line(cols.map((c) => fmt(row[c]))));
  for (const n of r.notes ?? []) console.log(n);
}

/** What bench/peers/torch_peer.py measured: img_per_s (train) or ex_per_s (featurize). */
export interface TorchPeerResult {
  torch: string;
  device: string;
  threads: number;
  params: number;
  img_per_s?: number;
  ex_per_s?: number;
}

let torchPython: { python: string } | { missing: string } | undefined;

/**
 * The python3 that imports torch (TORCH_PYTHON, then python3 on the PATH, then Debian's); as root on Debian it
 * installs python3-torch first. Else one line saying why there is no PyTorch row.
 */
function findTorch(log?: (s: string) => void): { python: string } | { missing: string } {
  if (torchPython) return torchPython;
  const candidates = [process.env.TORCH_PYTHON, "python3", "/usr/bin/python3"].filter((p): p is string => !!p);
  const found = () => candidates.find((p) => spawnSync(p, ["-c", "import torch"]).status === 0);
  let python = found();
  if (!python && process.getuid?.() === 0 && spawnSync("sh", ["-c", "command -v apt-get"]).status === 0) {
    log?.("pytorch peer: installing Debian's python3-torch (about 150 MB)...");
    spawnSync("sh", ["-c", "apt-get install -y -qq --no-install-recommends python3-torch >/dev/null 2>&1"]);
    python = found();
  }
  torchPython = python ? { python } : {
    missing: `no pytorch peer row: none of ${candidates.join(", ")} imports torch (apt-get install python3-torch)`,
  };
  return torchPython;
}

/** The networks the benches take by name (`--model`). */
export const BENCH_MODELS = {
  "small-cnn": { kind: "small-cnn", input: [3, 32, 32], classes: 10, widths: [32, 64, 128] },
  resnet9: { kind: "resnet9", input: [3, 32, 32], classes: 10 },
  // The 25,578-parameter CNN MadryLab's trak examples featurise (conv 3-16 and 16-32 with biases, dense 2048-10).
  "trak-cnn": {
    kind: "layers",
    input: [3, 32, 32],
    classes: 10,
    layers: [
      ...[16, 32].flatMap((out) => [{ type: "conv", out, bias: true }, { type: "relu" }, { type: "maxpool" }] as const),
      { type: "flatten" },
      { type: "dense", out: 10 },
    ],
  },
} satisfies Record<string, ModelConfig>;

/**
 * Runs the PyTorch peer on `model` (our layer list, so the network is the very same) in a child process.
 * Returns its measurement, or a string saying why there is none.
 */
export function torchPeer(
  task: "train" | "featurize",
  config: ModelConfig,
  opts: { batch: number; k?: number; device?: string; log?: (s: string) => void },
): TorchPeerResult | string {
  const torch = findTorch(opts.log);
  if ("missing" in torch) return torch.missing;
  const device = opts.device ?? process.env.TORCH_DEVICE ?? "cpu";
  const cfg = ModelConfig.parse(config);
  if (cfg.kind === "mlp") throw new Error("torchPeer: no mlp");
  const model = { input: cfg.input, classes: cfg.classes, layers: cfg.kind === "layers" ? cfg.layers : layersOf(cfg) };
  const args = [new URL("./peers/torch_peer.py", import.meta.url).pathname, task, "--model", JSON.stringify(model)];
  args.push("--batch", String(opts.batch), "--device", device);
  if (opts.k) args.push("--k", String(opts.k));
  const r = spawnSync(torch.python, args, { encoding: "utf8", maxBuffer: 1 << 20 });
  if (r.status !== 0) return `no pytorch peer row: torch_peer.py failed: ${r.stderr.trim().split("\n").pop()}`;
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as TorchPeerResult;
}
