// Training throughput (images/s) of our network (--model, default the small CNN) against the same
// architecture in tfjs-layers on tfjs-backend-webgpu, on the same adapter (tfjs is handed our GPUDevice) in
// the same process, and in PyTorch (bench/peers/torch_peer.py: every core, or TORCH_DEVICE=cuda).
// All run momentum SGD on batches of random 32x32x3 images; each timed sample runs `reps` steps and ends
// with a completed readback. `--sizes N` times one whole epoch of N images instead (50000: a CIFAR-10 epoch).
import * as tf from "@tensorflow/tfjs-core";
import * as tfl from "@tensorflow/tfjs-layers";
import { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";
import { type DeviceDataset, releaseDataset, uploadDataset } from "../kernels/batch.ts";
import { autotuneMatmul } from "../kernels/matmul.ts";
import { getRuntime, type Runtime } from "../src/gpu/runtime.ts";
import { buildModel, type Model, type ModelConfig } from "../src/nn/models.ts";
import { trainModel } from "../src/nn/train.ts";
import { BENCH_MODELS, type BenchReport, timeMs, torchPeer } from "./harness.ts";

const B = 128;

function tfjsModel(cfg: Extract<ModelConfig, { kind: "small-cnn" }>): tfl.LayersModel {
  const m = tfl.sequential();
  const [c, h, w] = cfg.input;
  (cfg.widths ?? [32, 64, 128]).forEach((width, i) => {
    m.add(
      tfl.layers.conv2d({
        filters: width,
        kernelSize: 3,
        padding: "same",
        useBias: false,
        ...(i === 0 ? { inputShape: [h, w, c] } : {}),
      }),
    );
    m.add(tfl.layers.batchNormalization());
    m.add(tfl.layers.reLU());
    m.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
  });
  m.add(tfl.layers.globalMaxPooling2d({}));
  m.add(tfl.layers.dense({ units: cfg.classes }));
  return m;
}

export async function run(
  args: { log?: (s: string) => void; model?: string; sizes?: number[]; profile?: boolean },
): Promise<BenchReport> {
  const rt = await getRuntime();
  await autotuneMatmul(rt, { log: args.log });
  tf.removeBackend("webgpu");
  tf.registerBackend("webgpu", () => new WebGPUBackend(rt.device), 10);
  await tf.setBackend("webgpu");
  const rows = [];
  const notes = [];
  const name = (args.model ?? "small-cnn") as keyof typeof BENCH_MODELS;
  const cfg: ModelConfig = BENCH_MODELS[name];
  const random = (count: number) => ({
    images: Uint8Array.from({ length: count * 3 * 32 * 32 }, () => Math.floor(Math.random() * 256)),
    labels: Uint32Array.from({ length: count }, () => Math.floor(Math.random() * 10)),
    n: count,
    c: 3,
    h: 32,
    w: 32,
  });
  const n = B * 8;
  const small = random(n);
  const model = buildModel(rt, cfg, 0);
  let oursMs: number;
  const epochImages = args.sizes?.[0];
  if (epochImages) {
    // One whole epoch (50000: CIFAR-10's), after one warm-up batch that compiles every pipeline.
    const ds = uploadDataset(rt, random(epochImages));
    await trainModel(rt, model, ds, { epochs: 1, batchSize: B, lr: 0.05 }, { indices: new Uint32Array(B) });
    const t0 = performance.now();
    await trainModel(rt, model, ds, { epochs: 1, batchSize: B, lr: 0.05 });
    const s = (performance.now() - t0) / 1000;
    releaseDataset(ds);
    oursMs = (1000 * s) / Math.ceil(epochImages / B);
    notes.push(`${name}: one epoch of ${epochImages} random images, batch ${B}: ${s.toFixed(1)} s`);
  } else {
    const ds = uploadDataset(rt, small);
    oursMs = await timeMs(async (reps) => {
      await trainModel(rt, model, ds, { epochs: reps / (n / B), batchSize: B, lr: 0.05 }); // ends with a readback
    }, { samples: 3, minMs: 2000 });
    releaseDataset(ds);
  }
  const ours = B / (oursMs / 1000);
  args.log?.(`ours: ${oursMs.toFixed(1)} ms per batch of ${B} (${ours.toFixed(0)} img/s)`);
  const row = (peer: string, peerImgPerS: number) => ({
    model: name,
    ours_img_per_s: ours,
    peer,
    peer_img_per_s: peerImgPerS,
    ratio: ours / peerImgPerS,
  });

  const profile = args.profile ? await profileSteps(rt, model, uploadDataset(rt, small), n / B) : undefined;
  if (profile) notes.push(...profile.lines);

  const torch = torchPeer("train", cfg, { batch: B, log: args.log });
  if (typeof torch === "string") notes.push(torch);
  else rows.push(row(`pytorch-${torch.device}`, torch.img_per_s!));
  if (cfg.kind !== "small-cnn") {
    notes.push("tfjs row: small-cnn only");
    return { adapter: rt.adapterName, rows, notes, extra: profile && { profile: profile.rows } };
  }

  const tm = tfjsModel(cfg);
  const opt = tf.train.momentum(0.05, 0.9, true);
  const x = tf.tensor4d(Float32Array.from(small.images.subarray(0, B * 3072), (v) => v / 255), [B, 32, 32, 3]);
  const y = tf.oneHot(tf.tensor1d(Array.from(small.labels.subarray(0, B)), "int32"), 10);
  const peerMs = await timeMs(async (reps) => {
    let last: tf.Scalar | null = null;
    for (let r = 0; r < reps; r++) {
      last?.dispose();
      last = opt.minimize(
        () => tf.losses.softmaxCrossEntropy(y, tm.apply(x, { training: true }) as tf.Tensor),
        true,
      ) as tf.Scalar;
    }
    await last!.data();
    last!.dispose();
  }, { samples: 3, minMs: 2000 });
  const peer = B / (peerMs / 1000);
  args.log?.(`tfjs: ${peerMs.toFixed(1)} ms per batch (${peer.toFixed(0)} img/s)`);
  rows.push(row("tfjs-webgpu", peer));
  return { adapter: rt.adapterName, rows, notes, extra: profile && { profile: profile.rows } };
}

/** Device time per kernel label over `steps` training steps (one epoch of `ds`), largest first. */
async function profileSteps(rt: Runtime, model: Model, ds: DeviceDataset, steps: number) {
  await rt.sync();
  if (!rt.startProfile()) return { rows: [], lines: ["profile: this adapter has no timestamp queries"] };
  await trainModel(rt, model, ds, { epochs: 1, batchSize: B, lr: 0.05 });
  const times = [...(await rt.stopProfile()).entries()].sort((a, b) => b[1].ms - a[1].ms);
  releaseDataset(ds);
  const total = times.reduce((s, [, t]) => s + t.ms, 0);
  const rows = times.map(([kernel, t]) => ({
    kernel,
    ms_per_step: t.ms / steps,
    share: t.ms / total,
    dispatches_per_step: t.count / steps,
  }));
  const lines = [
    `profile: ${(total / steps).toFixed(1)} ms of kernels per step of ${B} (device time, one pass per dispatch)`,
    ...rows.slice(0, 15).map((r) =>
      `  ${r.kernel.padEnd(34)} ${r.ms_per_step.toFixed(2).padStart(8)} ms ${(100 * r.share).toFixed(1).padStart(5)}%` +
      `  x${r.dispatches_per_step.toFixed(0)}`
    ),
  ];
  return { rows, lines };
}
