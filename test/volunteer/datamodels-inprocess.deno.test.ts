// Deno only: the datamodels job's shards run in-process through the volunteer executors (no coordinator),
// spot checks exercised, the finish shard compared with runDetect --attribution datamodels on the same adapter.
import { describe, expect, it } from "vitest";
import { datamodels, DatamodelsSpec } from "../../server/jobs/datamodels.ts";
import { testSplit, trainSplit } from "../../server/jobs/datasets.ts";
import { type ArrayValue, FINISH } from "../../src/protocol/job-kind.ts";
import { runDetect } from "../../src/detect/pipeline.ts";
import { trakExecutors } from "../../src/volunteer/executors.ts";
import { testRuntime } from "../support/gpu.ts";
import { testSeed } from "../support/rng.ts";
import { TINY } from "./fixtures.ts";
import { tempDir } from "../support/host.ts";
import { rm } from "node:fs/promises";

describe("datamodels job in process", () => {
  it(
    "subset shards through the executors give runDetect's datamodels scores and LDS; tampered margins are " +
      "refused",
    async () => {
      const rt = await testRuntime();
      rt.poisonOutputs = false;
      const seed = testSeed("datamodels in process") % 1000;
      const settings = { ...TINY, dmModels: 10, ldsModels: 4, dmAlpha: 0.5, seed };
      const spec = DatamodelsSpec.parse(settings);
      const shards = datamodels.plan(spec);
      const results = new Map<string, Record<string, ArrayValue>>();
      const inputs = { get: async (key: string, name: string) => results.get(key)![name] };
      const ex = trakExecutors({ rt, loadTrainSplit: trainSplit, loadTestSplit: testSplit });
      const t = performance.now();
      for (const s of shards) {
        const r = await ex[s.kind](s.payload, inputs, { onProgress: () => {} });
        expect(Object.keys(r).sort()).toEqual(Object.keys(s.outputs).sort());
        if (s.key === FINISH) {
          // the coordinator's own computation, for audits, agrees
          expect(datamodels.agree(s, r, (await datamodels.recompute!(spec, s, inputs))!)).toBe(true);
          results.set(s.key, r);
          continue;
        }
        expect(await datamodels.spotCheck(spec, s, r, inputs, seed, { replay: true })).toBe(null);
        if (s.key === "subset/0") {
          const m = Float32Array.from(r.margins.data as Float32Array, (v) => v + 0.1);
          expect(
            String(await datamodels.spotCheck(spec, s, { ...r, margins: { ...r.margins, data: m } }, inputs, seed)),
          )
            .toMatch(/not the checkpoint/);
        }
        results.set(s.key, r);
      }
      console.log(`shards: ${shards.length} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      // A subset model learns its own half of the data: its margins differ from the full-set model's.
      const full = results.get("train/0")!.margins.data, sub = results.get("subset/0")!.margins.data;
      expect(full.some((v, i) => v !== sub[i])).toBe(true);

      const finish = results.get(FINISH)!;
      const file = (name: string) => JSON.parse(new TextDecoder().decode(finish[name].data));
      const ours = file("scores.json") as { search: number[] };
      const summary = file("summary.json") as { auroc: number; lds: number };
      const cache = tempDir("test");
      const ref = await runDetect(rt, { ...settings, attribution: "datamodels", cache, out: cache });
      let maxd = 0;
      ref.scores.forEach((v, i) => (maxd = Math.max(maxd, Math.abs(v - ours.search[i]))));
      console.log(
        `max |score - runDetect| = ${maxd}; auroc ${summary.auroc} vs ${ref.summary.auroc}; lds ${summary.lds} vs ` +
          `${ref.summary.lds}`,
      );
      expect(maxd).toBeLessThan(1e-9);
      expect(Number.isFinite(summary.lds)).toBe(true);
      expect(summary.lds).toBe(ref.summary.lds);
      expect(summary.auroc).toBe(ref.summary.auroc);
      await rm(cache, { recursive: true, force: true });
      rt.poisonOutputs = true;
    },
  );
});
