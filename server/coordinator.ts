// The coordinator's protocol on top of the store: validation of results (BOINC-style quorum for
// deterministic shards, spot checks for nondeterministic ones), adaptive replication for trusted
// volunteers, and the once-only finish step.
//
// Trust rule: a volunteer whose streak of valid results is >= trustStreak (default 10) gets, for each
// fresh deterministic shard it leases, a solo lease with probability soloProbability (default 4/5):
// its result is accepted without a replica, so only 1 in 5 of its shards is replicated. A solo lease
// counts as two replicas while it is live, so nobody else gets the shard meanwhile. Any invalid
// result (a failed spot check, or disagreeing with the accepted result) resets the streak to 0.
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JobStatus, Lease, SubmitStatus } from "../src/protocol/api.ts";
import { checkArray, maxBytesOf, typedArray } from "../src/protocol/arrays.ts";
import type { BlobStore } from "./blobs.ts";
import { ApiError } from "./errors.ts";
import {
  type ArrayValue,
  FINISH,
  type Inputs,
  isReportFile,
  type JobKind,
  type JobKindRegistry,
  type ShardPlan,
} from "../src/protocol/job-kind.ts";
import type { LeaseLimits, LeaseRow, ResultRow, ShardRow, SqlStore, StoredArray, VolunteerRow } from "./store/sql.ts";

export interface CoordinatorOptions {
  store: SqlStore;
  blobs: BlobStore;
  kinds: JobKindRegistry;
  /** Lease length; heartbeats extend a lease by this much (default 60 s). */
  leaseMs?: number;
  /** Most live leases one volunteer may hold (default 4); more lease requests get 429. */
  maxLiveLeases?: number;
  /** Most live leases the volunteers registered from one address may hold together (default 16). */
  maxSourceLeases?: number;
  /** Share of a job's shards one address's volunteers may hold at once, at least one shard (default 1/2). */
  sourceJobShare?: number;
  /** Share of a job's shards one volunteer may hold or have answered, at least one shard (default 1: no cap;
   *  a public deployment sets it lower, server/README.md). */
  volunteerJobShare?: number;
  /** Heartbeats stop extending a lease this old (default 12 h)... */
  maxLeaseAgeMs?: number;
  /** ...or this old (default 1 h) while its volunteer has fewer than `provenAfter` (default 3) valid results. */
  newMaxLeaseAgeMs?: number;
  provenAfter?: number;
  /** Blobs no row references are deleted once older than this (default 10 min: longer than an upload
   *  takes from writing its blob to recording it), every gcIntervalMs (default 10 min). */
  blobGraceMs?: number;
  gcIntervalMs?: number;
  trustStreak?: number;
  soloProbability?: number;
  /** Share of a proven volunteer's spot-checked results (train shards) that also get a training segment
   *  replayed (default 0.1); a volunteer with fewer than `provenAfter` valid results gets it on every one. */
  replayFraction?: number;
  /** Share of deterministic results, agreed by two volunteers or sent by a trusted one alone, that the
   *  coordinator recomputes before accepting (`JobKind.recompute`; default 0.05; every one that a volunteer
   *  with fewer than `provenAfter` valid results sent). A mismatch rejects and quarantines every volunteer
   *  that sent it: a ring of colluders agreeing on a forgery. */
  auditFraction?: number;
  /** Randomness for solo draws and spot-check seeds (tests pass a seeded one). */
  random?: () => number;
  /** How long a finish claim lasts without being extended (default 60 s). */
  finishTtlMs?: number;
  /** A pending result still unvalidated this long after it arrived is validated again by the sweeper
   *  (its coordinator died mid-check); default 30 s, longer than any spot check should take. */
  revalidateAfterMs?: number;
  /** Name of this instance in finish claims. */
  instanceId?: string;
  log?: (msg: string) => void;
}

