// Loads a shader from wgsl/ the same way in Node, Deno and browsers (where wgsl/ is served beside the code).
// @vite-ignore: Vite would rewrite this at build time and drop the trailing slash; browsers resolve it fine.
import { runtime } from "../platform.ts";

const WGSL_DIR = new URL(/* @vite-ignore */ "../../wgsl/", import.meta.url);

export async function loadText(url: URL): Promise<string> {
  if (url.protocol === "file:" && runtime === "node") {
    const { readFile } = await import("node:fs/promises");
    return readFile(url, "utf8");
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot load ${url}: HTTP ${res.status}`);
  return res.text();
}

/** Source of `wgsl/NAME` (or of any URL, for variants that live outside wgsl/). */
export function wgsl(nameOrUrl: string | URL): Promise<string> {
  return loadText(typeof nameOrUrl === "string" ? new URL(nameOrUrl, WGSL_DIR) : nameOrUrl);
}
