// Setup file for vitest.browser.config.ts. Browsers have no `process`, so testSeed() (test/support/rng.ts)
// would never see TEST_SEED and its "rerun with TEST_SEED=..." hint would not work: forward just that
// variable, which the config passes in through import.meta.env. No `versions.node`, so
// detectRuntime() still says "browser".
const env = (import.meta as unknown as { env: Record<string, string | undefined> }).env;
const g = globalThis as { process?: { env: Record<string, string | undefined> } };
if (!g.process && env.TEST_SEED) g.process = { env: { TEST_SEED: env.TEST_SEED } };