export class Coordinator {
  readonly store: SqlStore;
  readonly blobs: BlobStore;
  readonly kinds: JobKindRegistry;
  readonly leaseMs: number;
  readonly leaseLimits: LeaseLimits;
  readonly maxLeaseAgeMs: number;
  readonly newMaxLeaseAgeMs: number;
  private readonly provenAfter: number;
  private readonly blobGraceMs: number;
  private readonly gcIntervalMs: number;
  private collector: ReturnType<typeof setInterval> | undefined;
  private readonly trustStreak: number;
  private readonly soloProbability: number;
  private readonly replayFraction: number;
  private readonly auditFraction: number;
  private readonly random: () => number;
  private readonly finishTtlMs: number;
  readonly instanceId: string;
  private readonly log: (msg: string) => void;
  private readonly specs = new Map<string, unknown>();
  private readonly finishing = new Map<string, Promise<void>>();
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private readonly validating = new Set<string>();
  private readonly revalidateAfterMs: number;

  constructor(o: CoordinatorOptions) {
    this.store = o.store;
    this.blobs = o.blobs;
    this.kinds = o.kinds;
    this.leaseMs = o.leaseMs ?? 60_000;
    this.leaseLimits = {
      perVolunteer: o.maxLiveLeases ?? 4,
      perSource: o.maxSourceLeases ?? 16,
      jobShare: o.sourceJobShare ?? 0.5,
      volunteerJobShare: o.volunteerJobShare ?? 1,
    };
    this.maxLeaseAgeMs = o.maxLeaseAgeMs ?? 12 * 3600_000;
    this.newMaxLeaseAgeMs = o.newMaxLeaseAgeMs ?? 3600_000;
    this.provenAfter = o.provenAfter ?? 3;
    this.blobGraceMs = o.blobGraceMs ?? 10 * 60_000;
    this.gcIntervalMs = o.gcIntervalMs ?? 10 * 60_000;
    this.trustStreak = o.trustStreak ?? 10;
    this.soloProbability = o.soloProbability ?? 0.8;
    this.replayFraction = o.replayFraction ?? 0.1;
    this.auditFraction = o.auditFraction ?? 0.05;
    this.random = o.random ?? Math.random;
    this.finishTtlMs = o.finishTtlMs ?? 60_000;
    this.revalidateAfterMs = o.revalidateAfterMs ?? 30_000;
    this.instanceId = o.instanceId ?? crypto.randomUUID();
    this.log = o.log ?? (() => undefined);
  }

  private kindOf(name: string): JobKind<unknown> {
    const k = this.kinds.get(name);
    if (!k) throw new ApiError(400, `unknown job kind "${name}"; known: ${[...this.kinds.keys()].join(", ")}`);
    return k;
  }

  private async specOf(jobId: string): Promise<{ kind: JobKind<unknown>; spec: unknown }> {
    const job = await this.store.getJob(jobId);
    if (!job) throw new ApiError(404, `unknown job ${jobId}`);
    const kind = this.kindOf(job.kind);
    let spec = this.specs.get(jobId);
    if (spec === undefined) {
      spec = kind.spec.parse(job.spec);
      this.specs.set(jobId, spec);
    }
    return { kind, spec };
  }

  // ------------------------------------------------------------------ jobs

  async createJob(kindName: string, rawSpec: unknown, isPublic = false): Promise<string> {
    const kind = this.kindOf(kindName);
    const parsed = kind.spec.safeParse(rawSpec);
    if (!parsed.success) {
      throw new ApiError(
        400,
        `invalid spec for "${kindName}": ${
          parsed.error.issues.map((i) => `${i.path.join(".") || "spec"}: ${i.message}`).join("; ")
        }`,
      );
    }
    let shards: ShardPlan[];
    try {
      shards = kind.plan(parsed.data);
    } catch (e) {
      // The spec passed its schema but cannot be planned (a dataset that does not exist, a block as
      // large as the matrix): the caller's mistake.
      throw new ApiError(400, `invalid spec for "${kindName}": ${(e as Error).message}`);
    }
    if (shards.length === 0) throw new ApiError(400, `the spec plans no shards`);
    const finish = shards.find((s) => s.key === FINISH);
    if (finish ? !Object.hasOwn(finish.outputs, "summary.json") : !kind.finish) {
      throw new Error(`job kind ${kindName}: ${finish ? "its finish shard has no summary.json" : "no finish step"}`);
    }
    const id = crypto.randomUUID();
    await this.store.createJob(id, kindName, parsed.data, shards, isPublic);
    return id;
  }

