// The coordinator's state, in one SQL implementation over SQLite or PostgreSQL (store/driver.ts).
// Invariants the methods keep (each in one transaction):
// - a shard is leasable when its job runs, it is open, its deps are accepted (deps_left = 0), and its
//   live leases (weighted) plus pending results are fewer than its wanted replicas; a volunteer never
//   holds two live leases or two results on one shard (replicas come from different volunteers);
// - every lease issued bumps the shard's fence, so fences are monotonic per shard;
// - a lease is live while state = 'active' and deadline >= now; an expired one simply stops counting;
// - a shard is accepted by one UPDATE ... WHERE state = 'open', so exactly once;
// - the finish step is claimed by one UPDATE ... RETURNING with a deadline the owner keeps extending.
import type { ArraySpec, DType, ShardPlan } from "../../src/protocol/job-kind.ts";
import { ApiError } from "../errors.ts";
import type { SqlDriver, SqlParam, SqlQueryer } from "./driver.ts";

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

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL,
    created_at BIGINT NOT NULL, finish_owner TEXT, finish_deadline BIGINT,
    summary TEXT, files TEXT, error TEXT)`,
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
    source TEXT NOT NULL DEFAULT '')`,
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
];

type Row = Record<string, unknown>;
const num = (v: unknown) => Number(v);
const str = (v: unknown) => (v === null || v === undefined ? null : String(v));

function toJob(r: Row): JobRow {
  return {
    id: String(r.id),
    kind: String(r.kind),
    spec: JSON.parse(String(r.spec)),
    state: r.state as JobState,
    createdAt: num(r.created_at),
    summary: r.summary ? JSON.parse(String(r.summary)) : null,
    files: r.files ? JSON.parse(String(r.files)) : {},
    error: str(r.error),
  };
}

