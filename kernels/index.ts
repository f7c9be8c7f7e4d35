// The kernel registry and the user's variants (./variants.ts). Every kernel module registers its op when
// it is imported; ./discover.ts imports them all where a listing needs every op.
export * from "./registry.ts";
import "./variants.ts";
