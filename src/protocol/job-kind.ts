// The plug-in interface between the coordinator (server/) and the job kinds (server/jobs/), and what a
// volunteer's executor is (src/volunteer/). Changes are additive only: running jobs and volunteers of an
// older version must keep working.
import type { z } from "zod";

export type DType = "f32" | "u32" | "i32" | "u8";

/** Shape fully known at plan time; u8 blobs (e.g. a checkpoint) may use shape [-1] = any length up to maxBytes. */
export interface ArraySpec {
  dtype: DType;
  shape: number[];
}

export interface ArrayValue {
  dtype: DType;
  shape: number[];
  data: Float32Array | Uint32Array | Int32Array | Uint8Array;
}

export interface ShardPlan {
  /** Unique within the job, e.g. "train/0", "featurize/0/0-500". */
  key: string;
  /** Executor name on the worker: "train" | "featurize" | "datamodel-train" | test kinds. */
  kind: string;
  /** JSON the executor needs (recipe, seeds, ranges, dataset description). */
  payload: unknown;
  /** Keys whose accepted results this shard needs as inputs. */
  deps: string[];
  /** What a result must contain (validated before storing). */
  outputs: Record<string, ArraySpec>;
  /** Cap for [-1]-shaped u8 outputs. */
  maxBytes?: number;
  /** true: replicate & compare (quorum 2); false: spot-check (validate). */
  deterministic: boolean;
}

/** Accepted results of a shard's dependencies (or of every shard, in finish). */
export interface Inputs {
  get(depKey: string, name: string): Promise<ArrayValue>;
}

/** What the coordinator asks of a spot check beyond its cheap checks, drawn per result (server/README.md). */
export interface CheckDepth {
  /** Replay a random training segment from the submitted states and compare (src/nn/replay.ts). */
  replay: boolean;
}

export interface JobKind<Spec = unknown> {
  /** "trak" | "datamodels" | ... */
  name: string;
  /** Validates the job-creation body. */
  spec: z.ZodType<Spec>;
  /** All shards up front (deps express ordering). */
  plan(spec: Spec): ShardPlan[];
  /** Deterministic shards: do two results agree within tolerance? */
  agree(shard: ShardPlan, a: Record<string, ArrayValue>, b: Record<string, ArrayValue>): boolean;
  /** Nondeterministic shards: spot check (e.g. re-evaluate a random sample of claimed margins on the
   *  submitted checkpoint with the float64 CPU twin). Return a reason string when invalid. */
  spotCheck(
    spec: Spec,
    shard: ShardPlan,
    result: Record<string, ArrayValue>,
    inputs: Inputs,
    seed: number,
    depth?: CheckDepth,
  ): Promise<string | null>;
  /** Deterministic shards: compute one here, to audit a result volunteers agreed on (or a trusted one's solo
   *  result); undefined where this coordinator cannot (a kind that needs WebGPU, on Node). Optional. */
  recompute?(spec: Spec, shard: ShardPlan, inputs: Inputs): Promise<Record<string, ArrayValue> | undefined>;
  /** All shards accepted: compute the final scores/report on the coordinator. Writes files under outDir;
   *  returns JSON summary. Only for a kind that plans no finish shard (FINISH). */
  finish?(
    spec: Spec,
    inputs: Inputs,
    outDir: string,
    onProgress?: (msg: string) => void,
  ): Promise<Record<string, unknown>>;
}

/**
 * The key of a job's finish shard. A kind that plans one has its last step computed by volunteers, like any
 * deterministic shard (two agree), instead of on the coordinator: its deps are what the step reads, and its
 * outputs named like files (with an extension: `summary.json`, which it must have, `report.html`, ...) are
 * u8 arrays that become the job's report files once it is accepted. Other outputs (scores) are there for
 * `agree`.
 */
export const FINISH = "finish";

/** Whether output `name` of a finish shard is one of the job's report files. */
export const isReportFile = (name: string): boolean => /\.[a-z0-9]+$/i.test(name);

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Record<DType, number> = { f32: 4, u32: 4, i32: 4, u8: 1 };

/** Registry of job kinds by name. */
export type JobKindRegistry = Map<string, JobKind<unknown>>;

/** Helper so a kind's Spec type is inferred from its zod schema. */
export function defineJobKind<Spec>(kind: JobKind<Spec>): JobKind<Spec> {
  return kind;
}

/** What a worker runs for one shard kind. */
export interface ExecutorContext {
  /** Fraction done in [0, 1]. */
  onProgress(frac: number): void;
  /** Aborted when the worker stops or the lease is lost. */
  signal?: AbortSignal;
}
export type Executor = (
  payload: unknown,
  inputs: Inputs,
  ctx: ExecutorContext,
) => Promise<Record<string, ArrayValue>>;
