// The slice of vitest's API our kernel tests use, on top of Deno.test, so the same test files run on
// Deno's WebGPU (llvmpipe/lavapipe, or a real GPU). deno.json maps "vitest" here.
import { deno } from "../../src/platform.ts";

const prefix: string[] = [];

export function describe(name: string, body: () => void): void {
  prefix.push(name);
  try {
    body();
  } finally {
    prefix.pop();
  }
}

export function it(name: string, fn: () => unknown): void {
  // WebGPU keeps device resources alive across tests by design: the device is shared.
  deno!.test({ name: [...prefix, name].join(" > "), fn, sanitizeOps: false, sanitizeResources: false });
}
export const test = it;

function fail(msg: string): never {
  throw new Error(msg);
}

const show = (v: unknown) => {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
};

function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || !a || !b) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length &&
    ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function matchesError(e: unknown, expected?: RegExp | string): boolean {
  if (expected === undefined) return true;
  const msg = e instanceof Error ? e.message : String(e);
  return typeof expected === "string" ? msg.includes(expected) : expected.test(msg);
}

export function expect(actual: unknown) {
  const n = actual as number;
  const matchers = {
    toBe: (v: unknown) => Object.is(actual, v) || fail(`expected ${show(actual)} to be ${show(v)}`),
    toEqual: (v: unknown) => deepEqual(actual, v) || fail(`expected ${show(actual)} to equal ${show(v)}`),
    toBeGreaterThan: (v: number) => n > v || fail(`expected ${n} > ${v}`),
    toBeGreaterThanOrEqual: (v: number) => n >= v || fail(`expected ${n} >= ${v}`),
    toBeLessThan: (v: number) => n < v || fail(`expected ${n} < ${v}`),
    toBeLessThanOrEqual: (v: number) => n <= v || fail(`expected ${n} <= ${v}`),
    toMatch: (re: RegExp | string) =>
      (typeof re === "string" ? String(actual).includes(re) : re.test(String(actual))) ||
      fail(`expected ${show(actual)} to match ${re}`),
    toThrow: (expected?: RegExp | string) => {
      try {
        (actual as () => unknown)();
      } catch (e) {
        if (matchesError(e, expected)) return true;
        fail(`threw "${(e as Error).message}", expected ${expected}`);
      }
      fail(`expected a throw matching ${expected}`);
    },
    rejects: {
      toThrow: async (expected?: RegExp | string) => {
        try {
          await (actual as Promise<unknown>);
        } catch (e) {
          if (matchesError(e, expected)) return true;
          fail(`rejected with "${(e as Error).message}", expected ${expected}`);
        }
        fail(`expected a rejection matching ${expected}`);
      },
    },
  };
  // `.not.m(...)` holds when `m(...)` fails.
  const not = Object.fromEntries(
    Object.entries(matchers)
      .filter(([, m]) => typeof m === "function")
      .map(([name, m]) => [
        name,
        (...args: unknown[]) => {
          try {
            (m as (...a: unknown[]) => unknown)(...args);
          } catch {
            return true;
          }
          fail(`expected ${show(actual)} not ${name} ${args.map(show).join(", ")}`);
        },
      ]),
  ) as Omit<typeof matchers, "rejects">;
  return { ...matchers, not };
}