  async jobStatus(jobId: string): Promise<JobStatus> {
    const job = await this.store.getJob(jobId);
    if (!job) throw new ApiError(404, `unknown job ${jobId}`);
    const shards = await this.store.shardCounts(jobId);
    return {
      id: job.id,
      kind: job.kind,
      state: job.state,
      shards,
      ...(job.summary ? { summary: job.summary } : {}),
      ...(job.error ? { error: job.error } : {}),
      files: Object.keys(job.files),
      events: job.events,
    };
  }

  async reportFile(jobId: string, file: string): Promise<Uint8Array> {
    const job = await this.store.getJob(jobId);
    if (!job) throw new ApiError(404, `unknown job ${jobId}`);
    const hash = Object.hasOwn(job.files, file) ? job.files[file] : undefined;
    if (!hash) {
      throw new ApiError(
        404,
        job.state === "done"
          ? `job ${jobId} has no report file "${file}"`
          : `job ${jobId} is ${job.state}; its report is not written yet`,
      );
    }
    return this.blobs.get(hash);
  }

  // ------------------------------------------------------------------ volunteers and leases

  async lease(volunteer: VolunteerRow, kinds: string[] | undefined): Promise<Lease | null> {
    const solo = volunteer.streak >= this.trustStreak && this.random() < this.soloProbability;
    const got = await this.store.claimLease(volunteer.id, kinds, this.leaseMs, solo, this.leaseLimits);
    if (!got) return null;
    const { lease, shard } = got;
    return {
      leaseId: lease.id,
      fence: lease.fence,
      deadline: lease.deadline,
      // The lease length too: a worker paces heartbeats on its own clock, which may differ from ours.
      leaseMs: this.leaseMs,
      shard: {
        jobId: shard.jobId,
        key: shard.key,
        kind: shard.kind,
        payload: shard.payload,
        deps: shard.deps,
        outputs: shard.outputs,
        ...(shard.maxBytes !== undefined ? { maxBytes: shard.maxBytes } : {}),
      },
    };
  }

  /** Extend a live lease; a volunteer without a record of valid results may extend it for less long. */
  heartbeat(leaseId: string, volunteer: VolunteerRow, fence: number): Promise<number> {
    const maxAge = volunteer.valid >= this.provenAfter
      ? this.maxLeaseAgeMs
      : Math.min(this.maxLeaseAgeMs, this.newMaxLeaseAgeMs);
    return this.store.heartbeat(leaseId, volunteer.id, fence, this.leaseMs, maxAge);
  }

  /** The planned output `name` of a live lease's shard (own keys only: "constructor" is no output). */
  private async plannedOutput(leaseId: string, volunteerId: string, fence: number, name: string) {
    const lease = await this.store.usableLease(leaseId, volunteerId, fence);
    const shard = (await this.store.getShard(lease.jobId, lease.key))!;
    if (!Object.hasOwn(shard.outputs, name)) {
      throw new ApiError(
        404,
        `shard "${shard.key}" has no output "${name}"; planned: ${Object.keys(shard.outputs).join(", ")}`,
      );
    }
    return { shard, spec: shard.outputs[name] };
  }

  /** Byte limit for an upload of array `name` on this lease: the plan's size, known before reading the body. */
  async uploadLimit(leaseId: string, volunteerId: string, fence: number, name: string): Promise<number> {
    const { shard, spec } = await this.plannedOutput(leaseId, volunteerId, fence, name);
    return maxBytesOf(spec, shard.maxBytes);
  }

  async putArray(
    leaseId: string,
    volunteerId: string,
    fence: number,
    name: string,
    dtype: string | null,
    shape: string | null,
    body: Uint8Array,
  ): Promise<void> {
    const { shard, spec } = await this.plannedOutput(leaseId, volunteerId, fence, name);
    const checked = checkArray(name, spec, shard.maxBytes, dtype, shape, body);
    if (!checked.ok) throw new ApiError(422, checked.reason);
    const hash = await this.blobs.put(body);
    await this.store.stageArray(leaseId, volunteerId, fence, name, {
      dtype: checked.value.dtype,
      shape: checked.value.shape,
      hash,
    });
  }

