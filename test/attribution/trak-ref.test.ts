// denseAttributionRef (host, float64) against the device's factors read back as a dense A.
import { describe, it } from "vitest";
import type { Features } from "../../src/attribution/featurize.ts";
import { buildAttribution, denseAttributionRef } from "../../src/attribution/trak.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randomF32, testSeed } from "../support/rng.ts";

describe("dense attribution twin", () => {
  for (const o of [{ qWeight: false }, { qWeight: true, normalize: true, lambdaScale: 0.1 }]) {
    it(`equals the device's A (${JSON.stringify(o)})`, async () => {
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`dense attribution twin ${JSON.stringify(o)}`));
      const [n, k, M] = [53, 20, 2];
      const feats = Array.from({ length: M }, () => {
        const phi = randomF32(rand, n * k);
        const margins = randomF32(rand, n, -3, 3);
        return { phi, q: Float32Array.from(margins, (v) => 1 - 1 / (1 + Math.exp(-v))), margins };
      });
      const { attribution } = await buildAttribution(
        rt,
        feats.map((f): Features => ({ phi: rt.upload(f.phi, [n, k]), margins: f.margins, q: f.q, n, k })),
        o,
      );
      const device = await attribution.readBlock(0, n, 0, n);
      attribution.release();
      const host = denseAttributionRef(feats, n, k, o);
      // f32 on the device: Gram, K (uploaded as f32) and two products of length k; 2e-5 of the largest entry.
      assertClose(device, host, { rtol: 2e-5, scale: Math.max(...host.map(Math.abs)) }, `A, n=${n} k=${k} M=${M}`);
    });
  }
});
