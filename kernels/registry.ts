// Kernel variants. Every op (matmul, softmax, ...) has one or more registered WGSL implementations that
// share the op's binding contract. Tests and benchmarks run every variant; models call the op, which
// runs the active one. Select with `useVariant(op, name)` or KERNEL_VARIANTS="matmul=mine,softmax=fast".
// How to add your own: kernels/README.md.

import { env } from "../src/platform.ts";

export interface Variant {
  /** Unique within its op. */
  name: string;
  /** Shader file, for listings and messages (relative to the project root or a URL). */
  file: string;
  /** WGSL source. */
  code: string;
  description?: string;
}

export class KernelOp<V extends Variant = Variant> {
  readonly variants: V[] = [];
  #active?: string;
  constructor(readonly name: string, readonly description: string) {}

  /** Add a variant (or replace the one with the same name). */
  register(v: V): V {
    const i = this.variants.findIndex((x) => x.name === v.name);
    if (i >= 0) this.variants[i] = v;
    else this.variants.push(v);
    return v;
  }

  use(name: string): void {
    if (!this.variants.some((v) => v.name === name)) {
      throw new Error(
        `kernel "${this.name}" has no variant "${name}" (has: ${this.variants.map((v) => v.name).join(", ")})`,
      );
    }
    this.#active = name;
  }

  /** The variant chosen with `use` or KERNEL_VARIANTS, if any. */
  get chosenName(): string | undefined {
    return this.#active ?? envChoice(this.name);
  }

  get activeName(): string {
    return this.chosenName ?? this.variants[0].name;
  }

  get active(): V {
    const name = this.activeName;
    const v = this.variants.find((x) => x.name === name);
    if (!v) throw new Error(`KERNEL_VARIANTS asks for ${this.name}=${name}, which is not registered`);
    return v;
  }
}

export const ops = new Map<string, KernelOp>();

export function defineOp<V extends Variant>(name: string, description: string): KernelOp<V> {
  const op = new KernelOp<V>(name, description);
  ops.set(name, op as unknown as KernelOp);
  return op;
}

export function useVariant(op: string, variant: string): void {
  const k = ops.get(op);
  if (!k) throw new Error(`no kernel op "${op}" (have: ${[...ops.keys()].join(", ")})`);
  k.use(variant);
}

function envChoice(op: string): string | undefined {
  for (const pair of (env("KERNEL_VARIANTS") ?? "").split(",")) {
    const [k, v] = pair.split("=").map((s) => s.trim());
    if (k === op && v) return v;
  }
  return undefined;
}

/** Split a 1-D workgroup count over x and y (each at most 65535), for flat kernels that fold y into x. */
export function grid1d(items: number, workgroupSize: number): [number, number] {
  const groups = Math.ceil(items / workgroupSize);
  if (groups <= 65535) return [groups, 1];
  const x = 65535;
  return [x, Math.ceil(groups / x)];
}