  async acceptedArray(jobId: string, key: string, name: string): Promise<{ meta: StoredArray; bytes: Uint8Array }> {
    const arrays = await this.store.acceptedArrays(jobId, key);
    if (!arrays) {
      const shard = await this.store.getShard(jobId, key);
      throw new ApiError(
        404,
        shard ? `shard "${key}" has no accepted result yet` : `unknown shard "${key}" in job ${jobId}`,
      );
    }
    if (!Object.hasOwn(arrays, name)) throw new ApiError(404, `shard "${key}" has no array "${name}"`);
    const meta = arrays[name];
    return { meta, bytes: await this.blobs.get(meta.hash) };
  }

  private async loadArrays(r: ResultRow): Promise<Record<string, ArrayValue>> {
    const out: Record<string, ArrayValue> = {};
    for (const [name, a] of Object.entries(r.arrays)) {
      out[name] = { dtype: a.dtype, shape: a.shape, data: typedArray(a.dtype, await this.blobs.get(a.hash)) };
    }
    return out;
  }

  /** Accepted results of a job's shards, as the job kind reads them. */
  inputs(jobId: string): Inputs {
    return {
      get: async (depKey, name) => {
        const { meta, bytes } = await this.acceptedArray(jobId, depKey, name);
        return { dtype: meta.dtype, shape: meta.shape, data: typedArray(meta.dtype, bytes) };
      },
    };
  }

  async submit(leaseId: string, volunteerId: string, fence: number): Promise<SubmitStatus> {
    const { result, lease, shard } = await this.store.submit(leaseId, volunteerId, fence);
    if (result.status === "rejected") return { status: "rejected", reason: result.reason ?? undefined };
    return this.validate(result, lease, shard);
  }

  /** Check a pending result (once at a time: the sweeper skips one being checked, however long it takes). */
  private async validate(result: ResultRow, lease: LeaseRow, shard: ShardRow): Promise<SubmitStatus> {
    this.validating.add(result.id);
    try {
      return await this.check(result, lease, shard);
    } finally {
      this.validating.delete(result.id);
    }
  }

  /** Spot check, solo acceptance, or quorum with the shard's other pending results. */
  private async check(result: ResultRow, lease: LeaseRow, shard: ShardRow): Promise<SubmitStatus> {
    const { kind, spec } = await this.specOf(result.jobId);
    const plan: ShardPlan = shard;
    const mine = await this.loadArrays(result);
    let outcome: Awaited<ReturnType<SqlStore["accept"]>>;
    if (!shard.deterministic) {
      const seed = Math.floor(this.random() * 2 ** 32);
      const volunteer = await this.store.getVolunteer(result.volunteerId);
      const replay = (volunteer?.valid ?? 0) < this.provenAfter || this.random() < this.replayFraction;
      let reason: string | null;
      // A check that could not run (its inputs were requeued meanwhile) rejects the result but proves
      // nothing against the volunteer; one that ran and failed quarantines it.
      let caught = true;
      try {
        reason = await kind.spotCheck(spec, plan, mine, this.inputs(result.jobId), seed, { replay });
      } catch (e) {
        reason = `spot check failed: ${(e as Error).message}`;
        caught = !(e instanceof ApiError && e.status === 404);
      }
      if (reason) {
        const rejected = await this.store.reject(result.id, reason);
        if (rejected && caught) {
          await this.quarantine(
            result.volunteerId,
            `failed the spot check of ${result.jobId}/${result.key}: ${reason}`,
          );
        }
        return { status: "rejected", reason };
      }
      outcome = await this.store.accept(result.id, null, []);
    } else if (lease.weight === 2) {
      const forged = await this.audit(kind, spec, plan, mine, [result]);
      if (forged) return forged;
      outcome = await this.store.accept(result.id, null, []);
    } else {
      // Quorum: compare with the other pending results of this shard (all from other volunteers).
      const others = (await this.store.shardResults(result.jobId, result.key)).filter((r) =>
        r.id !== result.id && r.status === "pending"
      );
      let partner: string | null = null;
      const disagreed: string[] = [];
      for (const o of others) {
        if (kind.agree(plan, mine, await this.loadArrays(o))) {
          partner ??= o.id;
        } else disagreed.push(o.id);
      }
      if (!partner) {
        if (disagreed.length) await this.store.wantAnotherReplica(result.jobId, result.key);
        return { status: "pending-quorum" };
      }
      const forged = await this.audit(kind, spec, plan, mine, [result, others.find((o) => o.id === partner)!]);
      if (forged) return forged;
      outcome = await this.store.accept(result.id, partner, disagreed);
      if (outcome.status === "accepted") {
        for (const o of others.filter((o) => disagreed.includes(o.id))) {
          await this.quarantine(o.volunteerId, `disagreed with the accepted result of ${o.jobId}/${o.key}`);
        }
      }
    }
    if (outcome.jobComplete) this.finishSoon(result.jobId);
    if (outcome.status === "rejected") return { status: "rejected", reason: outcome.reason };
    return { status: outcome.status };
  }

