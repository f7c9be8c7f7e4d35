// Every kernel module in kernels/, found on disk and imported, so each registers its op: the workbench
// (src/cli/kernels.ts) and the contract test use it; nothing lists the ops by hand. Needs a file system
// (Deno or Node): browsers import the kernels they use directly.
import { readdir } from "node:fs/promises";
import { ops } from "./index.ts";

const DIR = new URL("./", import.meta.url);

/** The .ts modules of kernels/. */
export async function kernelModules(): Promise<string[]> {
  return (await readdir(DIR)).filter((f) => f.endsWith(".ts")).sort();
}

/** Import every kernel module; returns the registry, now holding every op. */
export async function loadKernels(): Promise<typeof ops> {
  for (const f of await kernelModules()) await import(new URL(f, DIR).href);
  return ops;
}
