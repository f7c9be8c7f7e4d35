import { existsSync } from "node:fs";
import { defineConfig } from "vitest/config";

// Dawn (the `webgpu` package) reads the Vulkan driver from the process environment, which worker
// threads share with this main thread: point it at SwiftShader before any worker starts.
const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";
if (!process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES && existsSync(SWIFTSHADER_ICD)) {
  process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
}

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Kernel and model tests need a GPU adapter: they run in Chromium (vitest.browser.config.ts) and Deno.
    exclude: [
      "test/kernels/**",
      "test/nn/**",
      "test/attribution/**",
      "**/*.gpu.test.ts",
      "**/*.deno.test.ts",
      "**/node_modules/**",
    ],
    // Dawn crashes in forked workers at teardown; worker threads are fine. One software GPU on two
    // cores: run files one at a time in one worker so they share the device.
    pool: "forks",
    fileParallelism: false,
    isolate: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