  /**
   * When a sender has fewer than `provenAfter` valid results, else with probability auditFraction,
   * recompute a deterministic shard here and compare with what `senders` sent (`mine`, which they agree
   * on): on a mismatch their results are rejected and they are quarantined. Returns the submitter's verdict
   * then, else undefined (accept as usual; also when the kind cannot recompute here, which the job's
   * events then say once).
   */
  private async audit(
    kind: JobKind<unknown>,
    spec: unknown,
    plan: ShardPlan,
    mine: Record<string, ArrayValue>,
    senders: ResultRow[],
  ): Promise<SubmitStatus | undefined> {
    const fresh = async () => {
      for (const r of senders) {
        if (((await this.store.getVolunteer(r.volunteerId))?.valid ?? 0) < this.provenAfter) return true;
      }
      return false;
    };
    if (!kind.recompute || !((await fresh()) || this.random() < this.auditFraction)) return undefined;
    const jobId = senders[0].jobId;
    const own = await kind.recompute(spec, plan, this.inputs(jobId));
    if (!own) {
      await this.store.addEvent(
        jobId,
        `this coordinator cannot recompute ${plan.kind} shards (no WebGPU: run it under Deno): results volunteers ` +
          `agreed on are accepted unaudited`,
      );
      return undefined;
    }
    if (kind.agree(plan, mine, own)) return undefined;
    const reason = `the coordinator's own computation of ${jobId}/${plan.key} differs from it`;
    for (const r of senders) {
      await this.store.reject(r.id, reason);
      await this.quarantine(r.volunteerId, `sent a result that ${reason}`);
    }
    return { status: "rejected", reason };
  }

  /** A check caught a volunteer: quarantine it (server/store/sql.ts `quarantine`) and log the jobs it requeued. */
  async quarantine(volunteerId: string, reason: string): Promise<void> {
    const jobs = await this.store.quarantine(volunteerId, reason);
    if (jobs.length) this.log(`quarantined volunteer ${volunteerId} (${reason}); jobs requeued: ${jobs.join(", ")}`);
  }

  // ------------------------------------------------------------------ finishing

  /** Start the finish step for `jobId` in the background if this instance wins the claim. */
  finishSoon(jobId: string): void {
    if (this.finishing.has(jobId)) return;
    const p = this.runFinish(jobId)
      .catch((e) => this.log(`finish ${jobId}: ${(e as Error).message}`))
      .finally(() => this.finishing.delete(jobId));
    this.finishing.set(jobId, p);
  }

  /** Wait for the finish steps this instance is running (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.finishing.size) await Promise.all([...this.finishing.values()]);
  }

  private async runFinish(jobId: string): Promise<void> {
    if (!(await this.store.claimFinish(jobId, this.instanceId, this.finishTtlMs))) return;
    const keepAlive = setInterval(
      () => void this.store.extendFinish(jobId, this.instanceId, this.finishTtlMs).catch(() => undefined),
      Math.max(50, this.finishTtlMs / 3),
    );
    try {
      const byVolunteers = await this.store.acceptedArrays(jobId, FINISH);
      const { summary, files } = byVolunteers ? await this.reportOf(byVolunteers) : await this.finishHere(jobId);
      // The job row names the files only while the claim is still ours.
      if (!(await this.store.completeFinish(jobId, this.instanceId, summary, files))) {
        this.log(`job ${jobId}: finish claim lost; another instance finishes it`);
      } else this.log(`job ${jobId}: done`);
    } catch (e) {
      await this.store.failFinish(jobId, this.instanceId, `finish failed: ${(e as Error).message}`);
      throw e;
    } finally {
      clearInterval(keepAlive);
    }
  }

  /** The report of an accepted finish shard: its file outputs (already blobs) and summary.json. */
  private async reportOf(arrays: Record<string, StoredArray>) {
    const files = Object.fromEntries(
      Object.entries(arrays).filter(([name]) => isReportFile(name)).map(([name, a]) => [name, a.hash]),
    );
    const summary = JSON.parse(new TextDecoder().decode(await this.blobs.get(files["summary.json"])));
    return { summary: summary as Record<string, unknown>, files };
  }

