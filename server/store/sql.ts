// The coordinator's state, in one SQL implementation over SQLite or PostgreSQL (store/driver.ts).
// Invariants the methods keep (each in one transaction):
// - a shard is leasable when its job runs, it is open, its deps are accepted (deps_left = 0), and its
//   live leases (weighted) plus pending results are fewer than its wanted replicas; a volunteer never
//   holds two live leases or two results on one shard (replicas come from different volunteers);
// - every lease issued bumps the shard's fence, so fences are monotonic per shard;
// - a lease is live while state = 'active' and deadline >= now; an expired one simply stops counting;
// - a shard is accepted by one UPDATE ... WHERE state = 'open', so exactly once;
// - the finish step is claimed by one UPDATE ... RETURNING with a deadline the owner keeps extending.
import type { DType, ShardPlan } from "../../src/protocol/job-kind.ts";
import { ApiError } from "../errors.ts";
import { claimLease } from "./claim.ts";
import type { SqlDriver, SqlParam, SqlQueryer } from "./driver.ts";
import {
  ADDED_COLUMNS,
  type JobRow,
  type LeaseLimits,
  leaseProblem,
  type LeaseRow,
  NO_LIMITS,
  num,
  type ResultRow,
  type ResultStatus,
  type Row,
  SCHEMA,
  type ShardCounts,
  type ShardRow,
  type StoredArray,
  toJob,
  toLease,
  toResult,
  toShard,
  toVolunteer,
  type VolunteerRow,
} from "./rows.ts";

