// summary.json and a self-contained report.html (inline SVG charts and PNG data URIs; no network).
import { chwToRgb, encodePng } from "../data/png-folder.ts";
import { joinPath, makeDir, writeFilesAtomic } from "../data/io.ts";
import type { DetectResult, Summary } from "./summary.ts";
import { REMOVAL_FRACTION, rocCurve, topK } from "./metrics.ts";
import { exportFiles } from "./exports.ts";

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
const pct = (
  v: number | null | undefined,
) => (v === null || v === undefined || Number.isNaN(v) ? "—" : `${(100 * v).toFixed(1)}%`);
const num = (v: number | null | undefined) => (v === null || v === undefined || Number.isNaN(v) ? "—" : v.toFixed(3));

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

const COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"];

function rocSvg(curves: { name: string; scores: ArrayLike<number> }[], truth: boolean[]): string {
  const S = 320, pad = 36;
  const x = (f: number) => pad + f * (S - 2 * pad);
  const y = (t: number) => S - pad - t * (S - 2 * pad);
  const lines = curves.map((c, i) => {
    const pts = rocCurve(c.scores, truth).map((p) => `${x(p.fpr).toFixed(1)},${y(p.tpr).toFixed(1)}`).join(" ");
    return `<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="2" points="${pts}"/>` +
      `<text x="${pad + 150}" y="${S - pad - 12 - 14 * (curves.length - 1 - i)}" fill="${
        COLORS[i % COLORS.length]
      }" font-size="11">${esc(c.name)}</text>`;
  }).join("");
  return `<svg width="${S}" height="${S}" viewBox="0 0 ${S} ${S}" role="img" aria-label="ROC curves">
<rect x="${pad}" y="${pad}" width="${S - 2 * pad}" height="${S - 2 * pad}" fill="#fff" stroke="#999"/>
<line x1="${x(0)}" y1="${y(0)}" x2="${x(1)}" y2="${y(1)}" stroke="#ccc" stroke-dasharray="4"/>
${lines}
<text x="${S / 2}" y="${S - 6}" text-anchor="middle" font-size="11">false positive rate</text>
<text x="12" y="${S / 2}" transform="rotate(-90 12 ${
    S / 2
  })" text-anchor="middle" font-size="11">true positive rate</text>
</svg>`;
}

function histogramSvg(scores: ArrayLike<number>, truth: boolean[] | null, bins = 40): string {
  const W = 520, H = 220, pad = 30;
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < scores.length; i++) {
    lo = Math.min(lo, scores[i]);
    hi = Math.max(hi, scores[i]);
  }
  const width = (hi - lo) / bins || 1;
  const clean = new Array(bins).fill(0), bad = new Array(bins).fill(0);
  for (let i = 0; i < scores.length; i++) {
    const b = Math.min(bins - 1, Math.floor((scores[i] - lo) / width));
    if (truth?.[i]) bad[b]++;
    else clean[b]++;
  }
  // Square-root counts so a handful of poisoned examples stays visible beside thousands of clean ones.
  const top = Math.sqrt(Math.max(...clean.map((c, b) => c + bad[b]), 1));
  const bw = (W - 2 * pad) / bins;
  const bar = (b: number, from: number, count: number, color: string) => {
    const y0 = H - pad - (Math.sqrt(from) / top) * (H - 2 * pad);
    const y1 = H - pad - (Math.sqrt(from + count) / top) * (H - 2 * pad);
    return count
      ? `<rect x="${(pad + b * bw).toFixed(1)}" y="${y1.toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${
        (y0 - y1).toFixed(1)
      }" fill="${color}"/>`
      : "";
  };
  const rects = clean.map((c, b) => bar(b, 0, c, "#1f77b4") + bar(b, c, bad[b], "#d62728")).join("");
  return `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="score histogram">
${rects}<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="#999"/>
<text x="${pad}" y="${H - 8}" font-size="11">${lo.toPrecision(3)}</text><text x="${W - pad}" y="${
    H - 8
  }" font-size="11" text-anchor="end">${hi.toPrecision(3)}</text>
<text x="${W / 2}" y="${H - 8}" font-size="11" text-anchor="middle">score (bar height: √count)</text>
${
    truth
      ? `<text x="${W - pad}" y="16" font-size="11" text-anchor="end">` +
        `<tspan fill="#1f77b4">■ clean</tspan> <tspan fill="#d62728">■ poisoned</tspan></text>`
      : ""
  }
</svg>`;
}

