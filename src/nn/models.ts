// Models described as data: a config names the architecture and its sizes, so a checkpoint's metadata
// rebuilds the model. Parameters are initialised from the counter-based generator (seed, parameter index),
// so a seed gives the same model on every device and in the CPU twin.
import { z } from "zod";
import { rngUniform } from "../../kernels/random.ts";
import type { Runtime } from "../gpu/runtime.ts";
import {
  BatchNorm,
  Conv2d,
  Dense,
  Flatten,
  GlobalPool,
  type Layer,
  MaxPool2,
  type Param,
  Relu,
  Residual,
  Scale,
  Sequential,
} from "./layers.ts";

const count = z.number().int().positive();
/** One layer of a network described as data (`kind: "layers"`); parameters are named `name` or by position. */
export type LayerSpec =
  | { type: "conv"; out: number; kernel?: number; stride?: number; padding?: number; bias?: boolean; name?: string }
  | { type: "batchnorm"; name?: string }
  | { type: "relu" }
  | { type: "maxpool" }
  | { type: "globalpool"; kind?: "max" | "avg" }
  | { type: "flatten" }
  | { type: "dense"; out: number; bias?: boolean; name?: string }
  | { type: "scale"; factor: number }
  | { type: "residual"; layers: LayerSpec[] };
export const LayerSpec: z.ZodType<LayerSpec> = z.lazy(() =>
  z.discriminatedUnion("type", [
    z.object({
      type: z.literal("conv"),
      out: count.describe("output channels"),
      kernel: count.default(3).describe("square kernel side"),
      stride: count.default(1),
      padding: z.number().int().min(0).optional().describe("zero padding (default kernel / 2, rounded down)"),
      bias: z.boolean().default(false).describe("a bias per output channel (off when batch norm follows)"),
      name: z.string().optional(),
    }).strict(),
    z.object({ type: z.literal("batchnorm"), name: z.string().optional() }).strict(),
    z.object({ type: z.literal("relu") }).strict(),
    z.object({ type: z.literal("maxpool") }).strict().describe("2x2, stride 2"),
    z.object({ type: z.literal("globalpool"), kind: z.enum(["max", "avg"]).default("max") }).strict(),
    z.object({ type: z.literal("flatten") }).strict(),
    z.object({ type: z.literal("dense"), out: count, bias: z.boolean().default(true), name: z.string().optional() })
      .strict(),
    z.object({ type: z.literal("scale"), factor: z.number() }).strict(),
    z.object({ type: z.literal("residual"), layers: z.array(LayerSpec).min(1) }).strict().describe(
      "x + layers(x); the layers must keep the shape",
    ),
  ]) as z.ZodType<LayerSpec>
);

export const ModelConfig = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("mlp"),
    input: z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]),
    classes: z.number().int().min(2),
    hidden: z.array(z.number().int().positive()).default([256]),
  }),
  z.object({
    kind: z.literal("small-cnn"),
    input: z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]),
    classes: z.number().int().min(2),
    /** Channels of the conv-bn-relu-pool stages. */
    widths: z.array(z.number().int().positive()).default([32, 64, 128]),
    batchNorm: z.boolean().default(true),
  }),
  z.object({
    kind: z.literal("resnet9"),
    input: z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]),
    classes: z.number().int().min(2),
    /** Stem, stage 1, stage 2, stage 3 widths (64, 128, 256, 512 in the standard network). */
    widths: z.tuple([z.number().int(), z.number().int(), z.number().int(), z.number().int()]).default([
      64,
      128,
      256,
      512,
    ]),
    /** Logit scale of the standard CIFAR ResNet-9. */
    scale: z.number().default(0.125),
  }),
  z.object({
    kind: z.literal("layers"),
    input: z.tuple([z.number().int().positive(), z.number().int().positive(), z.number().int().positive()]),
    classes: z.number().int().min(2),
    /** The network, first layer first; it must end in [classes] logits (a dense layer of `classes` outputs). */
    layers: z.array(LayerSpec).min(1),
  }),
]);
export type ModelConfig = z.input<typeof ModelConfig>;
type Parsed = z.output<typeof ModelConfig>;

