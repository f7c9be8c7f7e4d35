// The coordinator's HTTP API on the wire: one zod schema per request and answer. The server validates
// requests with them (server/app.ts); the client (./client.ts) parses answers with them, so both sides
// agree on one definition.
import { z } from "zod";
import { DTYPES } from "./arrays.ts";

export const ArraySpec = z.object({ dtype: z.enum(DTYPES), shape: z.array(z.number().int().min(-1)) });

export const CreateJob = z.object({
  kind: z.string().min(1).max(100),
  spec: z.unknown(),
  /** Anyone may read the job's status and report; otherwise only the admin token (server/README.md). */
  public: z.boolean().optional(),
});
export const JobCreated = z.object({ jobId: z.string() });

export const JobState = z.enum(["running", "finishing", "done", "failed"]);
export const JobStatus = z.object({
  id: z.string(),
  kind: z.string(),
  state: JobState,
  shards: z.object({ total: z.number(), accepted: z.number(), leased: z.number(), pending: z.number() }),
  summary: z.record(z.string(), z.unknown()).optional(),
  error: z.string().optional(),
  /** Files the job's finish wrote, served at /v1/jobs/:id/report/:file. */
  files: z.array(z.string()),
  /** What happened besides the shards' progress (a quarantined volunteer's shards requeued), oldest first. */
  events: z.array(z.object({ at: z.number(), message: z.string() })).default([]),
});
export type JobStatus = z.output<typeof JobStatus>;

export const Register = z.object({
  name: z.string().max(200).optional(),
  agent: z.string().max(500).optional(),
  /** An admin-issued invite: required when the coordinator runs with `--registration invite`. */
  invite: z.string().max(200).optional(),
});
export const CreateInvites = z.object({ count: z.number().int().min(1).max(1000).default(1) });
export const Invites = z.object({ invites: z.array(z.string()) });
export const Registration = z.object({ volunteerId: z.string(), token: z.string() });
export type Registration = z.output<typeof Registration>;

export const LeaseRequest = z.object({ kinds: z.array(z.string().max(100)).max(50).optional() });

/** A shard as a volunteer receives it: what to run (`kind`, `payload`), what it reads and must return. */
export const LeasedShard = z.object({
  jobId: z.string(),
  key: z.string(),
  kind: z.string(),
  payload: z.unknown(),
  deps: z.array(z.string()),
  outputs: z.record(z.string(), ArraySpec),
  maxBytes: z.number().int().optional(),
});
export type LeasedShard = z.output<typeof LeasedShard>;

export const Lease = z.object({
  leaseId: z.string(),
  fence: z.number().int(),
  deadline: z.number(),
  /** The lease length: a worker paces heartbeats on its own clock, which may differ from the server's. */
  leaseMs: z.number(),
  shard: LeasedShard,
});
export type Lease = z.output<typeof Lease>;

export const Fence = z.object({ fence: z.coerce.number().int().nonnegative() });
export const LeaseParam = z.object({ leaseId: z.string().uuid() });
export const Heartbeat = z.object({ deadline: z.number(), leaseMs: z.number() });

export const SubmitStatus = z.object({
  status: z.enum(["accepted", "pending-quorum", "rejected"]),
  reason: z.string().optional(),
});
export type SubmitStatus = z.output<typeof SubmitStatus>;

/** Every 4xx/5xx answer. */
export const ErrorBody = z.object({ error: z.string() });
