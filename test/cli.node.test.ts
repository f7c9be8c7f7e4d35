// The command-line tools as a user meets them. Every command explains itself (--help lists every field
// of its schema, and every field has a description); a mistake (an unknown flag, a bad value, a missing
// or corrupt file) is one line naming the command and the problem, exit code 2, no stack trace, no Mesa
// noise; --config round-trips; and a small detect run without a terminal prints at most 40 lines.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type CommandSpec, fieldsOf, parseCommand } from "../src/cli/command.ts";
import { cliSpecs, withHelp } from "../src/cli/docs.ts";
import { COMMANDS } from "../src/cli/run.ts";
import { command as detect, settingsOf } from "../src/cli/detect.ts";
import { keyOf } from "../src/detect/cache.ts";
import { poison } from "../src/attacks/index.ts";
import { DEFAULT_DATA, loadCifar10 } from "../src/data/cifar.ts";
import { seededIndices, subset } from "../src/data/dataset.ts";
import { loadData, WRITE_FORMATS } from "../src/data/formats.ts";
import { type FileDataset, folderOrder } from "../src/data/image-folder.ts";
import { serveCommand } from "../server/serve.ts";
import { serveEdgeCommand } from "../server/serve-edge.ts";
import { cli } from "./support/cli.ts";
import { tempDir } from "./support/host.ts";

const specs = async (): Promise<[CommandSpec, string[]][]> => [
  ...(await Promise.all(
    Object.entries(COMMANDS).map(async ([name, load]) => [(await load()).command, [name]] as [CommandSpec, string[]]),
  )),
  [serveCommand, []],
];

describe("every command explains itself", () => {
  it("every flag of every command has a description", async () => {
    const missing = (await specs()).flatMap(([spec]) =>
      fieldsOf(spec).filter((f) => !f.description).map((f) => `${spec.name} --${f.flag}`)
    );
    expect(missing).toEqual([]);
  });

  it("--help exits 0 and names every field of the command's schema", async () => {
    for (const [spec, argv] of await specs()) {
      const { code, stdout } = spec.name === "serve"
        ? cli(["--help"], "server/main.deno.ts")
        : cli([...argv, "--help"]);
      expect(`${spec.name} ${code}`).toBe(`${spec.name} 0`);
      const absent = fieldsOf(spec).filter((f) => !stdout.includes(`--${f.flag}`)).map((f) => f.flag);
      expect(`${spec.name}: ${absent}`).toBe(`${spec.name}: `);
      expect(stdout).toMatch(/examples:\n {2}npm run/);
    }
  });
});

describe("command-line mistakes", () => {
  const garbage = join(tempDir("cli"), "data.tar.gz");
  writeFileSync(garbage, new Uint8Array(3000).map((_, i) => (i * 7919) & 255));
  const cases: [string, string[], RegExp][] = [
    [
      "unknown flag, with the nearest one",
      ["detect", "--atack", "sig"],
      /^detect: unknown flag --atack \(did you mean --attack\?\)/,
    ],
    ["bad value, naming the flag", ["detect", "--k", "abc"], /^detect: --k expects an integer, got "abc"/],
    ["value outside the schema", ["detect", "--dm-alpha", "2"], /^detect: --dm-alpha: /],
    ["bad nested setting", ["detect", "--model-config", '{"widths": "x"}'], /^detect: --model-config \(model.widths\)/],
    ["unknown step", ["datamodels", "trian"], /^datamodels: unknown step "trian" \(did you mean train\?\)/],
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
    ["evaluate without a mode", ["evaluate"], /^evaluate: give --attacks \(the evaluation matrix\) or --checkpoint/],
    ["unknown detector", ["evaluate", "--attacks", "badnets", "--detectors", "oursx"], /^evaluate: --detectors/],
  ];
  for (const [what, argv, message] of cases) {
    it(`${what}: one line, exit 2`, () => {
      const { code, stderr } = cli(argv);
      // Progress lines may come first; the mistake is the one line that starts with the command's name.
      const lines = stderr.trim().split("\n").filter((l) => l.startsWith(`${argv[0]}:`) || l.startsWith("usage:"));
      expect(`${code} ${lines.length} ${lines[0]}`).toMatch(new RegExp(`^2 1 ${message.source.slice(1)}`));
      expect(stderr).not.toMatch(/\bat .*\.ts:\d+|XDG_RUNTIME_DIR/);
    });
  }
  it("the coordinator's flags too", () => {
    const { code, stderr } = cli(["--prot", "9000"], "server/main.deno.ts");
    expect(`${code} ${stderr.trim()}`).toBe("2 serve: unknown flag --prot (did you mean --port?); see --help");
  });
});