export interface Model {
  config: Parsed;
  net: Sequential;
  params: Param[];
  /** [C, H, W] of one input image. */
  input: [number, number, number];
  classes: number;
}

class ParamFactory {
  params: Param[] = [];
  constructor(readonly rt: Runtime, readonly seed: number) {}
  make(name: string, shape: number[], init: (i: number, u: number) => number, trainable = true): Param {
    const n = shape.reduce((a, b) => a * b, 1);
    const stream = this.params.length;
    const host = new Float64Array(n);
    for (let i = 0; i < n; i++) host[i] = Math.fround(init(i, rngUniform(this.seed, stream, i)));
    const p: Param = { name, shape, value: this.rt.upload(Float32Array.from(host), shape), host, trainable };
    this.params.push(p);
    return p;
  }
  /** He-uniform for layers followed by relu: U(-sqrt(6/fan_in), sqrt(6/fan_in)). */
  he(name: string, shape: number[], fanIn: number): Param {
    const b = Math.sqrt(6 / fanIn);
    return this.make(name, shape, (_, u) => (2 * u - 1) * b);
  }
  /** PyTorch's default for linear layers and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
  lecun(name: string, shape: number[], fanIn: number): Param {
    const b = 1 / Math.sqrt(fanIn);
    return this.make(name, shape, (_, u) => (2 * u - 1) * b);
  }
  constant(name: string, shape: number[], v: number, trainable = true): Param {
    return this.make(name, shape, () => v, trainable);
  }
}

/** Builds `specs` on an input of `shape` ([C, N, H, W] with N = 1), creating parameters in order. */
function buildLayers(f: ParamFactory, specs: LayerSpec[], shape: number[], prefix: string): Layer[] {
  return fuseRelus(specs.map((raw, i) => {
    const spec = LayerSpec.parse(raw) as Required<Exclude<LayerSpec, { type: "residual" }>> | LayerSpec;
    const name = ("name" in spec && spec.name) || `${prefix}${i}`;
    let layer: Layer;
    switch (spec.type) {
      case "conv": {
        const k = spec.kernel ?? 3;
        const fan = shape[0] * k * k;
        const w = f.he(`${name}.weight`, [spec.out, fan], fan);
        const geom = { kh: k, kw: k, stride: spec.stride ?? 1, pad: spec.padding ?? Math.floor(k / 2) };
        layer = new Conv2d(
          shape[0],
          spec.out,
          geom,
          w,
          spec.bias ? f.lecun(`${name}.bias`, [spec.out], fan) : undefined,
        );
        break;
      }
      case "batchnorm": {
        const c = shape[0];
        layer = new BatchNorm(
          c,
          f.constant(`${name}.weight`, [c], 1),
          f.constant(`${name}.bias`, [c], 0),
          f.constant(`${name}.running_mean`, [c], 0, false),
          f.constant(`${name}.running_var`, [c], 1, false),
        );
        break;
      }
      case "relu":
        layer = new Relu();
        break;
      case "maxpool":
        layer = new MaxPool2();
        break;
      case "globalpool":
        layer = new GlobalPool(spec.kind ?? "max");
        break;
      case "flatten":
        layer = new Flatten();
        break;
      case "dense": {
        if (shape.length !== 2) {
          throw new Error(`model layer ${name}: dense needs flat input (add flatten or globalpool first)`);
        }
        const fin = shape[0];
        layer = new Dense(
          fin,
          spec.out,
          f.lecun(`${name}.weight`, [spec.out, fin], fin),
          spec.bias ?? true ? f.lecun(`${name}.bias`, [spec.out], fin) : undefined,
        );
        break;
      }
      case "scale":
        layer = new Scale(spec.factor);
        break;
      case "residual": {
        const inner = [...shape];
        const block = new Sequential(buildLayers(f, spec.layers, inner, `${name}.`));
        if (inner.join() !== shape.join()) {
          throw new Error(`model layer ${name}: a residual block must keep its shape (${shape} -> ${inner})`);
        }
        layer = new Residual(block);
        break;
      }
    }
    const out = layer.outShape(shape);
    if (out.some((d) => !(d >= 1))) {
      throw new Error(`model layer ${name} (${spec.type}): output shape [${out}] is empty`);
    }
    shape.splice(0, shape.length, ...out);
    return layer;
  }));
}

/** A relu right after a batch norm runs inside it: one pass over the activations instead of three. */
function fuseRelus(layers: Layer[]): Layer[] {
  const fused: Layer[] = [];
  for (const layer of layers) {
    const last = fused.at(-1);
    if (layer instanceof Relu && last instanceof BatchNorm && !last.relu) last.relu = true;
    else fused.push(layer);
  }
  return fused;
}

/** small-cnn and resnet9 as layer lists (their parameter names are the ones their checkpoints carry). */
export function layersOf(cfg: Exclude<Parsed, { kind: "mlp" | "layers" }>): LayerSpec[] {
  const conv = (name: string, out: number, bn = true): LayerSpec[] =>
    bn
      ? [{ type: "conv", out, name: `${name}.conv` }, { type: "batchnorm", name: `${name}.bn` }, { type: "relu" }]
      : [{ type: "conv", out, bias: true, name: `${name}.conv` }, { type: "relu" }];
  if (cfg.kind === "small-cnn") {
    return [
      ...cfg.widths.flatMap((w, i): LayerSpec[] => [...conv(`stage${i}`, w, cfg.batchNorm), { type: "maxpool" }]),
      { type: "globalpool", kind: "max" },
      { type: "dense", out: cfg.classes, name: "head" },
    ];
  }
  // The CIFAR-10 ResNet-9 of the fast-training and datamodels/TRAK work: conv-bn-relu stem; stage 1
  // conv + pool + residual(2 convs); stage 2 conv + pool; stage 3 conv + pool + residual; global max
  // pool head; linear classifier without bias; logits scaled by 1/8.
  const [w0, w1, w2, w3] = cfg.widths;
  const res = (name: string, w: number): LayerSpec => ({
    type: "residual",
    layers: [...conv(`${name}.0`, w), ...conv(`${name}.1`, w)],
  });
  return [
    ...conv("prep", w0),
    ...conv("layer1", w1),
    { type: "maxpool" },
    res("layer1.res", w1),
    ...conv("layer2", w2),
    { type: "maxpool" },
    ...conv("layer3", w3),
    { type: "maxpool" },
    res("layer3.res", w3),
    { type: "globalpool", kind: "max" },
    { type: "dense", out: cfg.classes, bias: false, name: "head" },
    { type: "scale", factor: cfg.scale },
  ];
}

export function buildModel(rt: Runtime, config: ModelConfig, seed: number): Model {
  const cfg = ModelConfig.parse(config);
  const f = new ParamFactory(rt, seed);
  const [c, h, w] = cfg.input;
  let layers: Layer[];
  if (cfg.kind === "mlp") {
    let fin = c * h * w;
    layers = [new Flatten()];
    cfg.hidden.forEach((hid, i) => {
      layers.push(
        new Dense(fin, hid, f.he(`fc${i}.weight`, [hid, fin], fin), f.lecun(`fc${i}.bias`, [hid], fin)),
        new Relu(),
      );
      fin = hid;
    });
    layers.push(
      new Dense(
        fin,
        cfg.classes,
        f.lecun("head.weight", [cfg.classes, fin], fin),
        f.lecun("head.bias", [cfg.classes], fin),
      ),
    );
  } else {
    const shape = [c, 1, h, w];
    layers = buildLayers(f, cfg.kind === "layers" ? cfg.layers : layersOf(cfg), shape, "");
    if (shape.length !== 2 || shape[0] !== cfg.classes) {
      throw new Error(`model: the layers end in shape [${shape}], not ${cfg.classes} logits (end with a dense layer)`);
    }
  }
  const net = new Sequential(layers);
  return { config: cfg, net, params: net.allParams(), input: cfg.input, classes: cfg.classes };
}

export function parameterCount(m: Model): number {
  return m.params.filter((p) => p.trainable).reduce((s, p) => s + p.value.size, 0);
}

/** Free a model's device memory: its parameters and their optimiser state. */
export function releaseModel(model: Model): void {
  for (const p of model.params) {
    p.value.release();
    p.velocity?.release();
    p.grad?.release();
  }
}
