// Persisted autotune results: a JSON file under .cache/ in Node and Deno, localStorage in browsers.
// Keys name the adapter, so one cache serves several machines.
import { runtime } from "../platform.ts";

const FILE = new URL("../../.cache/autotune.json", import.meta.url);
type Store = Record<string, Record<string, number>>;

let memory: Store | undefined;

async function load(): Promise<Store> {
  if (memory) return memory;
  memory = {};
  try {
    const g = globalThis as { localStorage?: Storage };
    if (runtime === "browser" && g.localStorage) memory = JSON.parse(g.localStorage.getItem("autotune") ?? "{}");
    else {
      const fs = await import("node:fs/promises");
      memory = JSON.parse(await fs.readFile(FILE, "utf8"));
    }
  } catch {
    // no cache yet, or unreadable: start empty
  }
  return memory!;
}

export async function getTuned(key: string): Promise<Record<string, number> | undefined> {
  return (await load())[key];
}

export async function putTuned(key: string, value: Record<string, number>): Promise<void> {
  const store = await load();
  store[key] = value;
  const text = JSON.stringify(store, null, 1);
  try {
    const g = globalThis as { localStorage?: Storage };
    if (runtime === "browser" && g.localStorage) g.localStorage.setItem("autotune", text);
    else {
      const fs = await import("node:fs/promises");
      await fs.mkdir(new URL(".", FILE), { recursive: true });
      await fs.writeFile(FILE, text);
    }
  } catch (e) {
    console.warn(`autotune: could not save the cache (${(e as Error).message}); results stay in memory`);
  }
}
