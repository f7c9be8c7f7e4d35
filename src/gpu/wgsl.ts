// Loads a shader from wgsl/ the same way in Node, Deno and browsers (where wgsl/ is served beside the code).
// @vite-ignore: Vite would rewrite this at build time and drop the trailing slash; browsers resolve it fine.
import { runtime } from "../platform.ts";

const WGSL_DIR = new URL(/* @vite-ignore */ "../../wgsl/", import.meta.url);

/** Shaders a bundle carries inline, by name: the edge coordinator's (server/serve-edge.ts), whose modules may do
 *  no I/O while they load, yet the kernels' modules (imported by the job kinds' host checks) load theirs then. */
const inline = () => (globalThis as { __WGSL__?: Record<string, string> }).__WGSL__;

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
  const carried = inline();
  if (typeof nameOrUrl === "string" && carried && Object.hasOwn(carried, nameOrUrl)) {
    return Promise.resolve(carried[nameOrUrl]);
  }
  return loadText(typeof nameOrUrl === "string" ? new URL(nameOrUrl, WGSL_DIR) : nameOrUrl);
}
