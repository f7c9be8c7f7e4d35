// The coordinator's tables (the schema, created idempotently by SqlStore.init), the row types the store
// returns, their conversion from driver rows, and the rules a lease must pass to be used.
import type { ArraySpec, DType, ShardPlan } from "../../src/protocol/job-kind.ts";
import { ApiError } from "../errors.ts";

export type JobState = "running" | "finishing" | "done" | "failed";
export type ResultStatus = "pending" | "accepted" | "valid" | "rejected";

export interface JobRow {
  id: string;
  kind: string;
  spec: unknown;
  state: JobState;
  createdAt: number;
  summary: Record<string, unknown> | null;
  files: Record<string, string>;
  error: string | null;
  /** Status and report readable without the admin token. */
  public: boolean;
  /** What happened to the job besides its shards' progress (quarantines), oldest first. */
  events: JobEvent[];
}

export interface JobEvent {
  at: number;
  message: string;
}

export interface ShardRow extends ShardPlan {
  jobId: string;
  idx: number;
  state: "open" | "accepted";
  depsLeft: number;
  fence: number;
  replicas: number;
  acceptedResult: string | null;
}

export interface VolunteerRow {
  id: string;
  name: string;
  agent: string;
  /** The client address it registered from (server/rate-limit.ts addressKey). */
  source: string;
  streak: number;
  valid: number;
  invalid: number;
  /** Why it was quarantined (a check caught it), or null. */
  quarantine: string | null;
}

export interface LeaseRow {
  id: string;
  jobId: string;
  key: string;
  volunteerId: string;
  fence: number;
  /** 2 for a solo lease (a trusted volunteer's result accepted without a replica), else 1. */
  weight: number;
  deadline: number;
  state: "active" | "submitted" | "released";
}

export interface StoredArray {
  dtype: DType;
  shape: number[];
  hash: string;
}

export interface ResultRow {
  id: string;
  jobId: string;
  key: string;
  volunteerId: string;
  leaseId: string;
  fence: number;
  arrays: Record<string, StoredArray>;
  status: ResultStatus;
  reason: string | null;
  createdAt: number;
}

export interface ShardCounts {
  total: number;
  accepted: number;
  leased: number;
  pending: number;
}

/** Columns added to SCHEMA's tables later: databases made before them get them at start. */
export const ADDED_COLUMNS = [
  { table: "volunteers", column: "source", type: "TEXT NOT NULL DEFAULT ''" },
  { table: "jobs", column: "public", type: "INTEGER NOT NULL DEFAULT 0" },
  { table: "jobs", column: "events", type: "TEXT" },
  { table: "volunteers", column: "quarantine", type: "TEXT" },
];

