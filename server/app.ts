// The coordinator's HTTP API (Hono, runtime-agnostic): createApp(...) returns the app; its `fetch`
// is the handler for server/http.ts (Node and Deno) or tests, with the client's address in `c.env`.
// Middleware: a rate limit per client address before anything else, bearer tokens (admin for jobs,
// per-volunteer for everything else) with failed attempts limited per address, per-volunteer rate
// limits, body-size limits per route (binary uploads: exactly the planned size), zod validation.
import { zValidator } from "@hono/zod-validator";
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { timingSafeEqual } from "node:crypto";
import { extname, join, normalize, sep } from "node:path";
import { z } from "zod";
import { CreateInvites, CreateJob, Fence, LeaseParam, LeaseRequest, Register } from "../src/protocol/api.ts";
import { formatShape } from "../src/protocol/arrays.ts";
import { type BlobStore, sha256Hex } from "./blobs.ts";
import { Coordinator, type CoordinatorOptions } from "./coordinator.ts";
import { ApiError } from "./errors.ts";
import { fileResponse } from "./files.ts";
import type { ConnInfo } from "./http.ts";
import type { JobKindRegistry } from "../src/protocol/job-kind.ts";
import { addressKey, type RateLimit, RateLimiter } from "./rate-limit.ts";
import type { SqlStore, VolunteerRow } from "./store/sql.ts";

export type { RateLimit };

/** Rate limits and their defaults (server/README.md lists them). */
export const DEFAULT_RATE_LIMITS = {
  /** Every request from one client address (IPv6: one /64), checked before anything else. */
  address: { perSecond: 500, burst: 2000 },
  /** Requests per volunteer, once its token is known. */
  volunteer: { perSecond: 100, burst: 400 },
  /** Registrations per client address. */
  register: { perSecond: 0.5, burst: 20 },
  /** Failed authentications (unknown volunteer token, wrong admin token) per client address. */
  authFailure: { perSecond: 1, burst: 20 },
} satisfies Record<string, RateLimit>;

export interface AppOptions extends Omit<CoordinatorOptions, "store" | "blobs" | "kinds"> {
  store: SqlStore;
  blobs: BlobStore;
  kinds: JobKindRegistry;
  adminToken: string;
  /** Per volunteer (default DEFAULT_RATE_LIMITS.volunteer). */
  rateLimit?: RateLimit;
  /** Per client address: all requests, registrations, failed authentications (DEFAULT_RATE_LIMITS). */
  addressRateLimit?: RateLimit;
  registerRateLimit?: RateLimit;
  authFailureLimit?: RateLimit;
  /** Who may register: anyone ("open", the default), or whoever holds an admin-issued invite ("invite"). */
  registration?: "open" | "invite";
  /** Take the client address from the last X-Forwarded-For entry (behind one reverse proxy). */
  trustProxy?: boolean;
  /** JSON bodies (default 64 KiB; job creation 1 MiB). */
  jsonLimit?: number;
  /** Directory served at /volunteer (the browser worker page). */
  volunteerDir?: string;
  /** Extra sub-apps mounted at "/" (e.g. the data sets routes of server/jobs), given the auth guards. */
  routes?: ((guards: { admin: MiddlewareHandler<Env> }) => Hono)[];
  /** Use this coordinator instead of building one from the options. */
  coordinator?: Coordinator;
}

type Env = { Bindings: Partial<ConnInfo> | undefined; Variables: { volunteer: VolunteerRow; address: string } };

const randomToken = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
const sha256Text = (s: string) => sha256Hex(new TextEncoder().encode(s));

const bearer = (c: Context): string | null => {
  const h = c.req.header("authorization");
  const m = h ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
  return m ? m[1] : null;
};

function zodMessage(issues: readonly { path: readonly PropertyKey[]; message: string }[]): string {
  return issues.map((i) => `${i.path.map(String).join(".") || "body"}: ${i.message}`).join("; ");
}

/** zod validation with a clear 400 `{ error }`. */
const validate = <T extends z.ZodType, Target extends "json" | "query" | "param">(target: Target, schema: T) =>
  zValidator(target, schema, (r, c) => {
    if (!r.success) {
      return c.json({ error: `invalid ${target === "json" ? "body" : target}: ${zodMessage(r.error.issues)}` }, 400);
    }
  });

export const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".mjs": "text/javascript",
  ".css": "text/css",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".png": "image/png",
  ".svg": "image/svg+xml",
};

