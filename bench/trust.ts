// `npm run bench -- trust`: what the coordinator's checks of train results (server/jobs/train-shard.ts
// `spotCheckTrain`: margins, membership, segment replay) catch and cost, on a datamodels job of
// TRUST_TRAIN CIFAR-10 examples (default 1,000) with TRUST_SHARDS subset models (default 6), default recipe.
// The job kind's own check runs here, as the coordinator calls it, without HTTP (the tests cover that path).
// - Honest: each subset model trained on this adapter and, in a child process, on SwiftShader's Vulkan
//   driver where Debian's chromium ships it; every segment of every result replayed here (the largest
//   distance is printed), then the check the coordinator runs.
// - Cheating strategies, one forged result per shard: another subset's mask; the mask minus the poisoned
//   examples; another seed (a model not of the shard's run); honest model with forged margins.
//   caught: refused by the check a new volunteer gets (a random segment replayed). caught_proven: expected
//   refusals for a proven volunteer (the cheap checks, plus a replay with probability 0.1 or when suspect).
// - overhead: the check's time (replay included) over the training time, for a new and a proven volunteer.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { uploadDataset } from "../kernels/batch.ts";
import { autotuneMatmul } from "../kernels/matmul.ts";
import { datamodels, DatamodelsSpec } from "../server/jobs/datamodels.ts";
import { replayTrainResult, trainingSet } from "../server/jobs/train-shard.ts";
import { REPLAY_TOLERANCE } from "../src/nn/replay.ts";
import { maskIndices } from "../src/datamodels/masks.ts";
import { SWIFTSHADER_ICD } from "../src/gpu/device.ts";
import { getRuntime } from "../src/gpu/runtime.ts";
import { env, environment, execPath, spawnChild } from "../src/platform.ts";
import type { ArrayValue, ShardPlan } from "../src/protocol/job-kind.ts";
import { TrainPayload } from "../src/protocol/shards.ts";
import { trainResult } from "../src/volunteer/executors.ts";
import type { BenchReport } from "./harness.ts";

const REPLAY_FRACTION = 0.1; // the coordinator's default replayFraction
const OUT = "TRUST_HONEST_OUT"; // set: train the honest results only and write them there (the child)

type Result = Record<string, ArrayValue>;
const NO_INPUTS = { get: () => Promise.reject(new Error("train shards have no inputs")) };

const spec = () =>
  DatamodelsSpec.parse({
    train: Number(env("TRUST_TRAIN") ?? 1000),
    dmModels: Number(env("TRUST_SHARDS") ?? 6),
    ldsModels: 0,
    seed: 5,
  });

function save(dir: string, key: string, r: Result): void {
  for (const [name, a] of Object.entries(r)) {
    writeFileSync(join(dir, `${key.replace("/", "_")}.${name}.${a.dtype}`), a.data);
  }
}

function load(dir: string, key: string, like: Result): Result {
  const out: Result = {};
  for (const [name, a] of Object.entries(like)) {
    const b = readFileSync(join(dir, `${key.replace("/", "_")}.${name}.${a.dtype}`));
    const data = a.dtype === "f32" ? new Float32Array(b.buffer, b.byteOffset, b.length / 4) : new Uint8Array(b);
    out[name] = { dtype: a.dtype, shape: [data.length], data };
  }
  return out;
}

