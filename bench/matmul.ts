// Our matmul against tfjs-backend-webgpu's matMul, same adapter, same process, square sizes.
import * as tf from "@tensorflow/tfjs-core";
import { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";
import { autotuneMatmul, chooseKernel, matmul, matmulProblem } from "../kernels/matmul.ts";
import { getRuntime } from "../src/gpu/runtime.ts";
import { type BenchReport, timeMs } from "./harness.ts";

export async function run(args: { sizes?: number[]; log?: (s: string) => void }): Promise<BenchReport> {
  const rt = await getRuntime();
  await autotuneMatmul(rt, { log: args.log });
  // tfjs on our device, so both run on the very same adapter.
  tf.removeBackend("webgpu");
  tf.registerBackend("webgpu", () => new WebGPUBackend(rt.device), 10);
  await tf.setBackend("webgpu");
  await tf.ready();
  const rows = [];
  for (const n of args.sizes ?? [256, 512, 1024, 2048]) {
    const data = () => Float32Array.from({ length: n * n }, () => Math.random() * 2 - 1);
    const [ad, bd] = [data(), data()];
    const a = rt.upload(ad, [n, n]);
    const b = rt.upload(bd, [n, n]);
    const ours = await timeMs(async (reps) => {
      let c;
      for (let r = 0; r < reps; r++) {
        c?.release();
        c = matmul(rt, a, b);
      }
      await rt.read(c!);
      c!.release();
    });
    const ta = tf.tensor2d(ad, [n, n]);
    const tb = tf.tensor2d(bd, [n, n]);
    const peer = await timeMs(async (reps) => {
      let c: tf.Tensor | undefined;
      for (let r = 0; r < reps; r++) {
        c?.dispose();
        c = tf.matMul(ta, tb);
      }
      await c!.data();
      c!.dispose();
    });
    ta.dispose();
    tb.dispose();
    a.release();
    b.release();
    const gflops = (ms: number) => (2 * n ** 3) / (ms * 1e6);
    const k = chooseKernel(matmulProblem([n, n], [n, n]));
    const variant = `${k.variant.name} ${JSON.stringify(k.tile)}`;
    args.log?.(`${n}: ours ${ours.toFixed(2)} ms (${variant}), tfjs ${peer.toFixed(2)} ms`);
    rows.push({
      size: n,
      ours_gflops: gflops(ours),
      peer: "tfjs-webgpu",
      peer_gflops: gflops(peer),
      ratio: peer / ours,
      ours_variant: variant,
    });
  }
  return { adapter: rt.adapterName, rows };
}