export function createApp(o: AppOptions) {
  const coord = o.coordinator ?? new Coordinator(o);
  const jsonLimit = o.jsonLimit ?? 64 * 1024;
  const perVolunteer = new RateLimiter(o.rateLimit ?? DEFAULT_RATE_LIMITS.volunteer);
  const perAddress = new RateLimiter(o.addressRateLimit ?? DEFAULT_RATE_LIMITS.address);
  const registrations = new RateLimiter(o.registerRateLimit ?? DEFAULT_RATE_LIMITS.register);
  const authFailures = new RateLimiter(o.authFailureLimit ?? DEFAULT_RATE_LIMITS.authFailure);
  const adminHash = sha256Text(o.adminToken);

  const tooLarge = (max: number) => (c: Context) => c.json({ error: `body too large: at most ${max} bytes here` }, 413);
  const jsonBody = (max = jsonLimit) => bodyLimit({ maxSize: max, onError: tooLarge(max) });

  const limit = (limiter: RateLimiter, key: string, what: string) => {
    const wait = limiter.take(key);
    if (wait) throw new HTTPException(429, { message: `${what}; retry in ${wait} ms` });
  };

  // Failed authentications cost the address a token each; with none left, every attempt from it gets 429
  // (so guessing the admin token is as slow as the bucket refills).
  const lockedOut = (c: Context<Env>) => {
    if (authFailures.wait(c.get("address"))) {
      limit(authFailures, c.get("address"), "too many failed authentications from your address");
    }
  };
  const refused = (c: Context<Env>, error: ApiError): ApiError => {
    limit(authFailures, c.get("address"), "too many failed authentications from your address");
    return error;
  };

  const admin: MiddlewareHandler<Env> = async (c, next) => {
    lockedOut(c);
    const t = bearer(c);
    if (!t) throw refused(c, new ApiError(401, "missing bearer token (Authorization: Bearer <admin token>)"));
    // Compare digests: constant time, and equal lengths whatever the token's length.
    if (!timingSafeEqual(Buffer.from(sha256Text(t), "hex"), Buffer.from(adminHash, "hex"))) {
      throw refused(c, new ApiError(403, "not the admin token"));
    }
    limit(perVolunteer, "admin", "rate limit exceeded");
    await next();
  };

  const volunteer: MiddlewareHandler<Env> = async (c, next) => {
    lockedOut(c);
    const t = bearer(c);
    if (!t) throw new ApiError(401, "missing bearer token (register with POST /v1/volunteers)");
    const v = await coord.store.volunteerByTokenHash(sha256Text(t));
    if (!v) throw refused(c, new ApiError(401, "unknown volunteer token"));
    if (v.quarantine) throw new ApiError(403, `this volunteer is quarantined: ${v.quarantine}`);
    // Buckets are made for known volunteers only: random tokens cannot crowd out a real one's.
    limit(perVolunteer, v.id, "rate limit exceeded");
    c.set("volunteer", v);
    await next();
  };

  // A job's status and report tell whoever reads them which examples were flagged: a poisoner learns
  // whether the poisons were caught. So they are the admin's, unless the job was created public.
  const reader: MiddlewareHandler<Env> = async (c, next) => {
    const job = await coord.store.getJob(c.req.param("id") ?? "");
    if (!job) throw new ApiError(404, `unknown job ${c.req.param("id")}`);
    if (job.public) return next();
    if (!bearer(c)) {
      lockedOut(c);
      throw refused(c, new ApiError(401, `job ${job.id} is private: its status and report need the admin token`));
    }
    return admin(c, next);
  };

  const app = new Hono<Env>()
    .use(async (c, next) => {
      const forwarded = o.trustProxy ? c.req.header("x-forwarded-for")?.split(",").at(-1) : undefined;
      c.set("address", addressKey(forwarded ?? c.env?.remoteAddr));
      limit(perAddress, c.get("address"), "rate limit exceeded for your address");
      await next();
    })
    .post("/v1/jobs", jsonBody(1024 * 1024), admin, validate("json", CreateJob), async (c) => {
      const { kind, spec, public: isPublic } = c.req.valid("json");
      return c.json({ jobId: await coord.createJob(kind, spec, isPublic) }, 201);
    })
    .get("/v1/jobs/:id", reader, async (c) => c.json(await coord.jobStatus(c.req.param("id")), 200))
    .get("/v1/jobs/:id/report/:file{.+}", reader, async (c) => {
      const file = c.req.param("file");
      const bytes = await coord.reportFile(c.req.param("id"), file);
      return c.body(bytes as Uint8Array<ArrayBuffer>, 200, {
        "content-type": CONTENT_TYPES[extname(file)] ?? "application/octet-stream",
      });
    })
    .post("/v1/invites", jsonBody(), admin, validate("json", CreateInvites), async (c) => {
      const invites = Array.from({ length: c.req.valid("json").count }, randomToken);
      await coord.store.createInvites(invites.map(sha256Text));
      return c.json({ invites }, 201);
    })
    .post("/v1/volunteers", jsonBody(), validate("json", Register), async (c) => {
      limit(registrations, c.get("address"), "too many registrations from your address");
      const { name, agent, invite } = c.req.valid("json");
      const byInvite = o.registration === "invite";
      if (byInvite) {
        lockedOut(c);
        if (!invite) throw new ApiError(403, "registration needs an invite from the coordinator's admin");
      }
      const volunteerId = crypto.randomUUID();
      const token = `${volunteerId}.${randomToken()}`;
      // Only hashes are stored: a leaked database leaks neither volunteers' tokens nor unused invites.
      const created = await coord.store.createVolunteer(
        volunteerId,
        name ?? "anonymous",
        agent ?? "",
        sha256Text(token),
        c.get("address"),
        byInvite ? sha256Text(invite!) : undefined,
      );
      if (!created) throw refused(c, new ApiError(403, "unknown or already used invite"));
      return c.json({ volunteerId, token }, 201);
    })
    .post("/v1/leases", jsonBody(), volunteer, validate("json", LeaseRequest), async (c) => {
      const lease = await coord.lease(c.get("volunteer"), c.req.valid("json").kinds);
      if (!lease) return c.body(null, 204);
      return c.json(lease, 200);
    })
    .post(
      "/v1/leases/:leaseId/heartbeat",
      jsonBody(),
      volunteer,
      validate("param", LeaseParam),
      validate("json", Fence),
      async (c) => {
        const deadline = await coord.heartbeat(
          c.req.valid("param").leaseId,
          c.get("volunteer"),
          c.req.valid("json").fence,
        );
        return c.json({ deadline, leaseMs: coord.leaseMs }, 200);
      },
    )
    .get("/v1/jobs/:id/shards/:key{.+}/arrays/:name", volunteer, async (c) => {
      const { meta, bytes } = await coord.acceptedArray(c.req.param("id"), c.req.param("key"), c.req.param("name"));
      return c.body(bytes as Uint8Array<ArrayBuffer>, 200, {
        "content-type": "application/octet-stream",
        "x-dtype": meta.dtype,
        "x-shape": formatShape(meta.shape),
      });
    })
    .put(
      "/v1/leases/:leaseId/arrays/:name",
      volunteer,
      validate("param", LeaseParam.extend({ name: z.string().min(1).max(100) })),
      validate("query", Fence),
      async (c, next) => {
        const ct = c.req.header("content-type") ?? "";
        if (!ct.startsWith("application/octet-stream")) {
          throw new ApiError(415, `arrays are uploaded as application/octet-stream (got "${ct}")`);
        }
        const { leaseId, name } = c.req.valid("param");
        const max = await coord.uploadLimit(leaseId, c.get("volunteer").id, c.req.valid("query").fence, name);
        return bodyLimit({ maxSize: max, onError: tooLarge(max) })(c, next);
      },
      async (c) => {
        const { leaseId, name } = c.req.valid("param");
        const body = new Uint8Array(await c.req.arrayBuffer());
        await coord.putArray(
          leaseId,
          c.get("volunteer").id,
          c.req.valid("query").fence,
          name,
          c.req.header("x-dtype") ?? null,
          c.req.header("x-shape") ?? null,
          body,
        );
        return c.body(null, 204);
      },
    )
    .post(
      "/v1/leases/:leaseId/release",
      jsonBody(),
      volunteer,
      validate("param", LeaseParam),
      validate("json", Fence),
      async (c) => {
        await coord.store.release(c.req.valid("param").leaseId, c.get("volunteer").id, c.req.valid("json").fence);
        return c.body(null, 204);
      },
    )
    .post(
      "/v1/leases/:leaseId/submit",
      jsonBody(),
      volunteer,
      validate("param", LeaseParam),
      validate("json", Fence),
      async (c) => {
        return c.json(
          await coord.submit(c.req.valid("param").leaseId, c.get("volunteer").id, c.req.valid("json").fence),
          200,
        );
      },
    );

  if (o.volunteerDir) {
    const root = normalize(o.volunteerDir);
    app.get("/volunteer/:path{.*}?", async (c) => {
      const rel = c.req.param("path") || "index.html";
      const path = normalize(join(root, rel));
      const inside = path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
      const res = inside
        ? await fileResponse(path, c.req.raw, {
          "content-type": CONTENT_TYPES[extname(path)] ?? "application/octet-stream",
        })
        : null;
      if (!res) throw new ApiError(404, `no file ${rel}`);
      return res;
    });
  }
  for (const r of o.routes ?? []) app.route("/", r({ admin }));

  app.notFound((c) => c.json({ error: `no route ${c.req.method} ${new URL(c.req.url).pathname}` }, 404));
  app.onError((e, c) => {
    if (e instanceof ApiError) return c.json({ error: e.message }, e.status);
    if (e instanceof HTTPException) {
      // Hono's own 4xx (e.g. malformed JSON from the validator) keep their status, as `{ error }`.
      const msg = e.message || (e.status === 400 ? "bad request" : "error");
      if (e.status === 429) {
        const ms = Number(/retry in (\d+) ms/.exec(msg)?.[1] ?? 1000);
        return c.json({ error: msg }, 429, { "retry-after": String(Math.max(1, Math.ceil(ms / 1000))) });
      }
      return c.json({ error: msg }, e.status);
    }
    o.log?.(`internal error on ${c.req.method} ${c.req.url}: ${(e as Error).stack ?? e}`);
    return c.json({ error: "internal error" }, 500);
  });
  return Object.assign(app, { coordinator: coord });
}
