// Your own kernel variants: register them here (or in a module imported from here). Tests and
// benchmarks then run them beside the built-in ones, and KERNEL_VARIANTS="op=name" makes every model use
// them without changing model code. See kernels/README.md.
import { wgsl } from "../src/gpu/wgsl.ts";
import { matmulOp } from "./matmul.ts";

// Example: the naive matmul in wgsl/examples/matmul_naive.wgsl (one invocation per output).
const NAIVE = await wgsl("examples/matmul_naive.wgsl");
matmulOp.register({
  name: "naive",
  file: "wgsl/examples/matmul_naive.wgsl",
  code: NAIVE,
  description: "example user variant: one invocation per output",
  tiles: [{ WG_X: 16, WG_Y: 16 }],
  shader: (t) => ({ code: NAIVE, constants: t }),
  supports: (p) => !p.transA && !p.transB,
  workgroups: (p, t) => [Math.ceil(p.N / t.WG_X), Math.ceil(p.M / t.WG_Y), p.batch],
});
