// Deno only, real processes on loopback: a coordinator, a volunteer killed with SIGKILL in the middle of
// a shard (its lease must expire and the shard go to another volunteer), then two volunteers that run the
// rest of a tiny TRAK job. The job's scores must equal the single-machine runDetect's on the same
// settings: same adapter, same kernels, tiles (the autotune cache) and 64-example featurisation tiles,
// so the features are bitwise equal and the search sees the same matrix. Tolerance 1e-9 (the scores are
// counts over sizes; any real difference moves them by at least 1/size).
import { describe, expect, it } from "vitest";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import { runDetect } from "../../src/detect/pipeline.ts";
import { testRuntime } from "../support/gpu.ts";
import { testSeed } from "../support/rng.ts";
import { CoordinatorClient } from "../../src/protocol/client.ts";
import { ADMIN, createJob, jobStatus, startCoordinator, startWorker, waitForJob } from "./procs.ts";
import { TINY } from "./fixtures.ts";
import { tempDir } from "../support/host.ts";
import { rm } from "node:fs/promises";

describe("trak job through volunteer processes", () => {
  it("survives a worker killed mid-shard and gives runDetect's scores", async () => {
    const t0 = performance.now();
    const rt = await testRuntime();
    rt.poisonOutputs = false;
    await autotuneMatmul(rt); // tiles cached on disk before any worker starts: every process uses them
    const seed = testSeed("trak volunteers") % 1000;
    const spec = { ...TINY, models: 2, seed };
    const leaseMs = 2500;
    const { proc: coord, url, dir } = await startCoordinator({ leaseMs });
    const jobId = await createJob(url, "trak", spec);
    try {
      // (c) a volunteer that takes a train shard and dies with it
      const doomed = await startWorker("doomed", url, ["--kinds", "train"]);
      const leased = await doomed.waitFor(/leased (train\/\d)/);
      await doomed.waitFor(/start train/);
      doomed.kill("SIGKILL");
      const killedAt = Date.now();
      expect((await doomed.exited).signal).toBe("SIGKILL");
      const st = await jobStatus(url, jobId);
      expect(st.shards.leased).toBe(1); // still held by the dead volunteer until its deadline
      console.log(`killed "doomed" holding ${leased[1]}`);

      // (a) two volunteers finish the job; one of them must redo the dead volunteer's shard
      const workers = await Promise.all([startWorker("w1", url), startWorker("w2", url)]);
      const redo = await Promise.race(
        workers.map((w) => w.waitFor(new RegExp(`leased ${leased[1]} .*fence (\\d+)`), 90_000)),
      );
      const reassignedAfter = Date.now() - killedAt;
      console.log(`${leased[1]} re-leased ${reassignedAfter} ms after the kill (fence ${redo[1]})`);
      expect(reassignedAfter).toBeGreaterThan(leaseMs - 500);
      expect(Number(redo[1])).toBeGreaterThan(1);
      const done = await waitForJob(url, jobId, (s) => s.state === "done", 150_000);
      const tJob = (performance.now() - t0) / 1000;
      expect(done.shards.accepted).toBe(done.shards.total);
      workers.forEach((w) => w.kill("SIGTERM"));
      for (const w of workers) expect((await w.exited).code).toBe(0); // clean stop on SIGTERM
      for (const w of workers) await w.waitFor(/stopped after \d+ shards/, 1000);
      const report = new CoordinatorClient(url, ADMIN);
      const scores = JSON.parse(new TextDecoder().decode(await report.reportFile(jobId, "scores.json"))) as {
        search: number[];
        spectral: number[];
      };
      const html = new TextDecoder().decode(await report.reportFile(jobId, "report.html"));
      expect(html).toMatch(/<svg/);

      const cache = tempDir("test");
      const ref = await runDetect(rt, { ...TINY, models: 2, seed, cache, out: cache });
      let maxd = 0, maxs = 0;
      ref.scores.forEach((v, i) => (maxd = Math.max(maxd, Math.abs(v - scores.search[i]))));
      ref.spectral.forEach((v, i) => (maxs = Math.max(maxs, Math.abs(v - scores.spectral[i]))));
      console.log(
        `job ${tJob.toFixed(1)} s; max |search score - runDetect| ${maxd}, spectral ${maxs}; ` +
          `auroc ${done.summary?.auroc} vs ${ref.summary.auroc}`,
      );
      expect(scores.search.length).toBe(ref.scores.length);
      expect(maxd).toBeLessThan(1e-9);
      expect(maxs).toBeLessThan(1e-6);
      expect(done.summary?.auroc).toBe(ref.summary.auroc);
      await rm(cache, { recursive: true, force: true });
    } finally {
      coord.kill("SIGTERM");
      await coord.exited;
      await rm(dir, { recursive: true, force: true });
      rt.poisonOutputs = true;
    }
  });
});
