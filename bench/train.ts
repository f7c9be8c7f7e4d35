// Training throughput (images/s) of our small CNN against the same architecture in tfjs-layers on
// tfjs-backend-webgpu, on the same adapter (tfjs is handed our GPUDevice) in the same process.
// Both run momentum SGD on batches of 128 random 32x32x3 images; each timed sample runs `reps` steps and
// ends with a completed readback.
import * as tf from "@tensorflow/tfjs-core";
import * as tfl from "@tensorflow/tfjs-layers";
import { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";
import { uploadDataset } from "../kernels/batch.ts";
import { autotuneMatmul } from "../kernels/matmul.ts";
import { getRuntime } from "../src/gpu/runtime.ts";
import { buildModel, type ModelConfig } from "../src/nn/models.ts";
import { trainModel } from "../src/nn/train.ts";
import { type BenchReport, timeMs } from "./harness.ts";

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

export async function run(args: { log?: (s: string) => void; models?: string[] }): Promise<BenchReport> {
  const rt = await getRuntime();
  await autotuneMatmul(rt, { log: args.log });
  tf.removeBackend("webgpu");
  tf.registerBackend("webgpu", () => new WebGPUBackend(rt.device), 10);
  await tf.setBackend("webgpu");
  const rows = [];
  const cfg: Extract<ModelConfig, { kind: "small-cnn" }> = {
    kind: "small-cnn",
    input: [3, 32, 32],
    classes: 10,
    widths: [32, 64, 128],
  };
  const n = B * 8;
  const images = Uint8Array.from({ length: n * 3 * 32 * 32 }, () => Math.floor(Math.random() * 256));
  const labels = Uint32Array.from({ length: n }, () => Math.floor(Math.random() * 10));

  const ds = uploadDataset(rt, { images, labels, n, c: 3, h: 32, w: 32 });
  const model = buildModel(rt, cfg, 0);
  const oursMs = await timeMs(async (reps) => {
    await trainModel(rt, model, ds, { epochs: reps / (n / B), batchSize: B, lr: 0.05 }); // ends with a readback
  }, { samples: 3, minMs: 2000 });
  const ours = B / (oursMs / 1000);
  args.log?.(`ours: ${oursMs.toFixed(1)} ms per batch of ${B} (${ours.toFixed(0)} img/s)`);

  const tm = tfjsModel(cfg);
  const opt = tf.train.momentum(0.05, 0.9, true);
  const x = tf.tensor4d(Float32Array.from(images.subarray(0, B * 3072), (v) => v / 255), [B, 32, 32, 3]);
  const y = tf.oneHot(tf.tensor1d(Array.from(labels.subarray(0, B)), "int32"), 10);
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
  rows.push({
    model: "small-cnn",
    ours_img_per_s: ours,
    peer: "tfjs-webgpu",
    peer_img_per_s: peer,
    ratio: ours / peer,
  });
  return { adapter: rt.adapterName, rows };
}