  /** A kind without a finish shard: its finish runs here, and the files it writes go into the blob store,
   *  from which every instance serves them. */
  private async finishHere(jobId: string) {
    const { kind, spec } = await this.specOf(jobId);
    if (!kind.finish) {
      // A job planned before its kind moved its finish to a shard.
      throw new Error(`job kind ${kind.name} finishes in a shard now, and this job has none: create it again`);
    }
    const outDir = await mkdtemp(join(tmpdir(), `finish-${jobId}-`));
    try {
      this.log(`job ${jobId}: all shards accepted, finishing`);
      const summary = await kind.finish(spec, this.inputs(jobId), outDir, (m) => this.log(`job ${jobId}: ${m}`));
      const files: Record<string, string> = {};
      for (const f of await readdir(outDir, { recursive: true, withFileTypes: true })) {
        if (!f.isFile()) continue;
        const rel = join((f as { parentPath?: string }).parentPath ?? outDir, f.name).slice(outDir.length + 1);
        files[rel] = await this.blobs.put(new Uint8Array(await readFile(join(outDir, rel))));
      }
      if (!files["summary.json"]) {
        files["summary.json"] = await this.blobs.put(new TextEncoder().encode(JSON.stringify(summary, null, 2)));
      }
      return { summary, files };
    } finally {
      await rm(outDir, { recursive: true, force: true });
    }
  }

  /**
   * Finish jobs that are complete but unfinished (after a restart, or a finisher that died), and
   * validate results whose validation died with a coordinator (see SqlStore.stuckResults).
   */
  async sweep(): Promise<void> {
    for (const id of await this.store.jobsToFinish()) this.finishSoon(id);
    for (const r of await this.store.stuckResults(this.store.now() - this.revalidateAfterMs)) {
      if (this.validating.has(r.id)) continue;
      this.validating.add(r.id);
      try {
        const lease = await this.store.getLease(r.leaseId);
        const shard = await this.store.getShard(r.jobId, r.key);
        if (lease && shard) await this.check(r, lease, shard);
      } catch (e) {
        this.log(`revalidate ${r.id}: ${(e as Error).message}`);
      } finally {
        this.validating.delete(r.id);
      }
    }
  }

  /**
   * Delete blobs no row references (replaced or abandoned uploads, rejected results) and stray temp
   * files, once older than `graceMs`: a blob younger than that may belong to an upload not yet recorded.
   */
  async collectGarbage(graceMs = this.blobGraceMs): Promise<{ deleted: number; kept: number }> {
    await this.store.dropDeadStaging();
    const live = await this.store.referencedBlobs();
    const cutoff = Date.now() - graceMs;
    let deleted = 0;
    let kept = 0;
    for (const b of await this.blobs.list()) {
      if ((b.hash && live.has(b.hash)) || (graceMs > 0 && b.mtimeMs > cutoff)) kept++;
      else {
        await this.blobs.delete(b);
        deleted++;
      }
    }
    if (deleted) this.log(`garbage collection: deleted ${deleted} unreferenced blob files, kept ${kept}`);
    return { deleted, kept };
  }

  start(intervalMs = 2000): this {
    void this.sweep().catch(() => undefined);
    this.sweeper = setInterval(() => void this.sweep().catch(() => undefined), intervalMs);
    this.collector = setInterval(
      () => void this.collectGarbage().catch((e) => this.log(`garbage collection: ${(e as Error).message}`)),
      this.gcIntervalMs,
    );
    return this;
  }

  async stop(): Promise<void> {
    clearInterval(this.sweeper);
    clearInterval(this.collector);
    this.sweeper = this.collector = undefined;
    await this.settled();
  }
}
