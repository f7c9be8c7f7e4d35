// A training step's convolution (forward, dw and dx) as the Winograd kernels run it, against the direct path the
// layers take elsewhere (im2col, GEMM, split-K dw on the im2col, dx as an implicit convolution of dy), on the same
// adapter in the same process, at the small CNN's shapes (batch 128; `--sizes B` for another batch). GFLOP/s
// count the direct convolution's 3 x 2 O C 9 N H W flops for both, so the ratio is the speed-up.
import { conv2dBackward, conv2dForward, im2col } from "../kernels/conv2d.ts";
import { autotuneMatmul } from "../kernels/matmul.ts";
import { winogradBackward, winogradForward } from "../kernels/winograd.ts";
import { getRuntime, type Tensor } from "../src/gpu/runtime.ts";
import { type BenchReport, timeMs } from "./harness.ts";

const GEOM = { kh: 3, kw: 3, stride: 1, pad: 1 };
/** [C, O, H = W]: the small CNN's (32/64/128) convolutions that take Winograd, and the detect model's first. */
const CONVS = [[16, 32, 16], [32, 64, 16], [64, 128, 8]];

export async function run(args: { sizes?: number[]; log?: (s: string) => void }): Promise<BenchReport> {
  const rt = await getRuntime();
  await autotuneMatmul(rt, { log: args.log });
  const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
  const rows = [];
  for (const N of args.sizes ?? [128]) {
    for (const [C, O, H] of CONVS) {
      const x = rt.upload(random(C * N * H * H), [C, N, H, H]);
      const w = rt.upload(random(O * C * 9), [O, C * 9]);
      const dy = rt.upload(random(O * N * H * H), [O, N, H, H]);
      const time = (step: () => Tensor[]) =>
        timeMs(async (reps) => {
          for (let r = 0; r < reps; r++) {
            const out = step();
            if (r === reps - 1) await rt.read(out[0]);
            out.forEach((t) => t.release());
          }
        });
      const ours = await time(() => {
        const f = winogradForward(rt, x, w, true);
        const g = winogradBackward(rt, f.v!, w, dy);
        return [g.dx!, f.y, f.v!, g.dw];
      });
      const peer = await time(() => {
        const cols = im2col(rt, x, GEOM);
        const y = conv2dForward(rt, x, w, undefined, GEOM, { cols });
        const g = conv2dBackward(rt, x, w, dy, GEOM, { needDb: false, cols });
        return [g.dx!, y, cols, g.dw];
      });
      [x, w, dy].forEach((t) => t.release());
      const gflops = (ms: number) => (3 * 2 * O * C * 9 * N * H * H) / (ms * 1e6);
      const conv = `${C}->${O} at ${H}x${H}`;
      args.log?.(`${conv}, batch ${N}: winograd ${ours.toFixed(1)} ms, direct ${peer.toFixed(1)} ms`);
      rows.push({
        conv,
        batch: N,
        ours_gflops: gflops(ours),
        peer: "im2col-gemm",
        peer_gflops: gflops(peer),
        ratio: peer / ours,
      });
    }
  }
  return { adapter: rt.adapterName, rows };
}
