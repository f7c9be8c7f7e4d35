// Every kernel op, plus the user variants listed in variants.ts. Import this to see them all registered.
export * from "./registry.ts";
export * as batch from "./batch.ts";
export * as batchnorm from "./batchnorm.ts";
export * as conv2d from "./conv2d.ts";
export * as elementwise from "./elementwise.ts";
export * as fill from "./fill.ts";
export * as gemv from "./gemv.ts";
export * as loss from "./loss.ts";
export * as matmul from "./matmul.ts";
export * as pool from "./pool.ts";
export * as project from "./project.ts";
export * as random from "./random.ts";
export * as reduce from "./reduce.ts";
export * as search from "./search.ts";
export * as sgd from "./sgd.ts";
export * as softmax from "./softmax.ts";
export * as transpose from "./transpose.ts";
import "./variants.ts";