export type {
  JobRow,
  JobState,
  LeaseLimits,
  LeaseRow,
  ResultRow,
  ResultStatus,
  ShardCounts,
  ShardRow,
  StoredArray,
  StoreOptions,
  VolunteerRow,
} from "./rows.ts";
import type { StoreOptions } from "./rows.ts";

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
    for (const { table, column, type } of ADDED_COLUMNS) {
      try {
        await this.db.all(`SELECT ${column} FROM ${table} LIMIT 0`);
      } catch {
        const ifNot = this.dialect === "pg" ? "IF NOT EXISTS " : "";
        await this.db.run(`ALTER TABLE ${table} ADD COLUMN ${ifNot}${column} ${type}`);
      }
    }
    return this;
  }

  close(): Promise<void> {
    return this.db.close();
  }

  // ------------------------------------------------------------------ jobs

  async createJob(id: string, kind: string, spec: unknown, shards: ShardPlan[], isPublic = false): Promise<void> {
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
      await q.run(`INSERT INTO jobs (id, kind, spec, state, created_at, public) VALUES (?, ?, ?, 'running', ?, ?)`, [
        id,
        kind,
        JSON.stringify(spec),
        now,
        isPublic ? 1 : 0,
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

  /**
   * A volunteer; with `inviteHash`, only by using up that invite in the same transaction (false, and no
   * volunteer, when it is unknown or used).
   */
  async createVolunteer(
    id: string,
    name: string,
    agent: string,
    tokenHash: string,
    source = "",
    inviteHash?: string,
  ): Promise<boolean> {
    return await this.db.tx(async (q) => {
      if (inviteHash !== undefined) {
        const used = await q.run(`UPDATE invites SET used_by = ? WHERE hash = ? AND used_by IS NULL`, [id, inviteHash]);
        if (used !== 1) return false;
      }
      await q.run(
        `INSERT INTO volunteers (id, name, agent, token_hash, streak, valid, invalid, created_at, source)
         VALUES (?, ?, ?, ?, 0, 0, 0, ?, ?)`,
        [id, name, agent, tokenHash, this.now(), source],
      );
      return true;
    });
  }

  async createInvites(hashes: string[]): Promise<void> {
    await this.db.tx(async (q) => {
      for (const h of hashes) await q.run(`INSERT INTO invites (hash, created_at) VALUES (?, ?)`, [h, this.now()]);
    });
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
   * Lease the first ready shard (oldest job, plan order) to `volunteerId` within `limits` (./claim.ts).
   * `solo`: the volunteer is trusted and drew "no replica" (see coordinator.ts).
   */
  claimLease(
    volunteerId: string,
    kinds: string[] | undefined,
    leaseMs: number,
    solo: boolean,
    limits: Partial<LeaseLimits> = {},
  ): Promise<{ lease: LeaseRow; shard: ShardRow } | null> {
    if (kinds && kinds.length === 0) return Promise.resolve(null);
    const locks = { skip: this.lockSkip, wait: this.lock };
    return this.db.tx((q) =>
      claimLease(q, locks, this.now(), { volunteerId, kinds, leaseMs, solo, limits: { ...NO_LIMITS, ...limits } })
    );
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
  ): Promise<{ status: "accepted" | "rejected" | "pending-quorum"; jobComplete: boolean; reason?: string }> {
    type Outcome = { status: "accepted" | "rejected" | "pending-quorum"; jobComplete: boolean; reason?: string };
    return this.db.tx(async (q): Promise<Outcome> => {
      const result = async (id: string) => toResult((await q.all<Row>(`SELECT * FROM results WHERE id = ?`, [id]))[0]);
      const { jobId, key } = await result(resultId);
      const srows = await q.all<Row>(`SELECT * FROM shards WHERE job_id = ? AND key = ?${this.lock}`, [jobId, key]);
      const shard = toShard(srows[0]);
      // Read under the shard's lock (PostgreSQL: a fresh statement, so it sees a quarantine that committed
      // while this transaction waited for the lock).
      const r = await result(resultId);
      if (r.status !== "pending") {
        return { status: "rejected", jobComplete: false, reason: r.reason ?? `result is ${r.status}` };
      }
      const quarantined = async (volunteerId: string) =>
        (await q.all<Row>(`SELECT quarantine FROM volunteers WHERE id = ?`, [volunteerId]))[0].quarantine != null;
      if (await quarantined(r.volunteerId)) {
        await this.setStatus(q, [resultId], "rejected", "the volunteer was quarantined");
        return { status: "rejected", jobComplete: false, reason: "the volunteer was quarantined" };
      }
      if (partnerId && shard.state === "open") {
        const partner = await result(partnerId);
        if (partner.status !== "pending" || await quarantined(partner.volunteerId)) {
          return { status: "pending-quorum", jobComplete: false }; // the partner was withdrawn: wait for another
        }
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
  async reject(resultId: string, reason: string): Promise<boolean> {
    return await this.db.tx(async (q) => {
      const rejected = await this.setStatus(q, [resultId], "rejected", reason);
      await this.credit(q, rejected, false);
      return rejected.length === 1;
    });
  }

  /** Append `message` to a job's events once: a message already there is not repeated. */
  async addEvent(jobId: string, message: string): Promise<void> {
    await this.db.tx(async (q) => {
      const [j] = await q.all<Row>(`SELECT * FROM jobs WHERE id = ?${this.lock}`, [jobId]);
      if (!j) return;
      const { events } = toJob(j);
      if (events.some((e) => e.message === message)) return;
      await q.run(`UPDATE jobs SET events = ? WHERE id = ?`, [
        JSON.stringify([...events, { at: this.now(), message }]),
        jobId,
      ]);
    });
  }

  /**
   * A check caught `volunteerId`: it gets nothing more, and nothing it did stands. Every shard it answered
   * validly (accepted, or agreeing with the accepted result; any job) goes back to the queue with all its
   * results rejected, and so, transitively, does every shard computed from one of those; its pending results
   * and live leases go too. A job that had finished (or was finishing) runs again and will finish again; each
   * job touched records the event. Returns the ids of the jobs touched.
   */
  async quarantine(volunteerId: string, reason: string): Promise<string[]> {
    const now = this.now();
    return await this.db.tx(async (q) => {
      const changed = await q.run(`UPDATE volunteers SET quarantine = ? WHERE id = ? AND quarantine IS NULL`, [
        reason,
        volunteerId,
      ]);
      if (changed !== 1) return [];
      const why = `requeued: volunteer ${volunteerId} was quarantined (${reason})`;
      const requeued = new Map<string, Set<string>>();
      // Shards with work undone: a result rejected, a lease taken back, or the shard reopened (a dependent not
      // started yet, e.g. a finish shard, is visited but has nothing to redo).
      const redone = new Map<string, number>();
      const reopen = async (jobId: string, key: string): Promise<void> => {
        const keys = requeued.get(jobId) ?? requeued.set(jobId, new Set()).get(jobId)!;
        if (keys.has(key)) return;
        keys.add(key);
        const [s] = await q.all<Row>(`SELECT * FROM shards WHERE job_id = ? AND key = ?${this.lock}`, [jobId, key]);
        const shard = toShard(s);
        const rejected = await q.run(
          `UPDATE results SET status = 'rejected', reason = ? WHERE job_id = ? AND key = ? AND status
          IN ('pending', 'valid', 'accepted')`,
          [why, jobId, key],
        );
        // Released, submitted ones too: whoever answered it before may answer it again (with few volunteers
        // nobody else might).
        const released = await q.run(
          `UPDATE leases SET state = 'released' WHERE job_id = ? AND key = ? AND state <> 'released'`,
          [jobId, key],
        );
        if (rejected || released || shard.state === "accepted") redone.set(jobId, (redone.get(jobId) ?? 0) + 1);
        if (shard.state === "accepted") {
          await q.run(
            `UPDATE shards SET state = 'open', accepted_result = NULL, replicas = ? WHERE job_id = ? AND key = ?`,
            [shard.deterministic ? 2 : 1, jobId, key],
          );
          await q.run(
            `UPDATE shards SET deps_left = deps_left + 1 WHERE job_id = ? AND key IN (SELECT key FROM shard_deps
             WHERE job_id = ? AND dep = ?)`,
            [jobId, jobId, key],
          );
        }
        // What was computed from this shard's result was computed from what the volunteer sent.
        for (const d of await q.all<Row>(`SELECT key FROM shard_deps WHERE job_id = ? AND dep = ?`, [jobId, key])) {
          await reopen(jobId, String(d.key));
        }
      };
      // Until a pass finds nothing new: on PostgreSQL each statement sees what committed before it, so a
      // result of this volunteer's accepted meanwhile is found by the next pass. Its pending results are
      // rejected under their shards' locks, which is what accepting one takes, so none is accepted after.
      for (;;) {
        const answered = (await q.all<Row>(
          `SELECT DISTINCT job_id, key FROM results WHERE volunteer_id = ? AND status IN ('accepted', 'valid')
           ORDER BY job_id, key`,
          [volunteerId],
        )).filter((a) => !requeued.get(String(a.job_id))?.has(String(a.key)));
        // The jobs' rows before their shards': a finish claim (which takes the same lock) then sees the
        // shards reopened, or has claimed before and this sends the job back to running.
        for (const id of [...new Set(answered.map((a) => String(a.job_id)))]) {
          if (!requeued.has(id)) await q.all(`SELECT id FROM jobs WHERE id = ?${this.lock}`, [id]);
        }
        for (const a of answered) await reopen(String(a.job_id), String(a.key));
        const pending = await q.all<Row>(
          `SELECT id, job_id, key FROM results WHERE volunteer_id = ? AND status = 'pending' ORDER BY job_id, key`,
          [volunteerId],
        );
        for (const p of pending) {
          await q.all(`SELECT key FROM shards WHERE job_id = ? AND key = ?${this.lock}`, [
            String(p.job_id),
            String(p.key),
          ]);
          await q.run(`UPDATE results SET status = 'rejected', reason = ? WHERE id = ? AND status = 'pending'`, [
            `the volunteer was quarantined (${reason})`,
            String(p.id),
          ]);
        }
        if (!answered.length) break;
      }
      await q.run(`UPDATE leases SET state = 'released' WHERE volunteer_id = ? AND state = 'active'`, [volunteerId]);
      for (const jobId of requeued.keys()) {
        const [j] = await q.all<Row>(`SELECT * FROM jobs WHERE id = ?`, [jobId]);
        const job = toJob(j);
        const events = [...job.events, { at: now, message: `${why}: ${redone.get(jobId) ?? 0} shard(s) requeued` }];
        const rerun = job.state === "done" || job.state === "finishing";
        await q.run(
          `UPDATE jobs SET events = ?, state = ?, summary = ?, files = ?, finish_owner = ? WHERE id = ?`,
          [
            JSON.stringify(events),
            rerun ? "running" : job.state,
            rerun ? null : (j.summary as string | null),
            rerun ? null : (j.files as string | null),
            rerun ? null : (j.finish_owner as string | null),
            jobId,
          ],
        );
      }
      return [...requeued.keys()];
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
    return await this.db.tx(async (q) => {
      // The job's row lock first, then the count in a statement of its own: a quarantine that reopened
      // shards (it holds the same lock while it does) has committed by then, and the count sees it.
      await q.all(`SELECT id FROM jobs WHERE id = ?${this.lock}`, [jobId]);
      const [open] = await q.all<Row>(`SELECT COUNT(*) AS n FROM shards WHERE job_id = ? AND state = 'open'`, [jobId]);
      if (num(open.n) > 0) return false;
      const rows = await q.all<Row>(
        `UPDATE jobs SET state = 'finishing', finish_owner = ?, finish_deadline = ?
         WHERE id = ? AND (state = 'running' OR (state = 'finishing' AND finish_deadline < ?)) RETURNING id`,
        [owner, now + ttlMs, jobId, now],
      );
      return rows.length === 1;
    });
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
        [JSON.stringify(summary), JSON.stringify(files), jobId, owner],
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
