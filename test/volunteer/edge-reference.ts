// The reference for test/volunteer/edge-volunteers.node.test.ts, in Deno on llvmpipe (Node's Dawn takes
// no lavapipe): writes a small dataset as DIR/data.npz (400 CIFAR-10 training images, 300 test images),
// autotunes the matmul tiles (cached on disk: the volunteer processes started after use the same ones) and
// runs runDetect on the TRAK job's settings. Prints one line: RESULT {"scores": [...], "auroc": a}.
// Usage: deno run -A test/volunteer/edge-reference.ts DIR SEED
import "../../kernels/index.ts";
import { autotuneMatmul } from "../../kernels/matmul.ts";
import { DEFAULT_DATA, loadCifar10 } from "../../src/data/cifar.ts";
import { seededSubset } from "../../src/data/dataset.ts";
import { writeData } from "../../src/data/formats.ts";
import { runDetect } from "../../src/detect/pipeline.ts";
import { getRuntime } from "../../src/gpu/runtime.ts";
import { args } from "../../src/platform.ts";
import { EDGE_JOB } from "./fixtures.ts";

const [dir, seedArg] = args();
const seed = Number(seedArg);
const train = seededSubset(await loadCifar10(DEFAULT_DATA, { split: "train", limit: 2000 }), 400, seed);
await writeData(dir, "npz", train, await loadCifar10(DEFAULT_DATA, { split: "test", limit: 300 }));
const rt = await getRuntime();
await autotuneMatmul(rt);
const ref = await runDetect(rt, {
  ...EDGE_JOB,
  seed,
  data: `${dir}/data.npz`,
  cache: `${dir}/cache`,
  out: `${dir}/out`,
});
console.log(`RESULT ${JSON.stringify({ scores: Array.from(ref.scores), auroc: ref.summary.auroc })}`);
