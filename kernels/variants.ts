// Your own kernel variants: add one import line per module that registers a variant
// (see kernels/README.md). Tests and benchmarks then run it beside the built-in ones, and
// KERNEL_VARIANTS="op=name" makes models use it.
