// Builds the browser volunteer page (src/volunteer/browser/) into a directory the coordinator serves at
// /volunteer (AppOptions.volunteerDir): index.html plus two esbuild bundles, page.js (the tab) and
// worker.js (the Web Worker that runs the kernels). esbuild is the binary npm already installed (via tsx/vite); it is
// spawned through node:child_process, which works under Deno and Node alike.
import { execFile } from "node:child_process";
import { copyFile, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { args, isMain } from "../src/platform.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const PAGE = `${ROOT}src/volunteer/browser/`;
export const DEFAULT_PAGE_DIR = `${ROOT}.cache/volunteer-page`;

const built = new Map<string, Promise<string>>();

async function copyShaders(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const e of await readdir(from, { withFileTypes: true })) {
    if (e.isDirectory()) await copyShaders(`${from}/${e.name}`, `${to}/${e.name}`);
    else if (e.name.endsWith(".wgsl")) await copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}

/** Bundle once per process and directory (about a second); resolves to the directory to serve. */
export function buildVolunteerPage(outDir = DEFAULT_PAGE_DIR): Promise<string> {
  let page = built.get(outDir);
  if (page) return page;
  page = (async () => {
    await mkdir(outDir, { recursive: true });
    await copyFile(`${PAGE}index.html`, `${outDir}/index.html`);
    const esbuild = `${ROOT}node_modules/.bin/esbuild`;
    const args = [
      `${PAGE}page.ts`,
      `${PAGE}worker.ts`,
      "--bundle",
      "--format=esm",
      "--platform=browser",
      "--target=es2022",
      // Node-only code paths are behind runtime checks and dynamic imports; keep them out of the bundle.
      "--external:node:*",
      "--external:webgpu",
      `--outdir=${outDir}`,
      "--log-level=warning",
    ];
    await new Promise<void>((resolve, reject) =>
      execFile(
        esbuild,
        args,
        { cwd: ROOT },
        (err, _stdout, stderr) => (err ? reject(new Error(`esbuild failed: ${stderr || err.message}`)) : resolve()),
      )
    );
    // The shaders load at run time from ../../wgsl/ beside the code (src/gpu/wgsl.ts): served here as
    // /volunteer/wgsl/, so the bundle looks for them at ./wgsl/.
    const bundle = `${outDir}/worker.js`;
    const code = await readFile(bundle, "utf8");
    const parts = code.split(`"../../wgsl/"`);
    if (parts.length !== 2) {
      throw new Error(`build: expected one reference to "../../wgsl/" in the bundle, found ${parts.length - 1}`);
    }
    await writeFile(bundle, parts.join(`"./wgsl/"`));
    await copyShaders(`${ROOT}wgsl`, `${outDir}/wgsl`);
    return outDir;
  })();
  page.catch(() => built.delete(outDir));
  built.set(outDir, page);
  return page;
}

if (isMain(import.meta)) console.log(await buildVolunteerPage(args()[0]));
