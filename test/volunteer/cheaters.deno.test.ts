// Deno only, real processes on loopback: two cheating volunteers (test/volunteer/cheater-child.ts) each
// answer two datamodels train shards honestly, then send a model of other data: one trained on another
// subset's mask, one on its mask minus the poisoned examples, each with states consistent with what it
// trained. New volunteers get a training segment replayed on every train result, so each is refused and
// quarantined, its honest results are requeued, and an honest volunteer then finishes the job with
// runDetect's datamodels scores on the same adapter (bitwise: tolerance 1e-9).
import { describe, expect, it } from "vitest";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import { runDetect } from "../../src/detect/pipeline.ts";
import { CoordinatorClient } from "../../src/protocol/client.ts";
import { execPath, spawnChild } from "../../src/platform.ts";
import { DatasetRef } from "../../src/protocol/shards.ts";
import { DEFAULT_DATASET } from "../../server/jobs/datasets.ts";
import { testRuntime } from "../support/gpu.ts";
import { tempDir } from "../support/host.ts";
import { testSeed } from "../support/rng.ts";
import { TINY } from "./fixtures.ts";
import { ADMIN, createJob, jobStatus, Proc, startCoordinator, startWorker, waitForJob } from "./procs.ts";
import { rm } from "node:fs/promises";

const ROOT = new URL("../../", import.meta.url).pathname;

async function cheater(url: string, mode: string, honest: number, ref: DatasetRef): Promise<Proc> {
  const child = await spawnChild(
    execPath(),
    ["run", "-A", "--no-check", "test/volunteer/cheater-child.ts", url, mode, String(honest), JSON.stringify(ref)],
    { cwd: ROOT, env: { XDG_RUNTIME_DIR: "/tmp" } },
  );
  return new Proc(mode, child);
}

describe("cheating volunteers", () => {
  it("a model of another mask and one without the poisons are refused; both cheaters' work is redone", async () => {
    const rt = await testRuntime();
    rt.poisonOutputs = false;
    await autotuneMatmul(rt); // tiles cached on disk before any process starts: every process uses them
    const seed = testSeed("cheating volunteers") % 1000;
    const settings = { ...TINY, dmModels: 6, ldsModels: 2, dmAlpha: 0.5, seed };
    const { proc: coord, url } = await startCoordinator({ leaseMs: 20_000 });
    const jobId = await createJob(url, "datamodels", settings);
    const procs: Proc[] = [];
    try {
      const dataset = DatasetRef.parse({ data: DEFAULT_DATASET, train: settings.train, seed });
      for (const mode of ["other-mask", "minus-poisons"]) procs.push(await cheater(url, mode, 2, dataset));
      for (const p of procs) {
        const refused = await p.waitFor(/submitted (\S+) rejected (.*)/, 120_000);
        console.log(`${p.name}: ${refused[1]} refused: ${refused[2]}`);
        expect(refused[2]).toMatch(/replayed from the submitted state|fits the other examples better/);
        await p.waitFor(/stopped: .*quarantined/, 30_000);
        // Its two honest results were accepted before the cheat.
        expect(p.lines.filter((l) => / accepted/.test(l)).length).toBe(2);
      }
      const events = (await jobStatus(url, jobId)).events.map((e) => e.message);
      console.log(events.join("\n"));
      expect(events.filter((m) => /quarantined .* 2 shard\(s\) requeued/.test(m)).length).toBe(2);

      procs.push(await startWorker("honest", url));
      const done = await waitForJob(url, jobId, (s) => s.state === "done", 240_000);
      expect(done.shards.accepted).toBe(done.shards.total);
      const scores = JSON.parse(
        new TextDecoder().decode(await new CoordinatorClient(url, ADMIN).reportFile(jobId, "scores.json")),
      ) as { search: number[] };
      const cache = tempDir("test");
      const ref = await runDetect(rt, { ...settings, attribution: "datamodels", cache, out: cache });
      let maxd = 0;
      ref.scores.forEach((v, i) => (maxd = Math.max(maxd, Math.abs(v - scores.search[i]))));
      console.log(`max |score - runDetect| = ${maxd}; auroc ${done.summary?.auroc} vs ${ref.summary.auroc}`);
      expect(scores.search.length).toBe(ref.scores.length);
      expect(maxd).toBeLessThan(1e-9);
      await rm(cache, { recursive: true, force: true });
    } finally {
      for (const p of [...procs, coord]) p.kill("SIGTERM");
      await Promise.all([...procs, coord].map((p) => p.exited));
      rt.poisonOutputs = true;
    }
  });
});
