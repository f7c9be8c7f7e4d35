// Node: what every job's finish on a coordinator without WebGPU must leave behind (both host-finish tests).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";

export function expectHostFinish(summary: Record<string, unknown>, out: string, n: number): void {
  expect(String(summary.adapter)).toMatch(/host/);
  expect(summary.clean_acc_before).toBe(null);
  const scores = JSON.parse(readFileSync(join(out, "scores.json"), "utf8")) as { search: number[] };
  expect(scores.search.length).toBe(n);
  expect(readFileSync(join(out, "report.html"), "utf8")).toMatch(/<svg/);
}
