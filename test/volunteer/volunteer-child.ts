// A volunteer in its own process for the tests of the coordinator's checks: the honest executors (matmul
// tiles not autotuned: the checks must hold across tiles and adapters) for its first HONEST train shards,
// then, unless MODE is honest, train results of other data uploaded with their own (consistent) states,
// or, in a ring, featurize results forged the same way by every member (so members agree with each other).
// Prints each worker event as a line.
// Usage: deno run -A test/volunteer/volunteer-child.ts SERVER_URL MODE HONEST DATASET_REF_JSON
//   honest         never cheats
//   other-mask     a datamodels subset shard trained on another subset's mask
//   minus-poisons  the shard's examples minus the poisoned ones (what the attacker wants the detector to see)
//   ring           trains honestly; its featurize results carry zero features for the poisoned examples
import process from "node:process";
import { uploadDataset } from "../../kernels/batch.ts";
import { maskIndices } from "../../src/datamodels/masks.ts";
import { buildTrainingSet } from "../../src/detect/training-set.ts";
import { getRuntime } from "../../src/gpu/runtime.ts";
import type { Executor } from "../../src/protocol/job-kind.ts";
import { DatasetRef, FEATURIZE, FeaturizePayload, TRAIN, TrainPayload } from "../../src/protocol/shards.ts";
import { datasetLoaders, downloadDataset } from "../../src/volunteer/dataset.ts";
import { trainResult, trakExecutors } from "../../src/volunteer/executors.ts";
import { runWorker } from "../../src/volunteer/loop.ts";

const [server, mode, honestArg, refJson] = process.argv.slice(2);
if (!["honest", "other-mask", "minus-poisons", "ring"].includes(mode)) throw new Error(`unknown mode ${mode}`);
const rt = await getRuntime();
const { loadTrainSplit, loadTestSplit } = datasetLoaders((name) => downloadDataset(server, name));
const honest = trakExecutors({ rt, loadTrainSplit, loadTestSplit, autotune: false });
let left = Number(honestArg);

// The job's training set, built before the worker starts: decoding blocks the event loop (and heartbeats).
const ref = DatasetRef.parse(JSON.parse(refJson));
const set = await buildTrainingSet(await loadTrainSplit(ref.data), ref);
const data = { device: uploadDataset(rt, set.train), poisoned: new Set(set.poisoned ?? []), n: set.train.n };

const cheat: Executor = async (payload, inputs, ctx) => {
  const p = TrainPayload.parse(payload);
  if (mode === "honest" || mode === "ring" || left-- > 0) return honest[TRAIN](payload, inputs, ctx);
  const { device, poisoned, n } = data;
  const own = p.mask
    ? maskIndices({ n, alpha: p.mask.alpha, seed: p.mask.seed }, p.mask.split, p.mask.model)
    : Uint32Array.from({ length: n }, (_, i) => i);
  const other = p.mask
    ? maskIndices({ n, alpha: p.mask.alpha, seed: p.mask.seed }, p.mask.split, p.mask.model + 1000)
    : own.slice(0, n >> 1);
  const indices = mode === "other-mask" ? other : own.filter((i) => !poisoned.has(i));
  console.log(`cheating on ${p.m}: ${indices.length} examples instead of ${own.length}`);
  return trainResult(rt, device, p, indices, ctx);
};

// The poisoned examples vanish from the features (and so from A): what the ring wants the detector to see.
const forgeFeatures: Executor = async (payload, inputs, ctx) => {
  const out = await honest[FEATURIZE](payload, inputs, ctx);
  if (mode !== "ring") return out;
  const { start, end } = FeaturizePayload.parse(payload);
  const k = out.phi.shape[1];
  const phi = Float32Array.from(out.phi.data as Float32Array);
  for (let i = start; i < end; i++) if (data.poisoned.has(i)) phi.fill(0, (i - start) * k, (i - start + 1) * k);
  console.log(`forged ${end - start} rows from ${start}`);
  return { ...out, phi: { ...out.phi, data: phi } };
};

await runWorker({
  server,
  executors: { ...honest, [TRAIN]: cheat, [FEATURIZE]: forgeFeatures },
  name: mode,
  idleMs: 100,
  onProgress: (e) => {
    if (e.type === "submitted") console.log(`submitted ${e.shard.key} ${e.status} ${e.reason ?? ""}`);
    else if (e.type === "error") console.log(`error ${e.message}`);
    else if (e.type === "registered") console.log(`registered ${e.volunteerId} on ${rt.adapterName}`);
  },
}).catch((e) => console.log(`stopped: ${(e as Error).message}`));