describe("the README's command reference", () => {
  it("is every command's --help (npm run docs rewrites it)", async () => {
    const readme = readFileSync("README.md", "utf8");
    const specs = [...(await cliSpecs()), serveCommand, serveEdgeCommand];
    const formatted = (text: string) => text.replace(/\n{3,}/g, "\n\n");
    expect(formatted(withHelp(readme, specs))).toBe(formatted(readme));
  });
});

describe("--config", () => {
  it("the written settings, fed back, give the same flags and the same cache keys", async () => {
    const first = await parseCommand(detect, [
      "--attack",
      "sig",
      "--epochs",
      "2",
      "--rate",
      "0.1",
      "--model-config",
      '{"widths": [8, 16, 32]}',
    ]);
    const file = join(tempDir("cli-config"), "config.json");
    writeFileSync(file, JSON.stringify(first.flags));
    const again = await parseCommand(detect, ["--config", file]);
    expect(again.flags).toEqual(first.flags);
    expect(keyOf(settingsOf(again.flags))).toBe(keyOf(settingsOf(first.flags)));
    expect(settingsOf(again.flags).recipe.epochs).toBe(2);
    // flags override the file
    const over = await parseCommand(detect, ["--config", file, "--epochs", "3"]);
    expect(settingsOf(over.flags).recipe.epochs).toBe(3);
    expect(settingsOf(over.flags).attackConfig).toEqual({ rate: 0.1 });
    expect((await parseCommand(detect, ["--config", file, "--print-config"])).exitWith).toBe(
      JSON.stringify(first.flags, null, 2),
    );
  });
});

/** A detect run small enough for a test: 300 examples, one model, one epoch. */
const TINY = "--train 300 --test-size 300 --models 1 --epochs 1 --k 32 --restarts 3".split(" ");

describe("a small detect run without a terminal", () => {
  it("prints at most 40 lines, and its config.json repeats it", async () => {
    const dir = tempDir("cli-detect");
    const argv = ["detect", ...TINY];
    const { code, stdout, stderr } = cli([...argv, "--cache", join(dir, "cache"), "--out", join(dir, "report")]);
    const lines = `${stdout}${stderr}`.trim().split("\n");
    console.log(`[detect, no terminal] ${lines.length} lines:\n${lines.join("\n")}`);
    expect(code).toBe(0);
    expect(lines.length).toBeLessThanOrEqual(40);
    expect(stdout).toMatch(/report: .*report\.html/);
    const written = JSON.parse(readFileSync(join(dir, "report", "config.json"), "utf8"));
    const again = await parseCommand(detect, ["--config", join(dir, "report", "config.json")]);
    expect(again.flags).toEqual(written);
    const given = await parseCommand(detect, [
      ...argv.slice(1),
      "--cache",
      join(dir, "cache"),
      "--out",
      join(dir, "report"),
    ]);
    expect(keyOf(settingsOf(again.flags))).toBe(keyOf(settingsOf(given.flags)));
  }, 600_000);
});

