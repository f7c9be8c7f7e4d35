// Scanning a user's dataset end to end, as a user does it, on the CPU adapter: `poison apply` writes a
// BadNets copy of 2,000 CIFAR-10 images (an ImageFolder of PNGs, then an .npz), `detect --data` scans it
// with the manifest as ground truth, and the exports hold one row per example. The .npz holds the same
// examples in the same order, so it reads to the same bytes and its run finds every stage in the cache.
// Fashion-MNIST's official IDX files (grey 28x28) run through a network written as layers, BadNets at 10%
// (at 5% a 4-epoch model sometimes barely learns the backdoor from 1,500 images: seeds 975, 696, 648 gave
// AUROC 0.94, 0.84, 0.81 and ASR 87%, 20%, 49%).
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseNpy } from "../../src/data/npy.ts";
import { cli } from "../support/cli.ts";
import { tempDir } from "../support/host.ts";
import { testSeed } from "../support/rng.ts";

const FASHION = "/usr/share/datasets/fashion-mnist";
const TIMEOUT = 900_000;

function run(argv: string[]): Record<string, unknown> {
  const t0 = Date.now();
  const r = cli([...argv, "--json"], "src/cli/run.ts", TIMEOUT);
  if (r.code !== 0) throw new Error(`${argv.join(" ")}: exit ${r.code}\n${r.stderr.slice(-2000)}`);
  const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
  console.log(`[${argv.slice(0, 2).join(" ")}] ${((Date.now() - t0) / 1000).toFixed(0)} s: ${JSON.stringify(out)}`);
  return out;
}

const rows = (file: string) => {
  const text = readFileSync(file, "utf8").trim();
  return text ? text.split("\n") : [];
};

/**
 * The verdict a user gets. A backdoor the model learned (ASR >= 50%) is ranked (AUROC) and its target class (0)
 * has the largest R_c. Whether R_c reaches the threshold is the rule's call, which misses some learned
 * backdoors (README, "When nothing stands out"; poison apply seed 901 gave 4.53 against the other classes'
 * 1.55 at most). Either way nothing may get worse: when it stands out, examples are flagged, the ASR falls
 * and clean accuracy stays within 3 points (1,000 test images, a 2,000-image model: retraining alone moves
 * it by about that much); when it does not, nothing is flagged and the model is left alone.
 */
function expectVerdict(r: Record<string, unknown>, minAuroc = 0.9): void {
  if ((r.asr_before as number) >= 0.5) {
    expect(r.auroc as number).toBeGreaterThanOrEqual(minAuroc);
    expect(r.standout_class).toBe(0); // CIFAR seeds 334, 198, 835: R 6.7, 11.2, 14.8; Fashion >= 6.56
  }
  if (r.stands_out) {
    expect(r.flagged as number).toBeGreaterThan(0);
    expect(r.asr_after as number).toBeLessThan(r.asr_before as number);
    expect(r.clean_acc_after as number).toBeGreaterThan((r.clean_acc_before as number) - 0.03);
  } else {
    expect([r.flagged, r.warnings, r.asr_after, r.clean_acc_after]).toEqual([0, [], r.asr_before, r.clean_acc_before]);
  }
}

