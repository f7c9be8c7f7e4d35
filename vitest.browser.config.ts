import { playwright } from "@vitest/browser-playwright";
import { defineConfig } from "vitest/config";

// GPU kernel tests in headless Chromium's WebGPU (SwiftShader), instead of Dawn in Node (vitest.config.ts).
// Uses the system Chromium; never `npx playwright install`.
//   npx vitest run -c vitest.browser.config.ts

export default defineConfig({
  test: {
    include: [
      "test/kernels/**/*.test.ts",
      "test/nn/**/*.test.ts",
      "test/attribution/**/*.test.ts",
      "test/detect/**/*.gpu.test.ts",
      "test/datamodels/**/*.gpu.test.ts",
    ],
    // Reads CIFAR-10 from disk, which a page cannot: Deno runs it.
    exclude: ["test/nn/cifar-train.test.ts", "**/*.deno.test.ts", "**/node_modules/**"],
    // Browsers have no process.env: pass TEST_SEED through import.meta.env; the setup file exposes it
    // where testSeed() looks.
    env: process.env.TEST_SEED ? { TEST_SEED: process.env.TEST_SEED } : {},
    setupFiles: ["test/support/browser-env.ts"],
    // One software GPU: run files one at a time.
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 300_000,
    browser: {
      enabled: true,
      headless: true,
      provider: playwright({
        launchOptions: {
          executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
          // Headless Chromium exposes navigator.gpu but no adapter without this flag; with it, Chromium
          // uses SwiftShader when there is no GPU. (Playwright already adds --no-sandbox.)
          args: ["--enable-unsafe-webgpu"],
        },
      }),
      instances: [{ browser: "chromium" }],
    },
  },
});
