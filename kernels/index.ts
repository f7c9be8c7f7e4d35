// Every kernel op, plus the user variants listed in variants.ts. Import this to see them all registered.
export * from "./registry.ts";
export * as elementwise from "./elementwise.ts";
export * as fill from "./fill.ts";
export * as matmul from "./matmul.ts";
export * as random from "./random.ts";
export * as reduce from "./reduce.ts";
export * as softmax from "./softmax.ts";
export * as transpose from "./transpose.ts";
import "./variants.ts";