export function renderReport(r: DetectResult): string {
  const s = r.summary;
  const ds = r.train;
  const truth = r.poisonedSet ? Array.from({ length: ds.n }, (_, i) => r.poisonedSet!.has(i)) : null;
  const top = topK(r.scores, Math.min(48, ds.n));
  const size = ds.h * ds.w * ds.c;
  const cells = top.map((i, rank) => {
    const png = encodePng(chwToRgb(ds.images.subarray(i * size, (i + 1) * size), ds.c, ds.h, ds.w), ds.w, ds.h);
    const mark = truth ? (truth[i] ? ' class="bad"' : ' class="ok"') : "";
    const name = r.data?.paths?.[i] ?? String(r.data?.origin[i] ?? i);
    return `<figure${mark}><img src="data:image/png;base64,${base64(png)}" width="64" height="64" alt="${
      esc(name)
    }"><figcaption>#${rank + 1} · ${esc(name)}<br>${esc(ds.classes[ds.labels[i]] ?? String(ds.labels[i]))}${
      truth ? (truth[i] ? " · poisoned" : " · clean") : ""
    }</figcaption></figure>`;
  }).join("");
  const detectors = [
    {
      name: "max-sum submatrix (ours)",
      m: s.auroc === null ? null : {
        auroc: s.auroc,
        precision_at_budget: s.precision_at_budget,
        recall_at_budget: s.recall_at_budget,
        tpr_at_5fpr: s.tpr_at_5fpr,
        flagged: s.flagged.length,
      },
      after: { clean_acc: s.clean_acc_after, asr: s.asr_after },
    },
    { name: "spectral score", m: s.spectral_score, after: undefined },
    ...Object.entries(s.baselines).map(([name, b]) => ({ name, m: b, after: b.after })),
  ];
  const rows = detectors.map((d) =>
    `<tr><td>${esc(d.name)}</td><td>${num(d.m?.auroc)}</td><td>${pct(d.m?.precision_at_budget)}</td><td>${
      pct(d.m?.recall_at_budget)
    }</td><td>${pct(d.m?.tpr_at_5fpr)}</td><td>${d.m?.flagged ?? "—"}</td>` +
    `<td>${pct(s.clean_acc_before)}</td><td>${pct(s.asr_before)}</td><td>${pct(d.after?.clean_acc)}</td><td>${
      pct(d.after?.asr)
    }</td></tr>`
  ).join("");
  const curves = [
    { name: "ours", scores: r.scores },
    { name: "spectral score", scores: r.spectral },
    ...Object.entries(r.baselineScores).map(([name, scores]) => ({ name, scores })),
  ];
  const cfg = s.config;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Backdoor detection report</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
th{background:#f4f4f4}.charts{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
.grid{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;width:84px;text-align:center;font-size:10px;padding:2px;border:2px solid transparent}
figcaption{overflow-wrap:anywhere}
figure.bad{border-color:#d62728}figure.ok{border-color:#1f77b4}img{image-rendering:pixelated}
code{background:#f4f4f4;padding:1px 4px}
</style></head><body>
<h1>Backdoor detection report</h1>
<p>${s.n} training examples of <code>${esc(cfg.data)}</code>${
    cfg.attack && cfg.attack !== "none"
      ? `, attack <b>${esc(cfg.attack)}</b> planted (${esc(JSON.stringify(cfg.attackConfig))}), ${
        s.poisoned?.length ?? 0
      } poisoned`
      : truth
      ? `, ${s.poisoned?.length ?? 0} poisoned per <code>${esc(cfg.manifest ?? "the manifest")}</code>`
      : " as they are (no ground truth: a ranking only)"
  }.${s.notes.map((t) => ` ${esc(t)}`).join("")}
Model ${esc(cfg.model.kind)}, ${
    cfg.attribution === "datamodels"
      ? `datamodels from ${cfg.dmModels} subset models (alpha ${cfg.dmAlpha}, ${cfg.dmPenalty})`
      : `ensemble of ${cfg.models}, TRAK k = ${cfg.k} (${cfg.projection})`
  }, ${cfg.restarts} restarts per size${
    s.lds !== null && s.lds !== undefined ? `; LDS ${s.lds.toFixed(3)} on ${cfg.ldsModels} held-out subset models` : ""
  }.
${s.flagged.length} examples flagged and removed; ${s.seconds.toFixed(0)} s end to end on <code>${
    esc(s.adapter)
  }</code>.</p>
<h2>Decision</h2><p>${decision(s)}</p>${
    s.warnings.map((w) => `<p style="color:#b00"><b>Warning:</b> ${esc(w)}.</p>`).join("")
  }
${
    truth
      ? `<h2>Detectors</h2>
<table><tr><th>detector</th><th>AUROC</th><th>precision@budget</th><th>recall@budget</th><th>TPR@5%FPR</th>
<th>flagged</th><th>clean acc before</th><th>ASR before</th><th>clean acc after</th><th>ASR after</th></tr>
${rows}</table>
<p>"After": retrained without the flagged examples (baselines only with <code>--retrain-baselines</code>).${
        s.asr_floor !== null
          ? ` ASR floor ${pct(s.asr_floor)}: the same recipe trained without the poisons the manifest names.`
          : ""
      }</p>
<div class="charts"><div><h3>ROC curves</h3>${rocSvg(curves, truth)}</div><div><h3>Our scores by ground truth</h3>${
        histogramSvg(r.scores, truth)
      }</div></div>`
      : `<h2>Outcome</h2><p>Clean accuracy ${pct(s.clean_acc_before)} before, ${
        pct(s.clean_acc_after)
      } after removal and retraining.</p><h3>Score distribution</h3>${histogramSvg(r.scores, null)}`
  }
<h2>Top ${top.length} flagged examples</h2><p>Rank · ${r.data?.paths ? "file" : "index"} · label${
    truth ? " (red border: poisoned per the manifest)" : ""
  }.</p>
<div class="grid">${cells}</div>
<h2>Stages</h2><table><tr><th>stage</th><th>seconds</th></tr>${
    Object.entries(s.stage_seconds).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${v.toFixed(1)}</td></tr>`).join("")
  }</table>
</body></html>`;
}

/**
 * The report's files: summary.json, report.html, scores.json (the search and spectral score of every example)
 * and the exports (./exports.ts).
 */
export function reportFiles(r: DetectResult): [string, Uint8Array][] {
  const enc = new TextEncoder();
  return [
    ["summary.json", enc.encode(JSON.stringify(r.summary satisfies Summary, null, 2))],
    ["report.html", enc.encode(renderReport(r))],
    [
      "scores.json",
      enc.encode(
        JSON.stringify({ search: Array.from(r.scores), spectral: Array.from(r.spectral), backend: r.backend }),
      ),
    ],
    ...exportFiles(r),
  ];
}

/** The names of reportFiles' files, for a plan made before the result exists: detection_info.csv needs the
 *  ground truth (an attack's manifest). */
export const reportFileNames = (groundTruth: boolean): string[] => [
  "summary.json",
  "report.html",
  "scores.json",
  "scores.csv",
  "scores.npy",
  "flagged.txt",
  ...(groundTruth ? ["detection_info.csv"] : []),
];

/** The report's files in `dir`, in one write: an interrupted run leaves the previous report or the new one. */
export async function writeReport(
  r: DetectResult,
  dir: string,
): Promise<{ summary: string; html: string; scores: string }> {
  await makeDir(dir);
  await writeFilesAtomic(reportFiles(r).map(([name, bytes]): [string, Uint8Array] => [joinPath(dir, name), bytes]));
  return {
    summary: joinPath(dir, "summary.json"),
    html: joinPath(dir, "report.html"),
    scores: joinPath(dir, "scores.json"),
  };
}

/** The decision rule's verdict in words (standout.ts). */
export function decision(s: Summary): string {
  const o = s.standout;
  if (!Number.isFinite(o.ratio)) {
    return `The rule could not be applied (fewer than three classes with four examples each); ${
      s.config.budget === "auto" ? "nothing was flagged" : `--budget ${s.config.budget} flagged ${s.flagged.length}`
    }.`;
  }
  const where =
    `class ${esc(String(o.cls))}'s best blocks (sizes ${o.sizes.join(", ")}) are ${
      o.ratio.toFixed(2)
    }× as isolated from the rest of their class as the median class's (median over the sizes); the threshold ` +
    `is ${o.threshold}`;
  if (s.config.budget !== "auto") {
    return `--budget ${s.config.budget} set: ${s.flagged.length} flagged. For reference, ${where}.`;
  }
  return o.standsOut
    ? `Something stands out: ${where}. The ${s.flagged.length} examples of class ${
      esc(String(o.cls))
    } that score at least ${REMOVAL_FRACTION} of its top score are flagged (a backdoor's poisons all carry its label).`
    : `Nothing stands out: ${where}. Clean data make blocks like this in every class, so nothing was flagged and ` +
      `the model is left as it is (set <code>--budget N</code> to remove the N highest-scored examples anyway).`;
}
