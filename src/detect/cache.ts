// The detect pipeline's on-disk cache: every stage's output is stored under a key that hashes the
// settings it depends on, so a rerun with one changed setting redoes only what that setting touches.
import { joinPath, pathKind, readText, writeBytesAtomic } from "../data/io.ts";
import type { Runtime } from "../gpu/runtime.ts";
import { loadModel, saveModel } from "../nn/checkpoint.ts";
import type { Model } from "../nn/models.ts";

/** Stable short hash of a JSON-able value (FNV-1a over the canonical JSON, keys sorted). */
export function keyOf(v: unknown): string {
  const s = JSON.stringify(
    v,
    (_, x) => (x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort()) : x),
  );
  let h = 0x811c9dc5, h2 = 0x01000193;
  for (let i = 0; i < s.length; i++) {
    h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
    h2 = Math.imul(h2 ^ s.charCodeAt(i), 0x5bd1e995);
  }
  return (h >>> 0).toString(16).padStart(8, "0") + (h2 >>> 0).toString(16).padStart(8, "0");
}

/** `dir/key.json`, made by `make` the first time. */
export async function cachedJson<T>(
  dir: string,
  key: string,
  make: () => Promise<T>,
): Promise<{ value: T; hit: boolean }> {
  const path = joinPath(dir, `${key}.json`);
  if ((await pathKind(path)) === "file") return { value: JSON.parse(await readText(path)) as T, hit: true };
  const value = await make();
  await writeBytesAtomic(path, new TextEncoder().encode(JSON.stringify(value)));
  return { value, hit: false };
}

/** `dir/key.safetensors`, trained by `make` the first time. */
export async function cachedModel(
  rt: Runtime,
  dir: string,
  key: string,
  make: () => Promise<Model>,
  meta: Record<string, unknown>,
): Promise<Model> {
  const path = joinPath(dir, `${key}.safetensors`);
  if ((await pathKind(path)) === "file") return (await loadModel(rt, path)).model;
  const m = await make();
  await saveModel(rt, m, path, meta);
  return m;
}
