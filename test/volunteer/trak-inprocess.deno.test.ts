// Deno only: the trak job's shards run in-process through the executors (no coordinator), spot checks
// and agreement exercised, the finish shard's scores compared with runDetect on the same settings and adapter.
import { describe, expect, it } from "vitest";
import { trak, TrakSpec } from "../../server/jobs/trak.ts";
import { decodeSafetensors, encodeSafetensors } from "../../src/checkpoint/safetensors.ts";
import { testSplit, trainSplit } from "../../server/jobs/datasets.ts";
import { type ArrayValue, FINISH } from "../../src/protocol/job-kind.ts";
import { TrainPayload } from "../../src/protocol/shards.ts";
import { FINISH_SCORES } from "../../src/detect/job-finish.ts";
import { seededIndices } from "../../src/data/dataset.ts";
import { runDetect } from "../../src/detect/pipeline.ts";
import { trakExecutors } from "../../src/volunteer/executors.ts";
import { testRuntime } from "../support/gpu.ts";
import { testSeed } from "../support/rng.ts";

import { TINY } from "./fixtures.ts";
import { tempDir } from "../support/host.ts";
import { rm } from "node:fs/promises";

const depth = { replay: true };

describe("trak job in process", () => {
  it("shards through the executors give runDetect's scores; spot check and agreement reject tampering", async () => {
    const rt = await testRuntime();
    rt.poisonOutputs = false;
    const seed = testSeed("trak in process") % 1000;
    const spec = TrakSpec.parse({ ...TINY, seed });
    const shards = trak.plan(spec);
    const results = new Map<string, Record<string, ArrayValue>>();
    const inputs = { get: async (key: string, name: string) => results.get(key)![name] };
    const ex = trakExecutors({ rt, loadTrainSplit: trainSplit, loadTestSplit: testSplit });
    const t = performance.now();
    for (const s of shards) {
      const r = await ex[s.kind](s.payload, inputs, { onProgress: () => {} });
      // exactly the planned outputs (the coordinator refuses others and waits for missing ones)
      expect(Object.keys(r).sort()).toEqual(Object.keys(s.outputs).sort());
      if (s.deterministic) {
        const again = performance.now();
        expect(trak.agree(s, r, await ex[s.kind](s.payload, inputs, { onProgress: () => {} }))).toBe(true);
        if (s.key === FINISH) console.log(`finish shard ${((performance.now() - again) / 1000).toFixed(1)} s`);
        // The coordinator's own computation, for audits, agrees too.
        expect(trak.agree(s, r, (await trak.recompute!(spec, s, inputs))!)).toBe(true);
        // featurize: row 0 off by 1%; finish: one example's score off by 0.01
        const [name, off] = s.key === FINISH ? [FINISH_SCORES, 1] : ["phi", spec.k];
        const bad = {
          ...r,
          [name]: {
            ...r[name],
            data: (r[name].data as Float32Array).map((v, i) => (i < off ? v * 1.01 + 0.01 : v)),
          },
        };
        expect(trak.agree(s, r, bad)).toBe(false);
      } else {
        // Every segment of an honest run replays to its claimed state.
        const { segments } = TrainPayload.parse(s.payload);
        expect(segments).toBe(2); // 8 steps in segments of at most 4
        for (let k = 0; k < segments; k++) expect(await trak.spotCheck(spec, s, r, inputs, k, depth)).toBe(null);
        // A model trained in another order (another seed) is refused by whichever segment is replayed.
        const other = await ex[s.kind]({ ...(s.payload as object), seed: 99 }, inputs, { onProgress: () => {} });
        for (let k = 0; k < segments; k++) {
          expect(String(await trak.spotCheck(spec, s, other, inputs, k, depth))).toMatch(/replayed from the submitted/);
        }
        // One forged margin outside the host's 16-example sample passes the host check; the device recomputes all.
        const sampled = new Set(seededIndices(spec.train, spec.spotChecks, seed));
        const j = [...Array(spec.train).keys()].find((i) => !sampled.has(i))!;
        const one = Float32Array.from(r.margins.data as Float32Array, (v, i) => (i === j ? v + 2 : v));
        const forged = { ...r, margins: { ...r.margins, data: one } };
        expect(await trak.spotCheck(spec, s, forged, inputs, seed)).toBe(null);
        expect(String(await trak.spotCheck(spec, s, forged, inputs, seed, depth))).toMatch(
          new RegExp(`margin \\S+ of example ${j} is not the checkpoint's`),
        );
        const m = Float32Array.from(r.margins.data as Float32Array);
        m.forEach((v, i) => (m[i] = v + 0.1));
        expect(String(await trak.spotCheck(spec, s, { ...r, margins: { ...r.margins, data: m } }, inputs, seed)))
          .toMatch(/not the checkpoint/);
        // A checkpoint that names another (here: enormous) model is refused before anything is built.
        const file = decodeSafetensors(r.checkpoint.data as Uint8Array);
        const huge = encodeSafetensors(file.tensors, {
          ...file.metadata,
          config: JSON.stringify({ ...spec.model, widths: [1 << 20, 1 << 20, 1 << 20] }),
        });
        expect(
          String(
            await trak.spotCheck(
              spec,
              s,
              { ...r, checkpoint: { dtype: "u8", shape: [huge.length], data: huge } },
              inputs,
              seed,
            ),
          ),
        ).toMatch(/not the expected/);
      }
      results.set(s.key, r);
    }
    console.log(`shards: ${shards.length} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const finish = results.get(FINISH)!;
    const file = (name: string) => JSON.parse(new TextDecoder().decode(finish[name].data));
    const ours = file("scores.json") as { search: number[]; spectral: number[] };
    const summary = file("summary.json") as { auroc: number };
    const cache = tempDir("test");
    const ref = await runDetect(rt, { ...TINY, seed, cache, out: cache });
    let maxd = 0;
    ref.scores.forEach((v, i) => (maxd = Math.max(maxd, Math.abs(v - ours.search[i]))));
    console.log(`max |score - runDetect| = ${maxd}; auroc ${summary.auroc} vs ${ref.summary.auroc}`);
    expect(maxd).toBeLessThan(1e-9);
    expect(summary.auroc).toBe(ref.summary.auroc);
    await rm(cache, { recursive: true, force: true });
  });
});
