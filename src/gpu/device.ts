/// <reference types="@webgpu/types" />
// Device acquisition, in one place, for Deno, browsers and Node (Dawn via the `webgpu` npm package).
import { env, runtime, setEnv } from "../platform.ts";

export type RuntimeName = "deno" | "browser" | "node";

export interface AcquiredDevice {
  device: GPUDevice;
  adapter: GPUAdapter;
  /** Human-readable adapter name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) [deno]". */
  adapterName: string;
  runtime: RuntimeName;
}

export interface AcquireOptions {
  powerPreference?: GPUPowerPreference;
  /** Extra limits beyond the defaults this project asks for. */
  limits?: Record<string, number>;
}

/** Limits we ask for explicitly: as much storage and workgroup memory as the adapter offers. */
const WANTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
] as const;

/** Guaranteed by every WebGPU adapter; we refuse anything below. */
const REQUIRED_MINIMUM: Record<string, number> = {
  maxStorageBufferBindingSize: 128 << 20,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxStorageBuffersPerShaderStage: 8,
};

export const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";

export function detectRuntime(): RuntimeName {
  return runtime;
}

function noAdapterHelp(runtime: RuntimeName): string {
  switch (runtime) {
    case "deno":
      return "Deno found no WebGPU adapter. Without a GPU, install Mesa's software drivers: " +
        "`apt-get install mesa-vulkan-drivers libegl-mesa0` (lavapipe/llvmpipe). On an NVIDIA server install " +
        "the Vulkan loader (`libvulkan1`) and point VK_DRIVER_FILES at nvidia_icd.json.";
    case "node":
      return "Node (Dawn, the `webgpu` npm package) found no adapter. Dawn rejects Debian 12's lavapipe but accepts " +
        "the SwiftShader Vulkan driver shipped with Debian's chromium: `apt-get install chromium` and set " +
        `VK_ICD_FILENAMES=${SWIFTSHADER_ICD} (set automatically when that file exists).`;
    case "browser":
      return "This browser exposes no WebGPU adapter. Use a current Chrome/Chromium (or start Chromium with " +
        "--enable-unsafe-webgpu, plus --enable-features=Vulkan on Linux), or Firefox/Safari with WebGPU enabled.";
  }
}

async function nodeGpu(): Promise<GPU> {
  const fs = await import("node:fs");
  if (!env("VK_ICD_FILENAMES") && !env("VK_DRIVER_FILES") && fs.existsSync(SWIFTSHADER_ICD)) {
    setEnv("VK_ICD_FILENAMES", SWIFTSHADER_ICD);
  }
  let mod: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
  try {
    const specifier = "webgpu"; // a variable, so browser bundlers leave this Node-only import alone
    mod = (await import(/* @vite-ignore */ specifier)) as typeof mod;
  } catch (e) {
    throw new Error(`Node needs the \`webgpu\` npm package (Dawn): npm install webgpu. (${(e as Error).message})`);
  }
  // Dawn's constants (GPUBufferUsage, ...) are not globals in Node until we install them.
  for (const [k, v] of Object.entries(mod.globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  return mod.create([]);
}

let cached: Promise<AcquiredDevice> | undefined;

/** Acquire (once per process) the WebGPU device every kernel runs on. */
export function acquireDevice(opts: AcquireOptions = {}): Promise<AcquiredDevice> {
  cached ??= acquireFresh(opts);
  return cached;
}

/** Mesa prints "XDG_RUNTIME_DIR is invalid or not set" twice when it opens a software adapter without one:
 *  give this process a private one first (read when the adapter is requested). */
async function quietMesa(): Promise<void> {
  if (runtime === "browser" || env("XDG_RUNTIME_DIR")) return;
  const { mkdtempSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  setEnv("XDG_RUNTIME_DIR", mkdtempSync(`${tmpdir()}/xdg-`));
}

export async function acquireFresh(opts: AcquireOptions = {}): Promise<AcquiredDevice> {
  const runtime = detectRuntime();
  await quietMesa();
  const gpu: GPU | undefined = runtime === "node"
    ? await nodeGpu()
    : (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) throw new Error(`WebGPU is not available (navigator.gpu is missing). ${noAdapterHelp(runtime)}`);
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? "high-performance" });
  if (!adapter) throw new Error(noAdapterHelp(runtime));

  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) {
    const have = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof have !== "number") continue;
    const min = REQUIRED_MINIMUM[name];
    if (min !== undefined && have < min) {
      throw new Error(`Adapter "${describe(adapter)}" offers ${name}=${have}, below the ${min} this project needs.`);
    }
    requiredLimits[name] = have;
  }
  Object.assign(requiredLimits, opts.limits ?? {});
  // Timestamp queries, where offered, for Runtime.startProfile.
  const requiredFeatures: GPUFeatureName[] = adapter.features.has("timestamp-query") ? ["timestamp-query"] : [];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  device.addEventListener?.("uncapturederror", (ev) => {
    console.error("WebGPU uncaptured error:", (ev as GPUUncapturedErrorEvent).error.message);
  });
  return { device, adapter, adapterName: `${describe(adapter)} [${runtime}]`, runtime };
}

function describe(adapter: GPUAdapter): string {
  const info = adapter.info ?? ({} as GPUAdapterInfo);
  const parts = [info.description, info.vendor && `vendor ${info.vendor}`, info.architecture, info.device]
    .filter((s) => s && s !== "0");
  return parts.length ? parts.join(", ") : "unnamed adapter";
}