export async function run(args: { log?: (s: string) => void }): Promise<BenchReport> {
  const log = args.log ?? (() => {});
  const rt = await getRuntime();
  rt.poisonOutputs = false;
  await autotuneMatmul(rt);
  const s = spec();
  const shards = datamodels.plan(s).filter((sh) => sh.key.startsWith("subset/"));
  const { train, poisoned } = await trainingSet(s);
  const device = uploadDataset(rt, train);
  const n = train.n;
  const bad = new Set(poisoned ?? []);
  const payload = (sh: ShardPlan) => TrainPayload.parse(sh.payload);
  const own = (p: TrainPayload) =>
    maskIndices({ n, alpha: p.mask!.alpha, seed: p.mask!.seed }, p.mask!.split, p.mask!.model);
  const trainOn = (p: TrainPayload, indices: ArrayLike<number>) =>
    trainResult(rt, device, p, indices, { onProgress: () => {} });

  const out = env(OUT);
  if (out) {
    for (const sh of shards) save(out, sh.key, await trainOn(payload(sh), own(payload(sh))));
    return { adapter: rt.adapterName, rows: [] };
  }

  const honest: Result[] = [];
  let trainMs = 0;
  for (const sh of shards) {
    const t0 = performance.now();
    honest.push(await trainOn(payload(sh), own(payload(sh))));
    trainMs += performance.now() - t0;
    log(`honest ${sh.key} trained on ${rt.adapterName}`);
  }
  trainMs /= shards.length;
  const adapters: [string, Result[]][] = [[rt.adapterName, honest]];
  const notes: string[] = [];
  if (readFileSafe(SWIFTSHADER_ICD)) {
    const dir = mkdtempSync(join(tmpdir(), "trust-"));
    log("honest results on SwiftShader, in a child process (minutes)");
    const child = await spawnChild(execPath(), ["run", "-A", "--no-check", "src/cli/run.ts", "bench", "trust"], {
      cwd: new URL("../", import.meta.url).pathname,
      env: { ...(environment() as Record<string, string>), [OUT]: dir, VK_ICD_FILENAMES: SWIFTSHADER_ICD },
    });
    const drain = async (s: AsyncIterable<Uint8Array>) => {
      for await (const _ of s) { /* the child's progress and report */ }
    };
    await Promise.all([drain(child.stdout), drain(child.stderr)]);
    if ((await child.exited).code === 0) {
      adapters.push(["SwiftShader", shards.map((sh, i) => load(dir, sh.key, honest[i]))]);
    } else notes.push("the SwiftShader child failed: honest results of one adapter only");
    rmSync(dir, { recursive: true, force: true });
  } else notes.push(`no ${SWIFTSHADER_ICD}: honest results of one adapter only`);

  // Every segment of every honest result replayed; then the check as the coordinator runs it (one replay).
  let honestShards = 0, refused = 0, replays = 0, over = 0, checkMs = 0;
  const largest: number[] = [];
  const segments = payload(shards[0]).segments;
  for (const [name, results] of adapters) {
    let most = 0;
    for (let i = 0; i < shards.length; i++) {
      honestShards++;
      for (let seg = 0; seg < segments; seg++) {
        const r = await replayTrainResult(s, payload(shards[i]), results[i], seg);
        replays++;
        most = Math.max(most, r.relative);
        if (!(r.relative <= REPLAY_TOLERANCE)) over++;
      }
      const t0 = performance.now();
      const reason = await datamodels.spotCheck(s, shards[i], results[i], NO_INPUTS, i, { replay: true });
      checkMs += performance.now() - t0;
      if (reason) {
        refused++;
        log(`honest ${name} ${shards[i].key} refused: ${reason}`);
      }
    }
    largest.push(most);
  }
  checkMs /= honestShards;

  const strategies: [string, (sh: ShardPlan, i: number) => Promise<Result>][] = [
    ["other-mask", (sh) => {
      const p = payload(sh);
      return trainOn(
        p,
        maskIndices({ n, alpha: p.mask!.alpha, seed: p.mask!.seed }, p.mask!.split, p.mask!.model + 1000),
      );
    }],
    ["minus-poisons", (sh) => trainOn(payload(sh), own(payload(sh)).filter((j) => !bad.has(j)))],
    ["other-seed", (sh) => trainOn({ ...payload(sh), seed: payload(sh).seed + 1 }, own(payload(sh)))],
    ["forged-margins", (_sh, i) => {
      const m = Float32Array.from(honest[i].margins.data as Float32Array, (v, j) => (bad.has(j) ? v + 2 : v));
      return Promise.resolve({ ...honest[i], margins: { ...honest[i].margins, data: m } });
    }],
  ];
  const rows: Record<string, number | string>[] = [];
  for (const [strategy, forge] of strategies) {
    let caught = 0, caughtProven = 0;
    for (let i = 0; i < shards.length; i++) {
      const r = await forge(shards[i], i);
      const seed = 7 + i;
      const check = (replay: boolean) =>
        datamodels.spotCheck(s, shards[i], r, { get: () => Promise.reject() }, seed, { replay });
      const cheap = await check(false);
      const replayed = cheap ?? await check(true);
      if (replayed) caught++;
      // A proven volunteer: refused by the cheap checks (membership suspicion replays), else by a replay drawn
      // with probability REPLAY_FRACTION.
      caughtProven += cheap ? 1 : replayed ? REPLAY_FRACTION : 0;
      log(`${strategy} ${shards[i].key}: ${replayed ?? "accepted"}`);
    }
    rows.push({
      strategy,
      forged: shards.length,
      caught,
      wrongly_accepted: shards.length - caught,
      caught_proven: caughtProven,
      overhead: checkMs / trainMs,
      overhead_proven: (REPLAY_FRACTION * checkMs) / trainMs,
    });
  }
  notes.push(
    `job: datamodels, n = ${n}, ${shards.length} subset models, ${segments} segments of at most ${s.segmentSteps} ` +
      `steps; training ${(trainMs / 1000).toFixed(1)} s a model, a check with one replayed segment ` +
      `${(checkMs / 1000).toFixed(2)} s`,
    `honest: ${honestShards} results on ${adapters.map((a) => a[0]).join(" and ")}: ${refused} refused by the ` +
      `check; every segment replayed (${replays} replays): ${over} over the tolerance ${REPLAY_TOLERANCE}, largest ` +
      `relative distance ${largest.map((x) => x.toExponential(2)).join(" and ")}`,
  );
  return {
    adapter: rt.adapterName,
    rows,
    notes,
    extra: { honest: { shards: honestShards, refused, segments_replayed: replays, segments_over: over } },
  };
}

function readFileSafe(path: string): boolean {
  try {
    readFileSync(path);
    return true;
  } catch {
    return false;
  }
}
