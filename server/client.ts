// Typed client for the coordinator: Hono's `hc` over the app's routes, plus the binary array routes.
import { hc } from "hono/client";
import { formatShape, parseShape, typedArray, arrayBytes, isDType } from "./arrays.ts";
import type { AppType } from "./app.ts";
import type { ArrayValue } from "./job-kind.ts";

export function coordinatorClient(baseUrl: string, token?: string, fetchImpl?: typeof fetch) {
  return hc<AppType>(baseUrl, {
    headers: token ? { authorization: `Bearer ${token}` } : undefined,
    ...(fetchImpl ? { fetch: fetchImpl } : {}),
  });
}
export type CoordinatorClient = ReturnType<typeof coordinatorClient>;

/** The error of a failed call: status and the server's `{ error }` message. */
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

const trimSlash = (u: string) => u.replace(/\/+$/, "");

/** PUT /v1/leases/:leaseId/arrays/:name?fence=N with the array's raw bytes. */
export async function putArray(baseUrl: string, token: string, leaseId: string, fence: number, name: string, a: ArrayValue, signal?: AbortSignal): Promise<void> {
  const res = await fetch(`${trimSlash(baseUrl)}/v1/leases/${encodeURIComponent(leaseId)}/arrays/${encodeURIComponent(name)}?fence=${fence}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/octet-stream", "x-dtype": a.dtype, "x-shape": formatShape(a.shape) },
    body: arrayBytes(a) as Uint8Array<ArrayBuffer>,
    signal,
  });
  if (res.status !== 204) throw await errorOf(res);
}

/** GET /v1/jobs/:id/shards/:key/arrays/:name: an accepted result's array. */
export async function getArray(baseUrl: string, token: string, jobId: string, key: string, name: string, signal?: AbortSignal): Promise<ArrayValue> {
  const res = await fetch(`${trimSlash(baseUrl)}/v1/jobs/${encodeURIComponent(jobId)}/shards/${encodeURIComponent(key)}/arrays/${encodeURIComponent(name)}`, {
    headers: { authorization: `Bearer ${token}` },
    signal,
  });
  if (!res.ok) throw await errorOf(res);
  const dtype = res.headers.get("x-dtype");
  const shape = parseShape(res.headers.get("x-shape"));
  if (!isDType(dtype) || !shape) throw new CoordinatorError(502, `array ${key}/${name}: bad x-dtype/x-shape headers`);
  return { dtype, shape, data: typedArray(dtype, new Uint8Array(await res.arrayBuffer())) };
}

/** POST /v1/leases/:leaseId/release. `keepalive` lets it outlive a closing page; failures are ignored
 *  (the lease then simply expires). */
export async function releaseLease(baseUrl: string, token: string, leaseId: string, fence: number): Promise<boolean> {
  try {
    const res = await fetch(`${trimSlash(baseUrl)}/v1/leases/${encodeURIComponent(leaseId)}/release`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ fence }),
      keepalive: true,
    });
    await res.body?.cancel();
    return res.status === 204;
  } catch {
    return false;
  }
}
