// Deno only, real processes on loopback (test/volunteer/volunteer-child.ts), against a Deno coordinator that
// replays training segments:
// - two cheating volunteers each answer two datamodels train shards honestly, then send a model of other
//   data: one trained on another subset's mask, one on its mask minus the poisoned examples, each with
//   states consistent with what it trained. New volunteers get a segment replayed on every train result, so
//   each is refused and quarantined, its honest results are requeued, and an honest volunteer then finishes
//   the job with runDetect's datamodels scores on the same adapter (bitwise: tolerance 1e-9);
// - a ring of three colluding volunteers (of five) that train honestly and agree on featurize results with
//   the poisoned examples' features zeroed: the coordinator recomputes what fresh volunteers agreed on,
//   quarantines the pair, and two honest volunteers finish with runDetect's scores (tolerance 1e-9);
// - honest volunteers on llvmpipe and on SwiftShader (another adapter, other tiles), every result replayed:
//   none is refused.
import { describe, expect, it } from "vitest";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import type { DetectConfig } from "../../src/detect/config.ts";
import { runDetect } from "../../src/detect/pipeline.ts";
import type { Runtime } from "../../src/gpu/runtime.ts";
import { CoordinatorClient } from "../../src/protocol/client.ts";
import { DatasetRef } from "../../src/protocol/shards.ts";
import { DEFAULT_DATASET } from "../../server/jobs/datasets.ts";
import { testRuntime } from "../support/gpu.ts";
import { tempDir } from "../support/host.ts";
import { testSeed } from "../support/rng.ts";
import { TINY } from "./fixtures.ts";
import { ADMIN, createJob, deno, jobStatus, type Proc, startCoordinator, startWorker, waitForJob } from "./procs.ts";
import { SWIFTSHADER_ICD } from "../../src/gpu/device.ts";
import { rm } from "node:fs/promises";

const child = (url: string, mode: string, honest: number, ref: DatasetRef, env: Record<string, string> = {}) =>
  deno(mode, ["test/volunteer/volunteer-child.ts", url, mode, String(honest), JSON.stringify(ref)], false, env);

