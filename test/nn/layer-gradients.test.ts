import { describe, expect, it } from "vitest";
import {
  BatchNorm,
  Conv2d,
  Dense,
  Flatten,
  GlobalPool,
  type Layer,
  MaxPool2,
  type Mode,
  type Param,
  Relu,
  Residual,
  Scale,
  Sequential,
} from "../../src/nn/layers.ts";
import type { Runtime } from "../../src/gpu/runtime.ts";
import { testRuntime } from "../support/gpu.ts";
import { mulberry32, testSeed } from "../support/rng.ts";

// Finite differences on every layer's float64 twin: the analytic input and parameter gradients of a
// random linear functional of the output agree with central differences (h = 1e-6) to 1e-5 relative.
const H = 1e-6;
const TOL = 1e-5;

function param(rt: Runtime, rand: () => number, name: string, shape: number[], trainable = true): Param {
  const n = shape.reduce((a, b) => a * b, 1);
  const host = Float64Array.from({ length: n }, () => rand() * 2 - 1);
  return { name, shape, value: rt.upload(Float32Array.from(host), shape), host, trainable };
}

function check(layer: Layer, inShape: number[], rand: () => number, mode: Mode = "train"): number {
  const n = inShape.reduce((a, b) => a * b, 1);
  const x = Float64Array.from({ length: n }, () => rand() * 4 - 2);
  const y0 = layer.forwardRef({ shape: inShape, data: x }, mode);
  const r = Float64Array.from(y0.data, () => rand() * 2 - 1);
  const dx = layer.backwardRef({ shape: y0.shape, data: r }).data;
  const f = () => layer.forwardRef({ shape: inShape, data: x }, mode).data.reduce((s, v, i) => s + v * r[i], 0);
  let worst = 0;
  const probe = (arr: Float64Array, j: number, analytic: number) => {
    const keep = arr[j];
    arr[j] = keep + H;
    const up = f();
    arr[j] = keep - H;
    const dn = f();
    arr[j] = keep;
    const fd = (up - dn) / (2 * H);
    worst = Math.max(worst, Math.abs(fd - analytic) / Math.max(1, Math.abs(fd)));
  };
  for (let t = 0; t < 12; t++) {
    const j = Math.floor(rand() * n);
    probe(x, j, dx[j]);
  }
  for (const p of layer.allParams().filter((q) => q.trainable && mode === "train")) {
    const g = p.hostGrad!;
    for (let t = 0; t < 6; t++) {
      const j = Math.floor(rand() * p.host!.length);
      probe(p.host!, j, g[j]);
    }
  }
  return worst;
}

describe("layer gradients (float64 twins) match finite differences", () => {
  const cases: [string, (rt: Runtime, r: () => number) => Layer, number[]][] = [
    ["dense", (rt, r) => new Dense(7, 5, param(rt, r, "w", [5, 7]), param(rt, r, "b", [5])), [7, 3]],
    [
      "conv 3x3 stride 2",
      (rt, r) =>
        new Conv2d(2, 3, { kh: 3, kw: 3, stride: 2, pad: 1 }, param(rt, r, "w", [3, 18]), param(rt, r, "b", [3])),
      [2, 2, 7, 5],
    ],
    ["conv 1x1", (rt, r) => new Conv2d(3, 2, { kh: 1, kw: 1, stride: 1, pad: 0 }, param(rt, r, "w", [2, 3])), [
      3,
      2,
      3,
      4,
    ]],
    [
      "batch norm",
      (rt, r) =>
        new BatchNorm(
          3,
          param(rt, r, "g", [3]),
          param(rt, r, "b", [3]),
          param(rt, r, "m", [3], false),
          param(rt, r, "v", [3], false),
        ),
      [3, 2, 3, 3],
    ],
    [
      "batch norm with its relu fused",
      (rt, r) => {
        const bn = new BatchNorm(
          3,
          param(rt, r, "g", [3]),
          param(rt, r, "b", [3]),
          param(rt, r, "m", [3], false),
          param(rt, r, "v", [3], false),
        );
        bn.relu = true;
        return bn;
      },
      [3, 2, 3, 3],
    ],
    ["relu", () => new Relu(), [2, 3, 4, 3]],
    ["scale", () => new Scale(0.125), [4, 5]],
    ["max pool 2x2", () => new MaxPool2(), [2, 3, 5, 6]],
    ["global max pool", () => new GlobalPool("max"), [3, 2, 3, 5]],
    ["global avg pool", () => new GlobalPool("avg"), [3, 2, 3, 5]],
    ["flatten", () => new Flatten(), [3, 2, 2, 3]],
    [
      "residual(conv, relu)",
      (rt, r) =>
        new Residual(
          new Sequential([
            new Conv2d(2, 2, { kh: 3, kw: 3, stride: 1, pad: 1 }, param(rt, r, "w", [2, 18])),
            new Relu(),
          ]),
        ),
      [2, 2, 4, 3],
    ],
  ];
  it("batch norm in grad mode (running statistics, as attribution uses it)", async () => {
    const rt = await testRuntime();
    const rand = mulberry32(testSeed("gradient batch norm grad mode"));
    const bn = new BatchNorm(
      3,
      param(rt, rand, "g", [3]),
      param(rt, rand, "b", [3]),
      param(rt, rand, "m", [3], false),
      param(rt, rand, "v", [3], false),
    );
    bn.runningVar.host = bn.runningVar.host!.map((v) => 0.5 + Math.abs(v));
    expect(check(bn, [3, 2, 3, 3], rand, "grad")).toBeLessThan(TOL);
  });
  for (const [name, make, shape] of cases) {
    it(name, async () => {
      const rt = await testRuntime();
      const rand = mulberry32(testSeed(`gradient ${name}`));
      expect(check(make(rt, rand), shape, rand)).toBeLessThan(TOL);
    });
  }
});