describe("the evaluation matrix", () => {
  it(
    "a 1-seed run of two attacks writes results.csv, results.html and per-cell reports; a rerun reads them back",
    () => {
      const dir = tempDir("cli-evaluate");
      const argv = [
        "evaluate",
        "--attacks",
        "none,badnets",
        "--detectors",
        "ours,ac,spectre,abl",
        "--seeds",
        "1",
        ...TINY,
        "--out",
        dir,
        "--json",
      ];
      const t0 = performance.now();
      const first = cli(argv);
      const firstMs = performance.now() - t0;
      expect(first.code).toBe(0);
      const { rows } = JSON.parse(first.stdout);
      expect(rows.map((r: { attack: string; detector: string }) => `${r.attack}/${r.detector}`)).toEqual([
        "none/ours",
        "none/ac",
        "none/spectre",
        "none/abl",
        "badnets/ours",
        "badnets/ac",
        "badnets/spectre",
        "badnets/abl",
      ]);
      expect(Object.keys(rows[0]).sort()).toEqual([
        "asr_after",
        "asr_before",
        "asr_floor",
        "attack",
        "auroc",
        "clean_acc_after",
        "clean_acc_before",
        "detector",
        "flagged",
        "seed",
        "tpr_at_5fpr",
      ]);
      expect(rows[0].auroc).toBe(null); // clean data: no ground truth
      expect(rows[4].auroc).toBeGreaterThan(0);
      expect(rows[4].asr_floor).not.toBe(null);
      const csv = readFileSync(join(dir, "results.csv"), "utf8").trim().split("\n");
      expect(csv.length).toBe(1 + 8);
      expect(readFileSync(join(dir, "results.html"), "utf8")).toMatch(/<td>badnets<\/td><td>ours<\/td>/);
      expect(readFileSync(join(dir, "cells", "badnets-seed0", "detection_info_ours.csv"), "utf8")).toMatch(
        /^TN,FP,FN,TP,TPR,FPR,target\n\d+,\d+,\d+,\d+,/,
      );
      const t1 = performance.now();
      const again = cli(argv);
      const againMs = performance.now() - t1;
      console.log(`[evaluate] first run ${(firstMs / 1000).toFixed(1)} s, rerun ${(againMs / 1000).toFixed(1)} s`);
      expect(again.code).toBe(0);
      expect(JSON.parse(again.stdout)).toEqual({ rows });
      expect(againMs).toBeLessThan(firstMs / 3); // the stored cells, not two more detect runs
    },
    900_000,
  );
});

describe("poison apply", () => {
  it(
    "writes every format so that it reads back as the poisoned set, with the manifest in read-back order",
    async () => {
      const dir = tempDir("apply");
      const seed = 7;
      const full = await loadCifar10(DEFAULT_DATA, { split: "train" });
      const picked = subset(full, seededIndices(full.n, 60, seed));
      const want = await poison("badnets", picked, { rate: 0.1, seed } as never);
      for (const format of WRITE_FORMATS) {
        const out = join(dir, format);
        const argv =
          `poison apply --attack badnets --rate 0.1 --train 60 --test-size 20 --seed ${seed} --format ${format}`;
        const r = cli([...argv.split(" "), "--out", out]);
        expect(`${format}: ${r.code} ${r.stderr}`).toBe(`${format}: 0 `);
        const back = await loadData(format === "npz" ? join(out, "data.npz") : out);
        const order = folderOrder(want.poisoned); // every format is written class by class
        const expected = subset(want.poisoned, order);
        expect(Buffer.from(back.train.images).equals(Buffer.from(expected.images))).toBe(true);
        expect(Array.from(back.train.labels)).toEqual(Array.from(expected.labels));
        expect(back.test?.n).toBe(20);
        const manifest = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8"));
        const at = new Map(Array.from(order, (src, k) => [src, k]));
        expect(manifest.indices).toEqual(want.manifest.indices.map((i) => at.get(i)).sort((a, b) => a! - b!));
        if (format === "imagefolder") {
          expect(manifest.paths).toEqual(manifest.indices.map((k: number) => (back.train as FileDataset).paths[k]));
        }
      }
    },
    300_000,
  );
});
