// The evaluation matrix's bookkeeping (src/detect/evaluation.ts) on a hand-made summary with a known
// answer: one row per detector, BackdoorBench counts from precision x flagged, CSV and means ± std.
import { describe, expect, it } from "vitest";
import { cellRows, meanStd, resultsCsv, resultsHtml } from "../../src/detect/evaluation.ts";
import { detectionInfoCsv } from "../../src/detect/exports.ts";
import type { Summary } from "../../src/detect/summary.ts";

const summary = {
  n: 100,
  poisoned: Array.from({ length: 10 }, (_, i) => i),
  auroc: 0.9,
  tpr_at_5fpr: 0.8,
  precision_at_budget: 0.5,
  recall_at_budget: 1,
  flagged: Array.from({ length: 20 }, (_, i) => i),
  asr_before: 0.9,
  asr_after: 0.1,
  asr_floor: 0.05,
  clean_acc_before: 0.5,
  clean_acc_after: 0.49,
  target: 0,
  baselines: {
    "activation clustering": {
      auroc: 0.7,
      precision_at_budget: 0.25,
      recall_at_budget: 0.5,
      tpr_at_5fpr: 0.3,
      flagged: 20,
    },
    "spectral signatures": { auroc: 0.6, precision_at_budget: NaN, recall_at_budget: 0, tpr_at_5fpr: 0.1, flagged: 0 },
  },
} as unknown as Summary;

describe("evaluation matrix", () => {
  it("one row per detector of a cell, with the confusion counts at each budget", () => {
    const rows = cellRows(summary, "badnets", 2);
    expect(rows.map((r) => r.detector)).toEqual(["ours", "ac", "ss"]);
    expect(rows[0]).toEqual({
      attack: "badnets",
      detector: "ours",
      seed: 2,
      auroc: 0.9,
      tpr_at_5fpr: 0.8,
      precision_at_budget: 0.5,
      recall_at_budget: 1,
      flagged: 20,
      asr_before: 0.9,
      asr_after: 0.1,
      asr_floor: 0.05,
      clean_acc_before: 0.5,
      clean_acc_after: 0.49,
      tp: 10,
      fp: 10,
      fn: 0,
      tn: 80,
    });
    expect([rows[1].tp, rows[1].fp, rows[1].fn, rows[1].tn]).toEqual([5, 15, 5, 75]);
    expect(rows[1].asr_after).toBe(null); // baselines are retrained only with --retrain-baselines
    expect([rows[2].precision_at_budget, rows[2].tp, rows[2].fn]).toEqual([null, 0, 10]);
    expect(detectionInfoCsv(rows[0], 0)).toBe("TN,FP,FN,TP,TPR,FPR,target\n80,10,0,10,1,0.1111111111111111,0\n");
  });

  it("results.csv has a header and one line per row; the HTML table shows means ± std", () => {
    const rows = [...cellRows(summary, "badnets", 0), ...cellRows({ ...summary, auroc: 0.7 }, "badnets", 1)];
    const csv = resultsCsv(rows).trim().split("\n");
    expect(csv[0]).toBe(
      "attack,detector,seed,auroc,tpr_at_5fpr,precision_at_budget,recall_at_budget,flagged,asr_before,asr_after," +
        "asr_floor,clean_acc_before,clean_acc_after,tn,fp,fn,tp",
    );
    expect(csv.length).toBe(7);
    expect(csv[1]).toBe("badnets,ours,0,0.9,0.8,0.5,1,20,0.9,0.1,0.05,0.5,0.49,80,10,0,10");
    expect(csv[3].split(",")[9]).toBe(""); // null -> empty field
    const m = meanStd([0.9, 0.7, null])!;
    expect([Math.abs(m.mean - 0.8) < 1e-12, Math.abs(m.std - Math.sqrt(0.02)) < 1e-12, m.count]).toEqual([
      true,
      true,
      2,
    ]);
    expect(meanStd([null])).toBe(null);
    const html = resultsHtml(rows, 2);
    expect(html.includes("<td>badnets</td><td>ours</td><td>0.800 ± 0.141</td>")).toBe(true);
  });
});
