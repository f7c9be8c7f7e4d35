// Models described as data: a config names the architecture and its sizes, so a checkpoint's metadata
// rebuilds the model. Parameters are initialised from the counter-based generator (seed, parameter index),
// so a seed gives the same model on every device and in the CPU twin.
import { z } from "zod";
import { rngUniform } from "../../kernels/random.ts";
import type { ConvGeom } from "../../kernels/conv2d.ts";
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

const CONV3: ConvGeom = { kh: 3, kw: 3, stride: 1, pad: 1 };

function convBnRelu(f: ParamFactory, name: string, cin: number, cout: number, bn = true): Layer[] {
  const fan = cin * 9;
  const w = f.he(`${name}.conv.weight`, [cout, cin * 9], fan);
  if (!bn) return [new Conv2d(cin, cout, CONV3, w, f.lecun(`${name}.conv.bias`, [cout], fan)), new Relu()];
  const norm = new BatchNorm(
    cout,
    f.constant(`${name}.bn.weight`, [cout], 1),
    f.constant(`${name}.bn.bias`, [cout], 0),
    f.constant(`${name}.bn.running_mean`, [cout], 0, false),
    f.constant(`${name}.bn.running_var`, [cout], 1, false),
  );
  return [new Conv2d(cin, cout, CONV3, w), norm, new Relu()];
}

export function buildModel(rt: Runtime, config: ModelConfig, seed: number): Model {
  const cfg = ModelConfig.parse(config);
  const f = new ParamFactory(rt, seed);
  const [c, h, w] = cfg.input;
  const layers: Layer[] = [];
  if (cfg.kind === "mlp") {
    let fin = c * h * w;
    layers.push(new Flatten());
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
  } else if (cfg.kind === "small-cnn") {
    let cin = c;
    cfg.widths.forEach((width, i) => {
      layers.push(...convBnRelu(f, `stage${i}`, cin, width, cfg.batchNorm), new MaxPool2());
      cin = width;
    });
    layers.push(
      new GlobalPool("max"),
      new Dense(
        cin,
        cfg.classes,
        f.lecun("head.weight", [cfg.classes, cin], cin),
        f.lecun("head.bias", [cfg.classes], cin),
      ),
    );
  } else {
    // The CIFAR-10 ResNet-9 of the fast-training and datamodels/TRAK work: conv-bn-relu stem; stage 1
    // conv + pool + residual(2 convs); stage 2 conv + pool; stage 3 conv + pool + residual; global max
    // pool head; linear classifier without bias; logits scaled by 1/8.
    const [w0, w1, w2, w3] = cfg.widths;
    const res = (name: string, ch: number) =>
      new Residual(new Sequential([...convBnRelu(f, `${name}.0`, ch, ch), ...convBnRelu(f, `${name}.1`, ch, ch)]));
    layers.push(...convBnRelu(f, "prep", c, w0));
    layers.push(...convBnRelu(f, "layer1", w0, w1), new MaxPool2(), res("layer1.res", w1));
    layers.push(...convBnRelu(f, "layer2", w1, w2), new MaxPool2());
    layers.push(...convBnRelu(f, "layer3", w2, w3), new MaxPool2(), res("layer3.res", w3));
    layers.push(
      new GlobalPool("max"),
      new Dense(w3, cfg.classes, f.lecun("head.weight", [cfg.classes, w3], w3)),
      new Scale(cfg.scale),
    );
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