describe("detect on a user's dataset", () => {
  const seed = testSeed("user data e2e") % 1000;
  const dir = tempDir("user-data");
  let folderRun: { r: Record<string, unknown>; csv: string[] } | undefined;
  const copy = (format: string) =>
    `poison apply --attack badnets --train 2000 --test-size 1000 --seed ${seed} --format ${format}`.split(" ")
      .concat(["--out", join(dir, format)]);
  /** detect on `data`, the shared cache, the report in `out`. */
  const detect = (data: string, out: string, ...extra: string[]) =>
    run(["detect", "--data", data, "--seed", String(seed), "--cache", join(dir, "cache"), "--out", out, ...extra]);

  it(`finds BadNets in an ImageFolder of PNGs written by poison apply (seed ${seed})`, { timeout: TIMEOUT }, () => {
    const made = run(copy("imagefolder"));
    expect(made).toMatchObject({ n: 2000, test: 1000, poisoned: 100 });
    const data = join(dir, "imagefolder");
    const out = join(dir, "report-imagefolder");
    const clean = join(dir, "clean");
    const r = detect(data, out, "--manifest", join(data, "manifest.json"), "--export-clean", clean);
    folderRun = { r, csv: rows(join(out, "scores.csv")) };
    expectVerdict(r);
    const csv = rows(join(out, "scores.csv"));
    expect(csv[0]).toBe("index,path,label,score,rank,flagged,poisoned");
    expect(csv.length).toBe(2001);
    const cells = csv.slice(1).map((l) => l.split(","));
    expect(cells.map((c) => Number(c[0]))).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    const manifest = JSON.parse(readFileSync(join(data, "manifest.json"), "utf8"));
    expect(cells.filter((c) => c[6] === "1").map((c) => c[1])).toEqual(manifest.paths);
    // Ranks follow the scores. The auto budget flags the top scores of the class that stands out only, so
    // the flagged rows are all of one class and its highest ranks (seed 381 ranked a horse among them);
    // flagged.txt lists their files.
    const byRank = [...cells].sort((a, b) => Number(a[4]) - Number(b[4]));
    byRank.slice(1).forEach((c, i) => expect(Number(c[3])).toBeLessThanOrEqual(Number(byRank[i][3])));
    const flaggedRows = cells.filter((c) => c[5] === "1");
    const flagged = rows(join(out, "flagged.txt"));
    expect(flagged.length).toBe(r.flagged);
    expect(new Set(flagged)).toEqual(new Set(flaggedRows.map((c) => c[1])));
    const ofClass = byRank.filter((c) => c[2] === flaggedRows[0]?.[2]);
    expect(new Set(ofClass.slice(0, flaggedRows.length))).toEqual(new Set(flaggedRows));
    expect(flagged.every((p) => existsSync(join(data, p)))).toBe(true);
    const npy = parseNpy(new Uint8Array(readFileSync(join(out, "scores.npy"))), "scores.npy");
    expect(npy.shape).toEqual([2000]);
    expect(Number((npy.data as Float64Array)[7])).toBe(Number(cells[7][3]));
    const [head, info] = rows(join(out, "detection_info.csv"));
    expect(head).toBe("TN,FP,FN,TP,TPR,FPR,target");
    const [tn, fp, fn, tp] = info.split(",").map(Number);
    expect([tn + fp + fn + tp, tp + fp, tp + fn]).toEqual([2000, flagged.length, 100]);
    // The clean copy: every training file but the flagged ones, byte for byte, and the test split.
    const files = (root: string) =>
      readdirSync(root, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    expect(files(join(clean, "train")).length).toBe(2000 - flagged.length);
    expect(files(join(clean, "test")).length).toBe(1000);
    const kept = csv.slice(1).map((l) => l.split(",")).find((c) => c[5] === "0")![1];
    expect(readFileSync(join(clean, kept)).equals(readFileSync(join(data, kept)))).toBe(true);
  });

  it(`finds BadNets in an .npz written by poison apply (seed ${seed})`, { timeout: TIMEOUT }, () => {
    run(copy("npz"));
    const out = join(dir, "report-npz");
    const r = detect(join(dir, "npz", "data.npz"), out, "--manifest", join(dir, "npz", "manifest.json"));
    expectVerdict(r);
    const csv = rows(join(out, "scores.csv"));
    expect(csv.length).toBe(2001);
    expect(csv[1]).toMatch(/^0,,/); // no files: indices only
    // The same examples as the folder, so the same scores (the cache keys hash the decoded data).
    expect([r.auroc, r.flagged]).toEqual([folderRun!.r.auroc, folderRun!.r.flagged]);
    const noPath = (l: string) => l.split(",").filter((_, k) => k !== 1).join(",");
    expect(csv.map(noPath)).toEqual(folderRun!.csv.map(noPath));
  });

  it("scans Fashion-MNIST's official IDX files (grey 28x28) with a network described as layers", {
    timeout: TIMEOUT,
  }, () => {
    const net = join(dir, "net.json");
    const layers = [16, 32, 64].flatMap((out) => [
      { type: "conv", out },
      { type: "batchnorm" },
      { type: "relu" },
      { type: "maxpool" },
    ]);
    writeFileSync(
      net,
      JSON.stringify({ kind: "layers", layers: [...layers, { type: "globalpool" }, { type: "dense", out: 10 }] }),
    );
    const out = join(dir, "report-fashion");
    const r = detect(
      FASHION,
      out,
      ...`--train 1500 --test-size 1000 --attack badnets --rate 0.1 --model-config ${net}`.split(" "),
    );
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"));
    expect(summary.config.model).toMatchObject({ kind: "layers", input: [1, 28, 28], classes: 10 });
    expect(rows(join(out, "scores.csv")).length).toBe(1501);
    // AUROC at seeds 975, 696, 648 (10%, exact-gain search): 0.982, 0.975, 0.986; with the look-ahead bonus at seeds
    // 334, 198, 835, 574: 0.953, 0.982, 0.993, 0.881 (574: 0.915 with the exact gain; flagged 114 at precision 1).
    expectVerdict(r, 0.85);
  });
});