function toShard(r: Row): ShardRow {
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

function toLease(r: Row): LeaseRow {
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

function toResult(r: Row): ResultRow {
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

function toVolunteer(r: Row): VolunteerRow {
  return {
    id: String(r.id),
    name: String(r.name),
    agent: String(r.agent),
    source: String(r.source ?? ""),
    streak: num(r.streak),
    valid: num(r.valid),
    invalid: num(r.invalid),
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
}

const NO_LIMITS: LeaseLimits = { perVolunteer: Infinity, perSource: Infinity, jobShare: Infinity };

/** Why a lease cannot be used; the app maps these to 4xx responses. */
function leaseProblem(lease: LeaseRow | null, volunteerId: string, fence: number, now: number): ApiError | null {
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

export class SqlStore {
  readonly now: () => number;
  private readonly maxResults: number;
  private readonly lock: string;
  private readonly lockSkip: string;

  constructor(readonly db: SqlDriver, opts: StoreOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.maxResults = opts.maxResultsPerShard ?? 8;
    // SQLite runs one writer at a time (BEGIN IMMEDIATE): row locks are PostgreSQL's business only.
    this.lock = db.dialect === "pg" ? " FOR UPDATE" : "";
    this.lockSkip = db.dialect === "pg" ? " FOR UPDATE OF s SKIP LOCKED" : "";
  }

  get dialect(): "sqlite" | "pg" {
    return this.db.dialect;
  }

  async init(): Promise<this> {
    await this.db.migrate(SCHEMA);
    // Databases made before volunteers had a source lack the column.
    try {
      await this.db.all(`SELECT source FROM volunteers LIMIT 0`);
    } catch {
      await this.db.run(
        `ALTER TABLE volunteers ADD COLUMN ${
          this.dialect === "pg" ? "IF NOT EXISTS " : ""
        }source TEXT NOT NULL DEFAULT ''`,
      );
    }
    return this;
  }

  close(): Promise<void> {
    return this.db.close();
  }

  // ------------------------------------------------------------------ jobs

  async createJob(id: string, kind: string, spec: unknown, shards: ShardPlan[]): Promise<void> {
    const keys = new Set<string>();
    for (const s of shards) {
      if (keys.has(s.key)) throw new ApiError(400, `plan: duplicate shard key "${s.key}"`);
      keys.add(s.key);
    }
    for (const s of shards) {
      for (const d of s.deps) {
        if (!keys.has(d)) throw new ApiError(400, `plan: shard "${s.key}" depends on unknown shard "${d}"`);
      }
    }
    const now = this.now();
    await this.db.tx(async (q) => {
      await q.run(`INSERT INTO jobs (id, kind, spec, state, created_at) VALUES (?, ?, ?, 'running', ?)`, [
        id,
        kind,
        JSON.stringify(spec),
        now,
      ]);
      for (const [idx, s] of shards.entries()) {
        await q.run(
          `INSERT INTO shards (job_id, key, idx, job_created, kind, payload, deps, outputs, max_bytes, deterministic,
           state, deps_left, fence, replicas)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, 0, ?)`,
          [
            id,
            s.key,
            idx,
            now,
            s.kind,
            JSON.stringify(s.payload ?? null),
            JSON.stringify(s.deps),
            JSON.stringify(s.outputs),
            s.maxBytes ?? null,
            s.deterministic ? 1 : 0,
            new Set(s.deps).size,
            s.deterministic ? 2 : 1,
          ],
        );
        for (const d of new Set(s.deps)) {
          await q.run(`INSERT INTO shard_deps (job_id, dep, key) VALUES (?, ?, ?)`, [id, d, s.key]);
        }
      }
    });
  }

  async getJob(id: string): Promise<JobRow | null> {
    const rows = await this.db.all<Row>(`SELECT * FROM jobs WHERE id = ?`, [id]);
    return rows[0] ? toJob(rows[0]) : null;
  }

  async listJobs(): Promise<JobRow[]> {
    return (await this.db.all<Row>(`SELECT * FROM jobs ORDER BY created_at, id`)).map(toJob);
  }

  async shardCounts(jobId: string): Promise<ShardCounts> {
    const now = this.now();
    const [r] = await this.db.all<Row>(
      `SELECT COUNT(*) AS total,
        SUM(CASE WHEN s.state = 'accepted' THEN 1 ELSE 0 END) AS accepted,
        SUM(CASE WHEN s.state = 'open' AND EXISTS (SELECT 1 FROM leases l
          WHERE l.job_id = s.job_id AND l.key = s.key AND l.state = 'active' AND l.deadline >= ?)
          THEN 1 ELSE 0 END) AS leased
       FROM shards s WHERE s.job_id = ?`,
      [now, jobId],
    );
    const total = num(r.total);
    const accepted = num(r.accepted ?? 0);
    const leased = num(r.leased ?? 0);
    return { total, accepted, leased, pending: total - accepted - leased };
  }

  async getShard(jobId: string, key: string): Promise<ShardRow | null> {
    const rows = await this.db.all<Row>(`SELECT * FROM shards WHERE job_id = ? AND key = ?`, [jobId, key]);
    return rows[0] ? toShard(rows[0]) : null;
  }

  async listShards(jobId: string): Promise<ShardRow[]> {
    return (await this.db.all<Row>(`SELECT * FROM shards WHERE job_id = ? ORDER BY idx`, [jobId])).map(toShard);
  }

  /** The arrays of a shard's accepted result, or null while it has none. */
  async acceptedArrays(jobId: string, key: string): Promise<Record<string, StoredArray> | null> {
    const rows = await this.db.all<Row>(
      `SELECT r.arrays FROM shards s JOIN results r ON r.id = s.accepted_result WHERE s.job_id = ? AND s.key = ?
       AND s.state = 'accepted'`,
      [jobId, key],
    );
    return rows[0] ? JSON.parse(String(rows[0].arrays)) : null;
  }

  // ------------------------------------------------------------------ volunteers

  async createVolunteer(id: string, name: string, agent: string, tokenHash: string, source = ""): Promise<void> {
    await this.db.run(
      `INSERT INTO volunteers (id, name, agent, token_hash, streak, valid, invalid, created_at, source)
       VALUES (?, ?, ?, ?, 0, 0, 0, ?, ?)`,
      [
        id,
        name,
        agent,
        tokenHash,
        this.now(),
        source,
      ],
    );
  }

  async volunteerByTokenHash(hash: string): Promise<VolunteerRow | null> {
    const rows = await this.db.all<Row>(`SELECT * FROM volunteers WHERE token_hash = ?`, [hash]);
    return rows[0] ? toVolunteer(rows[0]) : null;
  }

  async getVolunteer(id: string): Promise<VolunteerRow | null> {
    const rows = await this.db.all<Row>(`SELECT * FROM volunteers WHERE id = ?`, [id]);
    return rows[0] ? toVolunteer(rows[0]) : null;
  }

  // ------------------------------------------------------------------ leases

  /**
   * Lease the first ready shard (oldest job, plan order) to `volunteerId`. `solo`: the volunteer is
   * trusted and drew "no replica" (see coordinator.ts); it only applies to a fresh deterministic shard.
   * `limits` bound what one volunteer and one registration address hold (checked before the claim, so
   * concurrent claims on PostgreSQL may overshoot by the number of claims in flight).
   */
  async claimLease(
    volunteerId: string,
    kinds: string[] | undefined,
    leaseMs: number,
    solo: boolean,
    limits: Partial<LeaseLimits> = {},
  ): Promise<{ lease: LeaseRow; shard: ShardRow } | null> {
    if (kinds && kinds.length === 0) return null;
    const l = { ...NO_LIMITS, ...limits };
    return this.db.tx(async (q) => {
      const now = this.now();
      const [live] = await q.all<Row>(
        `SELECT COUNT(*) AS n FROM leases WHERE volunteer_id = ? AND state = 'active' AND deadline >= ?`,
        [volunteerId, now],
      );
      if (num(live.n) >= l.perVolunteer) {
        throw new ApiError(
          429,
          `you hold ${num(live.n)} live leases (the most allowed is ${l.perVolunteer}): submit them or let them expire`,
        );
      }
      // Live leases of every volunteer registered from this one's address, by job.
      const bySource = await q.all<Row>(
        `SELECT l.job_id, COUNT(*) AS n FROM leases l JOIN volunteers v ON v.id = l.volunteer_id
         WHERE l.state = 'active' AND l.deadline >= ?
           AND v.source = (SELECT source FROM volunteers WHERE id = ?) GROUP BY l.job_id`,
        [now, volunteerId],
      );
      const sourceTotal = bySource.reduce((a, r) => a + num(r.n), 0);
      if (sourceTotal >= l.perSource) {
        throw new ApiError(
          429,
          `volunteers from your address hold ${sourceTotal} live leases (the most allowed is ${l.perSource}): submit ` +
            `them or let them expire`,
        );
      }
      const fullJobs: string[] = [];
      for (const r of bySource) {
        const [t] = await q.all<Row>(`SELECT COUNT(*) AS n FROM shards WHERE job_id = ?`, [String(r.job_id)]);
        if (num(r.n) >= Math.max(1, Math.floor(l.jobShare * num(t.n)))) fullJobs.push(String(r.job_id));
      }
      const jobSql = fullJobs.length ? ` AND s.job_id NOT IN (${fullJobs.map(() => "?").join(", ")})` : "";
      const kindSql = kinds ? ` AND s.kind IN (${kinds.map(() => "?").join(", ")})` : "";
      const outstanding = `(SELECT COALESCE(SUM(l.weight), 0) FROM leases l WHERE l.job_id = s.job_id AND l.key = s.key
         AND l.state = 'active' AND l.deadline >= ?)
          + (SELECT COUNT(*) FROM results r WHERE r.job_id = s.job_id AND r.key = s.key AND r.status = 'pending')`;
      const mine = `EXISTS (SELECT 1 FROM leases l WHERE l.job_id = s.job_id AND l.key = s.key AND l.volunteer_id = ?
         AND (l.state = 'submitted' OR (l.state = 'active' AND l.deadline >= ?)))`;
      // PostgreSQL: SKIP LOCKED lets concurrent claimers pass each other; the shard row lock is what
      // every lease issue takes, and the re-count below (a fresh statement, so a fresh snapshot)
      // sees leases committed between this statement's snapshot and the lock.
      // When every candidate is locked by another claimer, SKIP LOCKED finds nothing although the
      // shard may still want a second replica: then wait for the lock (plain FOR UPDATE) and re-count.
      const candidate = (lock: string) =>
        q.all<Row>(
          `SELECT s.* FROM shards s JOIN jobs j ON j.id = s.job_id
           WHERE s.state = 'open' AND s.deps_left = 0 AND j.state = 'running'${kindSql}${jobSql}
             AND s.replicas > ${outstanding} AND NOT ${mine}
           ORDER BY s.job_created, s.job_id, s.idx LIMIT 1${lock}`,
          [...(kinds ?? []), ...fullJobs, now, volunteerId, now],
        );
      for (let attempt = 0; attempt < 8; attempt++) {
        let rows = await candidate(this.lockSkip);
        if (!rows[0] && this.lock) rows = await candidate(" FOR UPDATE OF s");
        if (!rows[0]) return null;
        const shard = toShard(rows[0]);
        const [c] = await q.all<Row>(
          `SELECT ${outstanding.replaceAll("s.job_id", "?").replaceAll("s.key", "?")} AS n,
             (SELECT COUNT(*) FROM leases l WHERE l.job_id = ? AND l.key = ? AND l.volunteer_id = ?
               AND (l.state = 'submitted' OR (l.state = 'active' AND l.deadline >= ?))) AS mine,
             (SELECT state FROM shards WHERE job_id = ? AND key = ?) AS state`,
          [
            shard.jobId,
            shard.key,
            now,
            shard.jobId,
            shard.key,
            shard.jobId,
            shard.key,
            volunteerId,
            now,
            shard.jobId,
            shard.key,
          ],
        );
        const n = num(c.n);
        if (c.state !== "open" || num(c.mine) > 0 || n >= shard.replicas) continue;
        const weight = solo && shard.deterministic && shard.replicas === 2 && n === 0 ? 2 : 1;
        const [f] = await q.all<Row>(
          `UPDATE shards SET fence = fence + 1 WHERE job_id = ? AND key = ? RETURNING fence`,
          [shard.jobId, shard.key],
        );
        const lease: LeaseRow = {
          id: crypto.randomUUID(),
          jobId: shard.jobId,
          key: shard.key,
          volunteerId,
          fence: num(f.fence),
          weight,
          deadline: now + leaseMs,
          state: "active",
        };
        await q.run(
          `INSERT INTO leases (id, job_id, key, volunteer_id, fence, weight, deadline, state, created_at) VALUES (?,
           ?, ?, ?, ?, ?, ?, 'active', ?)`,
          [lease.id, lease.jobId, lease.key, volunteerId, lease.fence, weight, lease.deadline, now],
        );
        return { lease, shard: { ...shard, fence: lease.fence } };
      }
      return null;
    });
  }

  async getLease(id: string): Promise<LeaseRow | null> {
    const rows = await this.db.all<Row>(`SELECT * FROM leases WHERE id = ?`, [id]);
    return rows[0] ? toLease(rows[0]) : null;
  }

  /** A live lease of this volunteer at this fence, or the ApiError saying why not. */
  async usableLease(leaseId: string, volunteerId: string, fence: number): Promise<LeaseRow> {
    const lease = await this.getLease(leaseId);
    const problem = leaseProblem(lease, volunteerId, fence, this.now());
    if (problem) throw problem;
    return lease!;
  }

  /** Extend a live lease; `maxAgeMs` caps a lease's whole life, so heartbeats cannot hold a shard forever. */
  async heartbeat(
    leaseId: string,
    volunteerId: string,
    fence: number,
    leaseMs: number,
    maxAgeMs = Infinity,
  ): Promise<number> {
    return this.db.tx(async (q) => {
      const now = this.now();
      const rows = await q.all<Row>(`SELECT * FROM leases WHERE id = ?${this.lock}`, [leaseId]);
      const lease = rows[0] ? toLease(rows[0]) : null;
      const problem = leaseProblem(lease, volunteerId, fence, now);
      if (problem) throw problem;
      if (now - num(rows[0].created_at) > maxAgeMs) {
        throw new ApiError(
          410,
          `the lease is older than the most a shard may take (${maxAgeMs} ms); it will not be extended`,
        );
      }
      const deadline = now + leaseMs;
      await q.run(`UPDATE leases SET deadline = ? WHERE id = ?`, [deadline, leaseId]);
      return deadline;
    });
  }

  /** Give a live lease back early (a worker stopping, a tab closing): the shard is leasable again at once. */
  async release(leaseId: string, volunteerId: string, fence: number): Promise<void> {
    await this.db.tx(async (q) => {
      const rows = await q.all<Row>(`SELECT * FROM leases WHERE id = ?${this.lock}`, [leaseId]);
      const problem = leaseProblem(rows[0] ? toLease(rows[0]) : null, volunteerId, fence, this.now());
      if (problem) throw problem;
      await q.run(`UPDATE leases SET state = 'released' WHERE id = ?`, [leaseId]);
    });
  }

  /**
   * Record an uploaded (already checked and stored) array against a live lease; replaces an earlier upload of the same
   * name.
   */
  async stageArray(leaseId: string, volunteerId: string, fence: number, name: string, a: StoredArray): Promise<void> {
    await this.db.tx(async (q) => {
      const rows = await q.all<Row>(`SELECT * FROM leases WHERE id = ?${this.lock}`, [leaseId]);
      const problem = leaseProblem(rows[0] ? toLease(rows[0]) : null, volunteerId, fence, this.now());
      if (problem) throw problem;
      await q.run(
        `INSERT INTO lease_arrays (lease_id, name, dtype, shape, hash) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (lease_id, name) DO UPDATE SET dtype = excluded.dtype, shape = excluded.shape,
           hash = excluded.hash`,
        [leaseId, name, a.dtype, JSON.stringify(a.shape), a.hash],
      );
    });
  }

  /**
   * Turn a live lease with every planned output staged into a result. The result is 'pending' (the
   * coordinator then checks it), or 'rejected' at once when the shard was accepted meanwhile.
   */
  async submit(
    leaseId: string,
    volunteerId: string,
    fence: number,
  ): Promise<{ result: ResultRow; lease: LeaseRow; shard: ShardRow }> {
    return this.db.tx(async (q) => {
      const now = this.now();
      const lrows = await q.all<Row>(`SELECT * FROM leases WHERE id = ?${this.lock}`, [leaseId]);
      const lease = lrows[0] ? toLease(lrows[0]) : null;
      const problem = leaseProblem(lease, volunteerId, fence, now);
      if (problem) throw problem;
      const srows = await q.all<Row>(`SELECT * FROM shards WHERE job_id = ? AND key = ?${this.lock}`, [
        lease!.jobId,
        lease!.key,
      ]);
      const shard = toShard(srows[0]);
      const staged = await q.all<Row>(`SELECT * FROM lease_arrays WHERE lease_id = ?`, [leaseId]);
      const arrays: Record<string, StoredArray> = {};
      for (const a of staged) {
        arrays[String(a.name)] = { dtype: a.dtype as DType, shape: JSON.parse(String(a.shape)), hash: String(a.hash) };
      }
      const missing = Object.keys(shard.outputs).filter((n) => !arrays[n]);
      if (missing.length) {
        throw new ApiError(
          400,
          `missing arrays: ${missing.join(", ")} (upload them with PUT /v1/leases/${leaseId}/arrays/NAME first)`,
        );
      }
      const late = shard.state !== "open";
      const result: ResultRow = {
        id: crypto.randomUUID(),
        jobId: lease!.jobId,
        key: lease!.key,
        volunteerId,
        leaseId,
        fence,
        arrays,
        status: late ? "rejected" : "pending",
        reason: late ? "late: the shard already has an accepted result" : null,
        createdAt: now,
      };
      await q.run(`UPDATE leases SET state = 'submitted' WHERE id = ?`, [leaseId]);
      await q.run(
        `INSERT INTO results (id, job_id, key, volunteer_id, lease_id, fence, arrays, status, reason,
         created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [
          result.id,
          result.jobId,
          result.key,
          volunteerId,
          leaseId,
          fence,
          JSON.stringify(arrays),
          result.status,
          result.reason,
          now,
        ],
      );
      return { result, lease: lease!, shard };
    });
  }

  // ------------------------------------------------------------------ results

  async getResult(id: string): Promise<ResultRow | null> {
    const rows = await this.db.all<Row>(`SELECT * FROM results WHERE id = ?`, [id]);
    return rows[0] ? toResult(rows[0]) : null;
  }

  async shardResults(jobId: string, key: string): Promise<ResultRow[]> {
    return (await this.db.all<Row>(`SELECT * FROM results WHERE job_id = ? AND key = ? ORDER BY created_at, id`, [
      jobId,
      key,
    ])).map(toResult);
  }

  async jobResults(jobId: string): Promise<ResultRow[]> {
    return (await this.db.all<Row>(`SELECT * FROM results WHERE job_id = ? ORDER BY created_at, id`, [jobId])).map(
      toResult,
    );
  }

  private async credit(q: SqlQueryer, volunteerIds: string[], valid: boolean): Promise<void> {
    // Sorted so two transactions crediting the same volunteers lock them in the same order.
    for (const v of [...volunteerIds].sort()) {
      if (valid) await q.run(`UPDATE volunteers SET streak = streak + 1, valid = valid + 1 WHERE id = ?`, [v]);
      else await q.run(`UPDATE volunteers SET streak = 0, invalid = invalid + 1 WHERE id = ?`, [v]);
    }
  }

  private async setStatus(
    q: SqlQueryer,
    ids: string[],
    status: ResultStatus,
    reason: string | null,
  ): Promise<string[]> {
    const credited: string[] = [];
    for (const id of ids) {
      const rows = await q.all<Row>(
        `UPDATE results SET status = ?, reason = ? WHERE id = ? AND status = 'pending' RETURNING volunteer_id`,
        [status, reason, id],
      );
      if (rows[0]) credited.push(String(rows[0].volunteer_id));
    }
    return credited;
  }

  /**
   * Accept `resultId` as the shard's result (with `partnerId`, the pending result it agreed with,
   * credited too; `rejectIds`, pending results that disagreed with it, rejected). When the shard was
   * accepted meanwhile, `resultId` is credited if the accepted result is its partner, else rejected late.
   */
  async accept(
    resultId: string,
    partnerId: string | null,
    rejectIds: string[],
  ): Promise<{ status: "accepted" | "rejected"; jobComplete: boolean; reason?: string }> {
    type Outcome = { status: "accepted" | "rejected"; jobComplete: boolean; reason?: string };
    return this.db.tx(async (q): Promise<Outcome> => {
      const [r] = (await q.all<Row>(`SELECT * FROM results WHERE id = ?`, [resultId])).map(toResult);
      const srows = await q.all<Row>(`SELECT * FROM shards WHERE job_id = ? AND key = ?${this.lock}`, [r.jobId, r.key]);
      const shard = toShard(srows[0]);
      if (r.status !== "pending") {
        return { status: "rejected", jobComplete: false, reason: r.reason ?? `result is ${r.status}` };
      }
      if (shard.state !== "open") {
        if (partnerId && shard.acceptedResult === partnerId) {
          await this.credit(q, await this.setStatus(q, [resultId], "valid", "agreed with the accepted result"), true);
          return { status: "accepted", jobComplete: false };
        }
        await this.setStatus(q, [resultId], "rejected", "late: the shard already has an accepted result");
        return { status: "rejected", jobComplete: false, reason: "late: the shard already has an accepted result" };
      }
      const chosen = partnerId ?? resultId;
      const changed = await q.run(
        `UPDATE shards SET state = 'accepted', accepted_result = ? WHERE job_id = ? AND key = ? AND state = 'open'`,
        [chosen, r.jobId, r.key],
      );
      if (changed !== 1) throw new Error(`accept: shard ${r.jobId}/${r.key} changed under its row lock`);
      const good = [
        ...(await this.setStatus(q, [chosen], "accepted", null)),
        ...(await this.setStatus(q, partnerId ? [resultId] : [], "valid", "agreed with the accepted result")),
      ];
      await this.credit(q, good, true);
      await this.credit(q, await this.setStatus(q, rejectIds, "rejected", "disagreed with the accepted result"), false);
      // Leases still out on this shard are now pointless; their submissions will be rejected as late.
      await q.run(
        `UPDATE shards SET deps_left = deps_left - 1 WHERE job_id = ? AND key IN (SELECT key FROM shard_deps
         WHERE job_id = ? AND dep = ?)`,
        [r.jobId, r.jobId, r.key],
      );
      return { status: "accepted", jobComplete: false };
    }).then(async (out) => {
      // Counted after the commit: two last shards accepted concurrently (PostgreSQL, READ COMMITTED)
      // would each still see the other open from inside their transactions.
      if (out.status === "accepted" && out.jobComplete === false) {
        const r = await this.getResult(resultId);
        const [open] = await this.db.all<Row>(`SELECT COUNT(*) AS n FROM shards WHERE job_id = ? AND state = 'open'`, [
          r!.jobId,
        ]);
        out.jobComplete = num(open.n) === 0;
      }
      return out;
    });
  }

  /**
   * Reject a pending result (failed spot check, or it disagreed with the accepted result); resets the volunteer's
   * streak.
   */
  async reject(resultId: string, reason: string): Promise<void> {
    await this.db.tx(async (q) => {
      await this.credit(q, await this.setStatus(q, [resultId], "rejected", reason), false);
    });
  }

  /**
   * A deterministic result that agreed with no pending result: ask for one more replica than the
   * shard now holds. Fails the job when the shard has collected too many results without a quorum.
   */
  async wantAnotherReplica(jobId: string, key: string): Promise<void> {
    await this.db.tx(async (q) => {
      await q.all(`SELECT key FROM shards WHERE job_id = ? AND key = ?${this.lock}`, [jobId, key]);
      const [c] = await q.all<Row>(
        `SELECT COUNT(*) AS n FROM results WHERE job_id = ? AND key = ? AND status = 'pending'`,
        [jobId, key],
      );
      const pending = num(c.n);
      if (pending >= this.maxResults) {
        await q.run(`UPDATE jobs SET state = 'failed', error = ? WHERE id = ? AND state = 'running'`, [
          `shard "${key}": ${pending} results and no two agree`,
          jobId,
        ]);
        return;
      }
      await q.run(
        `UPDATE shards SET replicas = CASE WHEN replicas < ? THEN ? ELSE replicas END WHERE job_id = ? AND key = ?
         AND state = 'open'`,
        [pending + 1, pending + 1, jobId, key],
      );
    });
  }

  /**
   * Pending results nobody is validating any more (the coordinator died between storing a result and
   * checking it): older than `olderThan`, on an open shard of a running job, and holding all its
   * replica slots, so the shard would otherwise never be leased again.
   */
  async stuckResults(olderThan: number): Promise<ResultRow[]> {
    const rows = await this.db.all<Row>(
      `SELECT r.* FROM results r JOIN shards s ON s.job_id = r.job_id AND s.key = r.key JOIN jobs j ON j.id = r.job_id
       WHERE r.status = 'pending' AND r.created_at < ? AND s.state = 'open' AND j.state = 'running'
         AND s.replicas <= (SELECT COUNT(*) FROM results r2
           WHERE r2.job_id = s.job_id AND r2.key = s.key AND r2.status = 'pending')
       ORDER BY r.created_at`,
      [olderThan],
    );
    return rows.map(toResult);
  }

  // ------------------------------------------------------------------ blob references

  /** Forget staged uploads of leases that can no longer submit: expired, released, or submitted (their
   *  arrays now belong to the result). */
  async dropDeadStaging(): Promise<number> {
    return this.db.run(
      `DELETE FROM lease_arrays WHERE lease_id IN (SELECT id FROM leases WHERE state <> 'active' OR deadline < ?)`,
      [this.now()],
    );
  }

  /** Every blob a row still needs: staged uploads, results that were not rejected, report files. */
  async referencedBlobs(): Promise<Set<string>> {
    const out = new Set<string>();
    for (const r of await this.db.all<Row>(`SELECT hash FROM lease_arrays`)) out.add(String(r.hash));
    for (const r of await this.db.all<Row>(`SELECT arrays FROM results WHERE status <> 'rejected'`)) {
      for (const a of Object.values(JSON.parse(String(r.arrays)) as Record<string, StoredArray>)) out.add(a.hash);
    }
    for (const r of await this.db.all<Row>(`SELECT files FROM jobs WHERE files IS NOT NULL`)) {
      for (const h of Object.values(JSON.parse(String(r.files)) as Record<string, string>)) out.add(h);
    }
    return out;
  }

  // ------------------------------------------------------------------ finishing

  /** Jobs whose shards are all accepted and that nobody is finishing (or whose finisher went quiet). */
  async jobsToFinish(): Promise<string[]> {
    const rows = await this.db.all<Row>(
      `SELECT j.id FROM jobs j WHERE (j.state = 'running' AND NOT EXISTS (SELECT 1 FROM shards s
       WHERE s.job_id = j.id AND s.state = 'open'))
         OR (j.state = 'finishing' AND j.finish_deadline < ?)`,
      [this.now()],
    );
    return rows.map((r) => String(r.id));
  }

  /** Claim the finish step: true for exactly one caller until the claim's deadline passes unextended. */
  async claimFinish(jobId: string, owner: string, ttlMs: number): Promise<boolean> {
    const now = this.now();
    const rows = await this.db.all<Row>(
      `UPDATE jobs SET state = 'finishing', finish_owner = ?, finish_deadline = ?
       WHERE id = ? AND ((state = 'running'
           AND NOT EXISTS (SELECT 1 FROM shards s WHERE s.job_id = jobs.id AND s.state = 'open'))
         OR (state = 'finishing' AND finish_deadline < ?))
       RETURNING id`,
      [owner, now + ttlMs, jobId, now],
    );
    return rows.length === 1;
  }

  async extendFinish(jobId: string, owner: string, ttlMs: number): Promise<boolean> {
    return (await this.db.run(
      `UPDATE jobs SET finish_deadline = ? WHERE id = ? AND state = 'finishing' AND finish_owner = ?`,
      [this.now() + ttlMs, jobId, owner],
    )) === 1;
  }

  async completeFinish(
    jobId: string,
    owner: string,
    summary: Record<string, unknown>,
    files: Record<string, string>,
  ): Promise<boolean> {
    return (
      (await this.db.run(
        `UPDATE jobs SET state = 'done', summary = ?, files = ? WHERE id = ? AND state = 'finishing'
         AND finish_owner = ?`,
        [
          JSON.stringify(summary),
          JSON.stringify(files),
          jobId,
          owner,
        ],
      )) === 1
    );
  }

  async failFinish(jobId: string, owner: string, error: string): Promise<boolean> {
    return (await this.db.run(
      `UPDATE jobs SET state = 'failed', error = ? WHERE id = ? AND state = 'finishing' AND finish_owner = ?`,
      [error, jobId, owner],
    )) === 1;
  }
}

export type { SqlParam };
