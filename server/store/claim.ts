// Leasing a shard: a ready shard of the oldest job with one, drawn at random among them, that this volunteer
// does not already hold or answer, within the caps on what one volunteer and one registration address may
// hold (checked before the claim, so concurrent claims on PostgreSQL may overshoot by the claims in flight).
// At random rather than in plan order, so that identities asking one after the other do not get each
// other's replicas: who checks whom is the draw's, not the asker's.
import { ApiError } from "../errors.ts";
import type { SqlQueryer } from "./driver.ts";
import { type LeaseLimits, type LeaseRow, num, type Row, type ShardRow, toShard } from "./rows.ts";

export interface Claim {
  volunteerId: string;
  kinds: string[] | undefined;
  leaseMs: number;
  /** A trusted volunteer drew "no replica": a fresh deterministic shard is leased to it alone. */
  solo: boolean;
  limits: LeaseLimits;
}

/** Row-lock clauses: PostgreSQL's (SKIP LOCKED, or waiting), empty on SQLite (one writer at a time). */
export interface Locks {
  skip: string;
  wait: string;
}

export async function claimLease(
  q: SqlQueryer,
  locks: Locks,
  now: number,
  c: Claim,
): Promise<{ lease: LeaseRow; shard: ShardRow } | null> {
  const { volunteerId, kinds, leaseMs, solo, limits } = c;
  const [live] = await q.all<Row>(
    `SELECT COUNT(*) AS n FROM leases WHERE volunteer_id = ? AND state = 'active' AND deadline >= ?`,
    [volunteerId, now],
  );
  if (num(live.n) >= limits.perVolunteer) {
    throw new ApiError(
      429,
      `you hold ${
        num(live.n)
      } live leases (the most allowed is ${limits.perVolunteer}): submit them or let them expire`,
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
  if (sourceTotal >= limits.perSource) {
    throw new ApiError(
      429,
      `volunteers from your address hold ${sourceTotal} live leases ` +
        `(the most allowed is ${limits.perSource}): submit them or let them expire`,
    );
  }
  const fullJobs: string[] = [];
  const full = async (counts: Row[], share: number) => {
    for (const r of counts) {
      const [t] = await q.all<Row>(`SELECT COUNT(*) AS n FROM shards WHERE job_id = ?`, [String(r.job_id)]);
      if (num(r.n) >= Math.max(1, Math.floor(share * num(t.n)))) fullJobs.push(String(r.job_id));
    }
  };
  await full(bySource, limits.jobShare);
  if (limits.volunteerJobShare < 1) {
    const held = await q.all<Row>(
      `SELECT job_id, COUNT(*) AS n FROM (
         SELECT job_id, key FROM leases WHERE volunteer_id = ? AND state = 'active' AND deadline >= ?
         UNION SELECT job_id, key FROM results WHERE volunteer_id = ? AND status IN ('pending', 'valid', 'accepted')
       ) AS held GROUP BY job_id`,
      [volunteerId, now, volunteerId],
    );
    await full(held, limits.volunteerJobShare);
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
         ORDER BY s.job_created, s.job_id, RANDOM() LIMIT 1${lock}`,
      [...(kinds ?? []), ...fullJobs, now, volunteerId, now],
    );
  for (let attempt = 0; attempt < 8; attempt++) {
    let rows = await candidate(locks.skip);
    if (!rows[0] && locks.wait) rows = await candidate(" FOR UPDATE OF s");
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
}