/** The job's scores equal the single-machine runDetect's on the same settings (tolerance 1e-9: bitwise). */
async function expectRunDetectScores(rt: Runtime, url: string, jobId: string, settings: DetectConfig) {
  const scores = JSON.parse(
    new TextDecoder().decode(await new CoordinatorClient(url, ADMIN).reportFile(jobId, "scores.json")),
  ) as { search: number[] };
  const cache = tempDir("test");
  const ref = await runDetect(rt, { ...settings, cache, out: cache });
  let maxd = 0;
  ref.scores.forEach((v, i) => (maxd = Math.max(maxd, Math.abs(v - scores.search[i]))));
  console.log(`max |score - runDetect| = ${maxd}`);
  expect(scores.search.length).toBe(ref.scores.length);
  expect(maxd).toBeLessThan(1e-9);
  await rm(cache, { recursive: true, force: true });
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
      for (const mode of ["other-mask", "minus-poisons"]) procs.push(await child(url, mode, 2, dataset));
      const events = () => jobStatus(url, jobId).then((st) => st.events.map((e) => e.message));
      for (const p of procs) {
        const refused = await p.waitFor(/submitted (\S+) rejected (.*)/, 120_000);
        console.log(`${p.name}: ${refused[1]} refused: ${refused[2]}`);
        expect(refused[2]).toMatch(/replayed from the submitted state|fits the other examples better/);
        await p.waitFor(/stopped: .*quarantined/, 30_000);
        // What it sent honestly before (two shards, unless a lease was lost on the way) was accepted, and is
        // requeued now.
        const verdicts = p.lines.filter((l) => l.startsWith("submitted ")).map((l) => l.split(" ")[2]);
        expect(verdicts.pop()).toBe("rejected");
        expect(verdicts.length).toBeGreaterThan(0);
        expect(verdicts.every((v) => v === "accepted")).toBe(true);
        const [, id] = await p.waitFor(/registered (\S+)/);
        const mine = (await events()).filter((m) => m.includes(`volunteer ${id} was quarantined`));
        expect(mine.length).toBe(1);
        expect(mine[0]).toMatch(new RegExp(`: ${verdicts.length} shard\\(s\\) requeued$`));
      }
      console.log((await events()).join("\n"));

      // Two: the finish shard, like any deterministic one, wants two volunteers who agree.
      procs.push(await startWorker("honest-1", url), await startWorker("honest-2", url));
      const done = await waitForJob(url, jobId, (s) => s.state === "done", 240_000);
      expect(done.shards.accepted).toBe(done.shards.total);
      await expectRunDetectScores(rt, url, jobId, { ...settings, attribution: "datamodels" });
    } finally {
      for (const p of [...procs, coord]) p.kill("SIGTERM");
      await Promise.all([...procs, coord].map((p) => p.exited));
      rt.poisonOutputs = true;
    }
  });

  it("a ring of colluders agreeing on forged featurize results: audited, quarantined; runDetect's scores", async () => {
    const rt = await testRuntime();
    rt.poisonOutputs = false;
    await autotuneMatmul(rt);
    const seed = testSeed("featurize ring") % 1000;
    const spec = { ...TINY, models: 2, seed };
    // Default checks: every result of a volunteer with fewer than 3 valid ones is checked (train results
    // replayed, agreed featurize results recomputed here).
    const { proc: coord, url } = await startCoordinator({ leaseMs: 20_000 });
    const jobId = await createJob(url, "trak", spec);
    const dataset = DatasetRef.parse({ data: DEFAULT_DATASET, train: spec.train, seed });
    // Three of the five identities; alone at first, so they are each other's quorum.
    const ring = await Promise.all([0, 1, 2].map(() => child(url, "ring", 0, dataset)));
    const procs: Proc[] = [...ring];
    try {
      // A pair that agreed is recomputed here and both are quarantined: their worker loops stop on the 403.
      const caught = () => ring.flatMap((p) => p.lines.filter((l) => /^stopped: .*quarantined/.test(l)));
      for (let t = 0; caught().length < 2; t++) {
        if (t > 1200) throw new Error(`no ring pair was caught in 240 s: ${ring.map((p) => p.lines.slice(-5))}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const forged = ring.flatMap((p) => p.lines.filter((l) => l.startsWith("forged ")));
      console.log(`ring: ${forged.length} forged featurize results; ${caught().join("; ")}`);
      expect(forged.length).toBeGreaterThan(1);
      expect(caught().join("\n")).toMatch(/own computation/);

      procs.push(await startWorker("honest-1", url), await startWorker("honest-2", url));
      const done = await waitForJob(url, jobId, (s) => s.state === "done", 300_000);
      expect(done.shards.accepted).toBe(done.shards.total);
      await expectRunDetectScores(rt, url, jobId, spec);
    } finally {
      for (const p of [...procs, coord]) p.kill("SIGTERM");
      await Promise.all([...procs, coord].map((p) => p.exited));
      rt.poisonOutputs = true;
    }
  });

  it("honest volunteers on llvmpipe and SwiftShader: every train result replayed, none refused", async () => {
    const seed = testSeed("honest on two adapters") % 1000;
    const settings = { ...TINY, dmModels: 6, ldsModels: 2, dmAlpha: 0.5, seed };
    const { proc: coord, url } = await startCoordinator({ leaseMs: 20_000, flags: ["--replay-fraction", "1"] });
    const jobId = await createJob(url, "datamodels", settings);
    const dataset = DatasetRef.parse({ data: DEFAULT_DATASET, train: settings.train, seed });
    // SwiftShader first: it starts slower, and the other would otherwise take every shard.
    const procs = [await child(url, "honest", 0, dataset, { VK_ICD_FILENAMES: SWIFTSHADER_ICD })];
    try {
      await procs[0].waitFor(/^submitted /, 120_000);
      procs.push(await child(url, "honest", 0, dataset));
      const done = await waitForJob(url, jobId, (s) => s.state === "done", 240_000);
      expect(done.shards.accepted).toBe(done.shards.total);
      const adapters = [];
      for (const p of procs) {
        const [, adapter] = await p.waitFor(/registered \S+ on (.*)/);
        const sent = p.lines.filter((l) => l.startsWith("submitted "));
        console.log(`${adapter}: ${sent.length} results: ${sent.join("; ")}`);
        expect(sent.filter((l) => / rejected/.test(l))).toEqual([]);
        if (sent.length) adapters.push(adapter);
      }
      expect(adapters.some((a) => /SwiftShader/.test(a))).toBe(true);
    } finally {
      for (const p of [...procs, coord]) p.kill("SIGTERM");
      await Promise.all([...procs, coord].map((p) => p.exited));
    }
  });
});
