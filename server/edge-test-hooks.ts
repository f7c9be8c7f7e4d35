// Test-only routes of the edge coordinator (TEST_HOOKS=1, set by the tests' launcher, never in a deployment):
// the store suites call SqlStore methods inside the Durable Object over loopback, with the test's clock,
// and a test may fix the coordinator's random draws. Values travel as JSON with Sets and Maps tagged.
import { ApiError } from "./errors.ts";
import type { SqlStore } from "./store/sql.ts";

export interface TestHooks {
  /** The store's clock, as the test last sent it. */
  now?: number;
  /** Every random draw of the coordinator (solo leases, replays, audits), while set. */
  random?: number;
}

export interface StoreCall {
  /** A SqlStore method, "db.run" / "db.all" (its driver), or "close" (the next call opens it afresh). */
  method: string;
  args: unknown[];
  now?: number;
}

export const encodeValue = (v: unknown): string =>
  JSON.stringify(
    v,
    (_, x) => x instanceof Set ? { $set: [...x] } : x instanceof Map ? { $map: [...x] } : x,
  ) ?? "null";

export const decodeValue = (s: string): unknown =>
  JSON.parse(s, (_, x) => x?.$set ? new Set(x.$set) : x?.$map ? new Map(x.$map) : x);

export async function storeHook(
  req: Request,
  hooks: TestHooks,
  store: () => Promise<SqlStore>,
  forget: () => void,
): Promise<Response> {
  const path = new URL(req.url).pathname;
  if (path === "/__test/random") {
    hooks.random = ((await req.json()) as { value?: number }).value;
    return new Response(null, { status: 204 });
  }
  const call = decodeValue(await req.text()) as StoreCall;
  if (call.now !== undefined) hooks.now = call.now;
  try {
    if (call.method === "close") {
      forget();
      return Response.json({ value: null });
    }
    const s = await store();
    const [target, name] = call.method.startsWith("db.") ? [s.db, call.method.slice(3)] : [s, call.method];
    const f = (target as unknown as Record<string, (...a: unknown[]) => unknown>)[name];
    if (typeof f !== "function") throw new Error(`no store method ${call.method}`);
    return new Response(encodeValue({ value: await f.apply(target, call.args) }));
  } catch (e) {
    const status = e instanceof ApiError ? e.status : undefined;
    return new Response(encodeValue({ error: { message: (e as Error).message, status } }));
  }
}
