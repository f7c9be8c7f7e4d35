// What the edge coordinator (server/main.worker.ts) is told at start: its options, as a JSON text binding
// (`OPTIONS`) that `npm run serve:edge` writes, or wrangler.toml's [vars] on Cloudflare. JSON has no
// Infinity (a crowd of test volunteers on one address lifts the per-address caps to it): it travels as a string.
import type { AppOptions } from "./app.ts";

type Data<T> = { [K in keyof T as T[K] extends ((...a: never[]) => unknown) | undefined ? never : K]: T[K] };

export type EdgeConfig =
  & Partial<
    Omit<Data<AppOptions>, "store" | "blobs" | "kinds" | "adminToken" | "volunteerDir" | "coordinator" | "instanceId">
  >
  & {
    /** How often the Durable Object's alarm sweeps (finish, revalidate; default 2000 ms). */
    sweepMs?: number;
  };

export const encodeConfig = (c: EdgeConfig): string => JSON.stringify(c, (_, v) => (v === Infinity ? "Infinity" : v));

export const decodeConfig = (s: string | undefined): EdgeConfig =>
  s ? JSON.parse(s, (_, v) => (v === "Infinity" ? Infinity : v)) : {};