export const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL,
    created_at BIGINT NOT NULL, finish_owner TEXT, finish_deadline BIGINT,
    summary TEXT, files TEXT, error TEXT, public INTEGER NOT NULL DEFAULT 0, events TEXT)`,
  `CREATE TABLE IF NOT EXISTS shards (
    job_id TEXT NOT NULL, key TEXT NOT NULL, idx INTEGER NOT NULL, job_created BIGINT NOT NULL,
    kind TEXT NOT NULL, payload TEXT NOT NULL, deps TEXT NOT NULL, outputs TEXT NOT NULL,
    max_bytes BIGINT, deterministic INTEGER NOT NULL, state TEXT NOT NULL, deps_left INTEGER NOT NULL,
    fence BIGINT NOT NULL, replicas INTEGER NOT NULL, accepted_result TEXT,
    PRIMARY KEY (job_id, key))`,
  `CREATE INDEX IF NOT EXISTS shards_ready ON shards (state, deps_left, job_created, idx)`,
  `CREATE TABLE IF NOT EXISTS shard_deps (job_id TEXT NOT NULL, dep TEXT NOT NULL, key TEXT NOT NULL,
   PRIMARY KEY (job_id, dep, key))`,
  `CREATE TABLE IF NOT EXISTS volunteers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, agent TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
    streak INTEGER NOT NULL, valid INTEGER NOT NULL, invalid INTEGER NOT NULL, created_at BIGINT NOT NULL,
    source TEXT NOT NULL DEFAULT '', quarantine TEXT)`,
  `CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL, key TEXT NOT NULL, volunteer_id TEXT NOT NULL,
    fence BIGINT NOT NULL, weight INTEGER NOT NULL, deadline BIGINT NOT NULL, state TEXT NOT NULL,
    created_at BIGINT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS leases_shard ON leases (job_id, key, state)`,
  `CREATE INDEX IF NOT EXISTS leases_live ON leases (state, deadline)`,
  `CREATE TABLE IF NOT EXISTS lease_arrays (
    lease_id TEXT NOT NULL, name TEXT NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL, hash TEXT NOT NULL,
    PRIMARY KEY (lease_id, name))`,
  `CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY, job_id TEXT NOT NULL, key TEXT NOT NULL, volunteer_id TEXT NOT NULL,
    lease_id TEXT NOT NULL UNIQUE, fence BIGINT NOT NULL, arrays TEXT NOT NULL, status TEXT NOT NULL,
    reason TEXT, created_at BIGINT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS results_shard ON results (job_id, key, status)`,
  `CREATE TABLE IF NOT EXISTS invites (hash TEXT PRIMARY KEY, created_at BIGINT NOT NULL, used_by TEXT)`,
];

export type Row = Record<string, unknown>;
export const num = (v: unknown) => Number(v);
export const str = (v: unknown) => (v === null || v === undefined ? null : String(v));

export function toJob(r: Row): JobRow {
  return {
    id: String(r.id),
    kind: String(r.kind),
    spec: JSON.parse(String(r.spec)),
    state: r.state as JobState,
    createdAt: num(r.created_at),
    summary: r.summary ? JSON.parse(String(r.summary)) : null,
    files: r.files ? JSON.parse(String(r.files)) : {},
    error: str(r.error),
    public: num(r.public) === 1,
    events: r.events ? JSON.parse(String(r.events)) : [],
  };
}

export function toShard(r: Row): ShardRow {
  return {
    jobId: String(r.job_id),
    key: String(r.key),
    idx: num(r.idx),
    kind: String(r.kind),
    payload: JSON.parse(String(r.payload)),
    deps: JSON.parse(String(r.deps)),
    outputs: JSON.parse(String(r.outputs)) as Record<string, ArraySpec>,
    maxBytes: r.max_bytes === null || r.max_bytes === undefined ? undefined : num(r.max_bytes),
    deterministic: num(r.deterministic) === 1,
    state: r.state as ShardRow["state"],
    depsLeft: num(r.deps_left),
    fence: num(r.fence),
    replicas: num(r.replicas),
    acceptedResult: str(r.accepted_result),
  };
}

export function toLease(r: Row): LeaseRow {
  return {
    id: String(r.id),
    jobId: String(r.job_id),
    key: String(r.key),
    volunteerId: String(r.volunteer_id),
    fence: num(r.fence),
    weight: num(r.weight),
    deadline: num(r.deadline),
    state: r.state as LeaseRow["state"],
  };
}

export function toResult(r: Row): ResultRow {
  return {
    id: String(r.id),
    jobId: String(r.job_id),
    key: String(r.key),
    volunteerId: String(r.volunteer_id),
    leaseId: String(r.lease_id),
    fence: num(r.fence),
    arrays: JSON.parse(String(r.arrays)),
    status: r.status as ResultStatus,
    reason: str(r.reason),
    createdAt: num(r.created_at),
  };
}

export function toVolunteer(r: Row): VolunteerRow {
  return {
    id: String(r.id),
    name: String(r.name),
    agent: String(r.agent),
    source: String(r.source ?? ""),
    streak: num(r.streak),
    valid: num(r.valid),
    invalid: num(r.invalid),
    quarantine: str(r.quarantine),
  };
}

export interface StoreOptions {
  /** Clock in ms (tests move it to expire leases without sleeping). */
  now?: () => number;
  /** Most results one shard may collect without two agreeing before its job fails (default 8). */
  maxResultsPerShard?: number;
}

/** Caps on live leases (server/README.md: lease rules). The store's defaults cap nothing. */
export interface LeaseLimits {
  /** Live leases one volunteer may hold; more requests get 429. */
  perVolunteer: number;
  /** Live leases the volunteers registered from one address may hold together; more get 429. */
  perSource: number;
  /** Share of a job's shards that one address's volunteers may hold at once (never less than one shard);
   *  that job's other shards go to other addresses meanwhile. */
  jobShare: number;
  /** Share of a job's shards one volunteer may hold or have answered (live leases, and pending, valid or
   *  accepted results), never less than one shard: no identity decides much of a job on its own. */
  volunteerJobShare: number;
}

export const NO_LIMITS: LeaseLimits = {
  perVolunteer: Infinity,
  perSource: Infinity,
  jobShare: Infinity,
  volunteerJobShare: Infinity,
};

/** Why a lease cannot be used; the app maps these to 4xx responses. */
export function leaseProblem(lease: LeaseRow | null, volunteerId: string, fence: number, now: number): ApiError | null {
  if (!lease) return new ApiError(404, "unknown lease");
  if (lease.volunteerId !== volunteerId) return new ApiError(403, "this lease belongs to another volunteer");
  if (lease.fence !== fence) return new ApiError(409, `stale fence ${fence}: the lease's fence is ${lease.fence}`);
  if (lease.state === "submitted") return new ApiError(409, "this lease was already submitted");
  if (lease.state === "released") return new ApiError(409, "this lease was released; lease the shard again");
  if (lease.deadline < now) {
    return new ApiError(410, `the lease expired at ${new Date(lease.deadline).toISOString()}; lease the shard again`);
  }
  return null;
}
