// The report's exports in the formats the field uses, beside summary.json and report.html:
//   scores.csv          index,path,label,score,rank,flagged (+ poisoned with ground truth), one row per scanned example
//   scores.npy          float64 score by index in the dataset's training split (NaN: not scanned)
//   flagged.txt         the flagged examples' paths (file-based data) or indices, highest score first
//   detection_info.csv  BackdoorBench's layout (TN, FP, FN, TP, TPR, FPR, target), with ground truth only
import { encodeNpy } from "../data/npy.ts";
import type { DetectResult } from "./summary.ts";

/** RFC 4180: quote a field holding a comma, quote or line break. */
const csvField = (v: string) => (/[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v);

export function exportFiles(r: DetectResult): [string, Uint8Array][] {
  const { summary: s, train, scores } = r;
  const n = scores.length;
  const origin = r.data?.origin ?? Uint32Array.from({ length: n }, (_, i) => i);
  const paths = r.data?.paths ?? null;
  const flagged = new Set(s.flagged);
  const rank = new Uint32Array(n);
  Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b).forEach((
    p,
    k,
  ) => (rank[p] = k + 1));
  const truth = r.poisonedSet;
  const byIndex = Array.from({ length: n }, (_, p) => p).sort((a, b) => origin[a] - origin[b]);
  const header = ["index", "path", "label", "score", "rank", "flagged", ...(truth ? ["poisoned"] : [])];
  const rows = byIndex.map((p) =>
    [
      String(origin[p]),
      csvField(paths?.[p] ?? ""),
      csvField(train.classes[train.labels[p]] ?? String(train.labels[p])),
      String(scores[p]),
      String(rank[p]),
      flagged.has(p) ? "1" : "0",
      ...(truth ? [truth.has(p) ? "1" : "0"] : []),
    ].join(",")
  );
  const size = r.data?.source.train.n ?? n;
  const byDatasetIndex = new Float64Array(size).fill(NaN);
  for (let p = 0; p < n; p++) byDatasetIndex[origin[p]] = scores[p];
  const enc = new TextEncoder();
  const files: [string, Uint8Array][] = [
    ["scores.csv", enc.encode([header.join(","), ...rows].join("\n") + "\n")],
    ["scores.npy", encodeNpy(byDatasetIndex, [size])],
    [
      "flagged.txt",
      enc.encode(s.flagged.map((p) => paths?.[p] ?? String(origin[p])).join("\n") + (s.flagged.length ? "\n" : "")),
    ],
  ];
  if (truth) {
    let tp = 0;
    for (const p of s.flagged) if (truth.has(p)) tp++;
    const fp = s.flagged.length - tp, fn = truth.size - tp, tn = n - tp - fp - fn;
    files.push(["detection_info.csv", enc.encode(detectionInfoCsv({ tn, fp, fn, tp }, s.target))]);
  }
  return files;
}

/** BackdoorBench's detection_info.csv: the confusion counts at the budget, TPR, FPR and the target class. */
export function detectionInfoCsv(
  c: { tn: number | null; fp: number | null; fn: number | null; tp: number | null },
  target: number | null,
): string {
  const [tn, fp, fn, tp] = [c.tn ?? 0, c.fp ?? 0, c.fn ?? 0, c.tp ?? 0];
  const ratio = (a: number, b: number) => (b > 0 ? String(a / b) : "");
  return `TN,FP,FN,TP,TPR,FPR,target\n${tn},${fp},${fn},${tp},${ratio(tp, tp + fn)},${ratio(fp, fp + tn)},${
    target ?? ""
  }\n`;
}
