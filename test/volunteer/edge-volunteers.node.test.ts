// Node only (Chromium through playwright-core): the edge coordinator in workerd, a TRAK job on an uploaded
// dataset, one Deno worker (llvmpipe) and one Chromium volunteer page (SwiftShader). The worker trains the
// model and sends the featurize shard first; the page then answers it as the second volunteer, so the
// accepted features are the worker's, and both compute the finish shard, which must agree. The job's scores
// must be runDetect's on llvmpipe (test/volunteer/edge-reference.ts) within the finish agreement's tolerance: the
// worker's own finish equals runDetect's bitwise, and the accepted one agrees with it.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { describe, expect, it } from "vitest";
import { startEdge } from "../../server/serve-edge.ts";
import { FINISH_SCORE_TOLERANCE } from "../../server/jobs/train-shard.ts";
import { CoordinatorClient } from "../../src/protocol/client.ts";
import { killed, spawnUntil, tempDir } from "../server/support.ts";
import { testSeed } from "../support/rng.ts";
import { EDGE_JOB } from "./fixtures.ts";

const ADMIN = "edge-volunteers-test-admin";
const DENO = new URL("../../node_modules/.bin/deno", import.meta.url).pathname;
const DENO_ENV = { XDG_RUNTIME_DIR: "/tmp" };

async function finished(admin: CoordinatorClient, jobId: string, timeoutMs: number) {
  for (const t0 = Date.now();;) {
    const s = await admin.jobStatus(jobId);
    if (s.state === "done" || s.state === "failed") return s;
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(`job still ${s.state} after ${timeoutMs} ms: ${JSON.stringify(s.shards)}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe("edge coordinator with volunteers", () => {
  it(
    "a Deno worker and a Chromium page complete a TRAK job on workerd, finish included: runDetect's scores",
    async () => {
      const dir = tempDir("edge-volunteers");
      const seed = testSeed("edge volunteers") % 1000;
      let result = "";
      const reference = await spawnUntil(
        DENO,
        ["run", "-A", "--no-check", "test/volunteer/edge-reference.ts", dir, String(seed)],
        /^RESULT /,
        (l) => {
          if (l.startsWith("RESULT ")) {
            result = l.slice(7);
          }
        },
        DENO_ENV,
      );
      await killed(reference, "SIGTERM");
      const ref = JSON.parse(result) as { scores: number[]; auroc: number };

      const edge = await startEdge({ port: 0, data: join(dir, "edge"), adminToken: ADMIN, config: { sweepMs: 200 } });
      const browser = await chromium.launch({
        executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
        args: ["--enable-unsafe-webgpu"],
        headless: true,
      });
      const lines: string[] = [];
      let worker: Awaited<ReturnType<typeof spawnUntil>> | undefined;
      try {
        const upload = await fetch(`${edge.url}/v1/datasets`, {
          method: "POST",
          headers: { authorization: `Bearer ${ADMIN}` },
          body: readFileSync(join(dir, "data.npz")),
        });
        expect(upload.status).toBe(201);
        const { name } = (await upload.json()) as { name: string };
        const admin = new CoordinatorClient(edge.url, ADMIN);
        const jobId = await admin.createJob("trak", { ...EDGE_JOB, data: name, seed });

        // The worker alone first: it trains train/0 and sends the featurize shard (pending a second volunteer).
        let sent = 0;
        let allSent = () => {};
        const featurized = new Promise<void>((resolve) => (allSent = resolve));
        worker = await spawnUntil(
          DENO,
          ["run", "-A", "--no-check", "src/cli/run.ts", "worker", "--server", edge.url, "--dataset", name],
          /registered as volunteer/,
          (l) => {
            lines.push(l);
            if (/submitted featurize\/\S+: pending-quorum/.test(l) && ++sent === 1) allSent();
          },
          DENO_ENV,
        );
        await featurized;

        const page = await browser.newPage();
        const messages: string[] = [];
        page.on("console", (m) => messages.push(m.text()));
        page.on("pageerror", (e) => messages.push(`pageerror: ${e.message}`));
        await page.goto(`${edge.url}/volunteer/?autostart=1&kinds=featurize,trak-finish&dataset=${name}&name=chromium`);
        const done = await finished(admin, jobId, 240_000).catch(async (e) => {
          throw new Error(
            `${(e as Error).message}\npage:\n${await page.locator("#log").textContent()}\n` +
              `console:\n${messages.join("\n")}\nworker:\n${lines.slice(-20).join("\n")}`,
          );
        });
        const status = await page.evaluate(() =>
          (window as unknown as { volunteerStatus: { adapter: string; verdicts: Record<string, string> } })
            .volunteerStatus
        );
        console.log(`page on ${status.adapter}: ${JSON.stringify(status.verdicts)}`);
        expect(done.state).toBe("done");
        expect(done.shards.accepted).toBe(done.shards.total); // train/0, featurize, finish
        expect(done.shards.total).toBe(3);
        // The page answered the featurize shard, in agreement with the worker, and sent a finish that agreed too.
        expect(status.verdicts["featurize/0/0-256"]).toBe("accepted");
        expect(status.verdicts.finish).toMatch(/^(accepted|pending-quorum)$/);
        const file = async (f: string) => new TextDecoder().decode(await admin.reportFile(jobId, f));
        const scores = (JSON.parse(await file("scores.json")) as { search: number[] }).search;
        expect(scores.length).toBe(ref.scores.length);
        let worst = 0;
        ref.scores.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - scores[i]) / (1 + Math.abs(v)))));
        const summary = JSON.parse(await file("summary.json")) as { auroc: number };
        console.log(`edge trak job: max relative |score - runDetect| ${worst}; auroc ${summary.auroc} vs ${ref.auroc}`);
        expect(worst).toBeLessThanOrEqual(FINISH_SCORE_TOLERANCE);
        expect(await file("report.html")).toMatch(/<svg/);
      } finally {
        if (worker) await killed(worker, "SIGTERM");
        await browser.close();
        await edge.stop();
      }
    },
    420_000,
  );
});
