// The coordinator's client, for volunteers (src/volunteer/), tests and benchmarks: one method per route,
// answers parsed with the wire schemas of ./api.ts, arrays sent and received as raw bytes.
import type { z } from "zod";
import { Invites, JobCreated, JobStatus, Lease, Registration, SubmitStatus } from "./api.ts";
import { arrayBytes, formatShape, isDType, parseShape, typedArray } from "./arrays.ts";
import type { ArrayValue } from "./job-kind.ts";

/** A refused or failed call: the HTTP status and the server's `{ error }` message. */
export class CoordinatorError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export async function errorOf(res: Response): Promise<CoordinatorError> {
  let msg = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { error?: string };
    if (body.error) msg = `${res.status}: ${body.error}`;
  } catch {
    // not JSON: keep the status line
  }
  return new CoordinatorError(res.status, msg);
}

const path = (...parts: string[]) => parts.map(encodeURIComponent).join("/");

export class CoordinatorClient {
  readonly server: string;

  // Browsers refuse fetch called with another `this`: call it as a plain function.
  constructor(
    server: string,
    readonly token?: string,
    private readonly fetchImpl: typeof fetch = (input, init) => fetch(input, init),
  ) {
    this.server = server.replace(/\/+$/, "");
  }

  /** The same server with another token. */
  as(token: string): CoordinatorClient {
    return new CoordinatorClient(this.server, token, this.fetchImpl);
  }

  /** The raw answer of `method route` (tests that look at statuses use it). */
  request(
    method: string,
    route: string,
    init: {
      json?: unknown;
      headers?: Record<string, string>;
      body?: Uint8Array;
      signal?: AbortSignal;
      keepalive?: boolean;
    } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = {
      ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      ...init.headers,
    };
    if (init.json !== undefined) headers["content-type"] = "application/json";
    const body = init.json !== undefined
      ? JSON.stringify(init.json)
      : (init.body as Uint8Array<ArrayBuffer> | undefined);
    return this.fetchImpl(`${this.server}${route}`, {
      method,
      headers,
      body,
      signal: init.signal,
      keepalive: init.keepalive,
    });
  }

  private async call<S extends z.ZodType>(
    schema: S,
    method: string,
    route: string,
    json?: unknown,
    ok = 200,
  ): Promise<z.output<S>> {
    const res = await this.request(method, route, { json });
    if (res.status !== ok) throw await errorOf(res);
    return schema.parse(await res.json());
  }

  register(name?: string, agent?: string, invite?: string): Promise<Registration> {
    return this.call(Registration, "POST", "/v1/volunteers", { name, agent, invite }, 201);
  }

  /** Single-use registration invites (admin). */
  async createInvites(count = 1): Promise<string[]> {
    return (await this.call(Invites, "POST", "/v1/invites", { count }, 201)).invites;
  }

  async createJob(kind: string, spec: unknown, opts: { public?: boolean } = {}): Promise<string> {
    return (await this.call(JobCreated, "POST", "/v1/jobs", { kind, spec, ...opts }, 201)).jobId;
  }

  jobStatus(jobId: string): Promise<JobStatus> {
    return this.call(JobStatus, "GET", `/v1/jobs/${path(jobId)}`);
  }

  async reportFile(jobId: string, file: string): Promise<Uint8Array> {
    const res = await this.request(
      "GET",
      `/v1/jobs/${path(jobId)}/report/${file.split("/").map(encodeURIComponent).join("/")}`,
    );
    if (!res.ok) throw await errorOf(res);
    return new Uint8Array(await res.arrayBuffer());
  }

  /** A shard of one of `kinds` (all kinds when absent), or null when nothing is ready. */
  async lease(kinds?: string[]): Promise<Lease | null> {
    const res = await this.request("POST", "/v1/leases", { json: kinds ? { kinds } : {} });
    if (res.status === 204) return null;
    if (res.status !== 200) throw await errorOf(res);
    return Lease.parse(await res.json());
  }

  async heartbeat(leaseId: string, fence: number): Promise<void> {
    const res = await this.request("POST", `/v1/leases/${path(leaseId)}/heartbeat`, { json: { fence } });
    if (!res.ok) throw await errorOf(res);
    await res.body?.cancel();
  }

  /** PUT /v1/leases/:leaseId/arrays/:name?fence=N with the array's raw bytes. */
  async putArray(leaseId: string, fence: number, name: string, a: ArrayValue, signal?: AbortSignal): Promise<void> {
    const res = await this.request("PUT", `/v1/leases/${path(leaseId, "arrays", name)}?fence=${fence}`, {
      headers: { "content-type": "application/octet-stream", "x-dtype": a.dtype, "x-shape": formatShape(a.shape) },
      body: arrayBytes(a),
      signal,
    });
    if (res.status !== 204) throw await errorOf(res);
  }

  /** An accepted result's array. */
  async getArray(jobId: string, key: string, name: string, signal?: AbortSignal): Promise<ArrayValue> {
    const res = await this.fetchImpl(`${this.server}/v1/jobs/${path(jobId, "shards", key, "arrays", name)}`, {
      headers: { authorization: `Bearer ${this.token}` },
      signal,
    });
    if (!res.ok) throw await errorOf(res);
    const dtype = res.headers.get("x-dtype");
    const shape = parseShape(res.headers.get("x-shape"));
    if (!isDType(dtype) || !shape) throw new CoordinatorError(502, `array ${key}/${name}: bad x-dtype/x-shape headers`);
    return { dtype, shape, data: typedArray(dtype, new Uint8Array(await res.arrayBuffer())) };
  }

  submit(leaseId: string, fence: number): Promise<SubmitStatus> {
    return this.call(SubmitStatus, "POST", `/v1/leases/${path(leaseId)}/submit`, { fence });
  }

  /** Give a lease back. `keepalive` lets it outlive a closing page; failures are ignored (the lease then
   *  simply expires). */
  async release(leaseId: string, fence: number): Promise<boolean> {
    try {
      const res = await this.request("POST", `/v1/leases/${path(leaseId)}/release`, {
        json: { fence },
        keepalive: true,
      });
      await res.body?.cancel();
      return res.status === 204;
    } catch {
      return false;
    }
  }
}
