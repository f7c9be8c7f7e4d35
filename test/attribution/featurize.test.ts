import { describe, expect, it } from "vitest";
import { marginRef } from "../../kernels/loss.ts";
import { projectionMatrixRef } from "../../kernels/project.ts";
import { factoredSideRef, Featurizer, type Projection, weightLayers } from "../../src/attribution/featurize.ts";
import { fill } from "../../kernels/fill.ts";
import type { Runtime } from "../../src/gpu/runtime.ts";
import { buildModel, type Model, type ModelConfig } from "../../src/nn/models.ts";
import { assertClose } from "../support/check.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, randInt, randomF32, testSeed } from "../support/rng.ts";

// Projected per-example gradients on the device against R^T g built explicitly: g from the float64 CPU
// twin run on one example at a time in "grad" mode, R from the generator's TypeScript twin. Features are
// sums of a few hundred O(1) terms; f32 forward/backward keeps them within 1e-4 of max(|want|, 1).
const RTOL = 1e-4;

const MODELS: [string, ModelConfig][] = [
  ["small-cnn", { kind: "small-cnn", input: [3, 8, 8], classes: 5, widths: [3, 4] }],
  ["mlp", { kind: "mlp", input: [2, 3, 3], classes: 4, hidden: [7] }],
];

/** Random running statistics, so batch norm in "grad" mode is not the identity. */
function randomiseStats(rt: Runtime, model: Model, rand: () => number): void {
  for (const p of model.params) {
    if (!p.name.includes("running")) continue;
    const v = p.name.endsWith("var") ? randomF32(rand, p.value.size, 0.5, 2) : randomF32(rand, p.value.size, -0.5, 0.5);
    p.value.release();
    p.value = rt.upload(v, p.shape);
    p.host = Float64Array.from(v);
  }
}

/** Per-example weight gradients of the margin from the CPU twin, concatenated per layer in forward order. */
function twinGradients(model: Model, xData: Float32Array, labels: Uint32Array, B: number): Float64Array[][] {
  const [c, h, w] = model.input;
  const size = c * h * w;
  const layers = weightLayers(model);
  const out: Float64Array[][] = [];
  for (let n = 0; n < B; n++) {
    const x = new Float64Array(size);
    for (let ch = 0; ch < c; ch++) for (let i = 0; i < h * w; i++) x[ch * h * w + i] = xData[(ch * B + n) * h * w + i];
    const logits = model.net.forwardRef({ shape: [c, 1, h, w], data: x }, "grad");
    const m = marginRef(logits.data, [labels[n]], model.classes, 1);
    model.net.backwardRef({ shape: logits.shape, data: m.dlogits });
    out.push(layers.map((l) => Float64Array.from(l.layer.weight.hostGrad!)));
  }
  return out;
}

describe("TRAK featurisation matches R^T g from the CPU twin", () => {
  for (const [name, config] of MODELS) {
    for (const projection of ["dense", "factored", "baseline"] as Projection[]) {
      it(`${name}, ${projection}`, async () => {
        const rt = await testRuntime();
        const seed = testSeed(`featurize ${name} ${projection}`);
        const rand = mulberry32(seed);
        const model = buildModel(rt, config, seed);
        randomiseStats(rt, model, rand);
        const [c, h, w] = model.input;
        const B = 5;
        const k = 24;
        const xData = randomF32(rand, c * B * h * w, -2, 2);
        const labels = Uint32Array.from({ length: B }, () => randInt(rand, 0, model.classes - 1));
        const opts = { k, projection, seed, modelIndex: 2, kOut: 4 };
        const f = new Featurizer(rt, model, opts);
        const phi = fill(rt, rt.empty([B + 1, k]), 0);
        const margins = rt.empty([B + 1]);
        const correct = rt.empty([B + 1]);
        f.batch(rt.upload(xData, [c, B, h, w]), rt.upload(labels, [B], "u32"), phi, 1, margins, correct);
        const [got, gotMargins] = await rt.readMany([phi, margins]);

        const layers = weightLayers(model);
        const grads = twinGradients(model, xData, labels, B);
        const want = new Float64Array((B + 1) * k);
        const s = 1 / Math.sqrt(k);
        for (const wl of layers) {
          const P = wl.O * wl.CK;
          // The explicit P x k projection matrix of this layer.
          let R: Float64Array;
          if (projection === "factored") {
            const rOut = factoredSideRef(seed, 2, wl.index, 0, wl.O, f.kOut);
            const rIn = factoredSideRef(seed, 2, wl.index, 1, wl.CK, f.kIn);
            R = new Float64Array(P * k);
            for (let o = 0; o < wl.O; o++) {
              for (let cc = 0; cc < wl.CK; cc++) {
                for (let a = 0; a < f.kOut; a++) {
                  for (let b = 0; b < f.kIn; b++) {
                    R[(o * wl.CK + cc) * k + a * f.kIn + b] = rOut[o * f.kOut + a] * rIn[cc * f.kIn + b];
                  }
                }
              }
            }
          } else {
            R = projectionMatrixRef(P, k, { seed, model: 2, pOffset: wl.offset });
          }
          for (let n = 0; n < B; n++) {
            const g = grads[n][wl.index];
            for (let p = 0; p < P; p++) for (let j = 0; j < k; j++) want[(1 + n) * k + j] += s * g[p] * R[p * k + j];
          }
        }
        for (let j = 0; j < k; j++) want[j] = 0; // row 0 untouched
        assertClose(got, want, { rtol: RTOL }, `${name} ${projection}: phi`);
        // Margins of the same pass, against the twin.
        const logits = model.net.forwardRef({ shape: [c, B, h, w], data: Float64Array.from(xData) }, "eval");
        assertClose(
          gotMargins.subarray(1),
          marginRef(logits.data, labels, model.classes, B).value,
          { rtol: RTOL },
          "margins",
        );
        expect(layers.length).toBeGreaterThan(1);
        f.release();
        [phi, margins, correct].forEach((t) => t.release());
      });
    }
  }
});
