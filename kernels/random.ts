// Counter-based random generator: uniform [0,1), normal (Irwin-Hall, exact) and +-1, each a pure
// function of (seed, stream, index). The TypeScript twin below is bit-identical to wgsl/random_lib.wgsl:
// attribution regenerates random projection matrices from it on every device.
// Binding contract: out (read_write, f32); uniform { n, seed, stream, offset }; overrides WG and DIST.
import { type Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";

export interface RandomVariant extends Variant {
  workgroupSize: number;
}

/** The generator's WGSL functions (rng_bits, rng_uniform, rng_sign, rng_normal), for other shaders to prepend. */
export const RANDOM_LIB = await wgsl("random_lib.wgsl");

export const randomOp = defineOp<RandomVariant>("random", "counter-based uniform, normal and +-1");
randomOp.register({
  name: "default",
  file: "wgsl/random.wgsl",
  code: RANDOM_LIB + (await wgsl("random.wgsl")),
  workgroupSize: 256,
});

export type Distribution = "uniform" | "normal" | "sign";
const DIST: Record<Distribution, number> = { uniform: 0, normal: 1, sign: 2 };

export interface RandomOptions {
  seed: number;
  stream?: number;
  /** Counter of the first element, so a large tensor can be generated in slices. */
  offset?: number;
}

export function random(
  rt: Runtime,
  shape: readonly number[],
  dist: Distribution,
  opts: RandomOptions,
  out?: Tensor,
): Tensor {
  const v = randomOp.active;
  const o = out ?? rt.empty(shape, "f32");
  rt.dispatch({
    label: `random.${dist}/${v.name}`,
    code: v.code,
    constants: { WG: v.workgroupSize, DIST: DIST[dist] },
    buffers: { out: o },
    uniforms: { n: o.size, seed: opts.seed >>> 0, stream: (opts.stream ?? 0) >>> 0, offset: (opts.offset ?? 0) >>> 0 },
    workgroups: grid1d(o.size, v.workgroupSize),
  });
  return o;
}

// ---------------------------------------------------------------- TypeScript twin (bit-identical)

export function rngHash(v: number): number {
  let x = v >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

export function rngCombine(h: number, v: number): number {
  return rngHash((h ^ ((v + 0x9e3779b9 + (h << 6) + (h >>> 2)) >>> 0)) >>> 0);
}

export function rngBits(seed: number, stream: number, index: number): number {
  return rngCombine(rngCombine(rngHash(seed >>> 0), stream >>> 0), index >>> 0);
}

export function rngUniform(seed: number, stream: number, index: number): number {
  return Math.fround((rngBits(seed, stream, index) >>> 8) * (1 / 16777216));
}

export function rngSign(seed: number, stream: number, index: number): number {
  return rngBits(seed, stream, index) & 0x80000000 ? -1 : 1;
}

export function rngNormal(seed: number, stream: number, index: number): number {
  let sum = 0;
  const base = rngBits(seed, stream, index);
  for (let k = 0; k < 6; k++) {
    const h = rngCombine(base, k);
    sum += (h & 0xffff) + (h >>> 16);
  }
  return Math.fround((sum - 393216) * (1 / 65536));
}

export function randomRef(n: number, dist: Distribution, opts: RandomOptions): Float32Array {
  const f = dist === "uniform" ? rngUniform : dist === "normal" ? rngNormal : rngSign;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = f(opts.seed, opts.stream ?? 0, (opts.offset ?? 0) + i);
  return out;
}
