// Kernels of the maximum-sum submatrix local search's swap loop (wgsl/search.wgsl; the algorithm and its
// float64 CPU twin are in src/detect/search.ts). Binding contract: see the header of wgsl/search.wgsl;
// uniform { n, k, s_over_n, r, row_offset, rows, shift, add_bonus }; override WG; entry points select_swap,
// gather_rows, finish_factor, finish_dense, objective, symmetrise, dense_rowsum, row_dots, spectral_step.
import type { Runtime, Tensor } from "../src/gpu/runtime.ts";
import { wgsl } from "../src/gpu/wgsl.ts";
import { defineOp, grid1d, type Variant } from "./registry.ts";

export interface SearchKernelVariant extends Variant {
  workgroupSize: number;
}

export const searchOp = defineOp<SearchKernelVariant>("search", "swap-loop kernels of the max-sum submatrix search");
searchOp.register({ name: "default", file: "wgsl/search.wgsl", code: await wgsl("search.wgsl"), workgroupSize: 256 });

export interface SearchUniforms {
  n?: number;
  k?: number;
  s_over_n?: number;
  r?: number;
  row_offset?: number;
  rows?: number;
  shift?: number;
  add_bonus?: number;
}

export type SearchEntry =
  | "select_swap"
  | "gather_rows"
  | "finish_factor"
  | "finish_dense"
  | "objective"
  | "symmetrise"
  | "dense_rowsum"
  | "row_dots"
  | "spectral_step";

/** Record one dispatch of a search entry point. `items` sizes the grid of the per-element entries. */
export function searchKernel(
  rt: Runtime,
  entry: SearchEntry,
  buffers: Record<string, Tensor>,
  u: SearchUniforms,
  items = 1,
): void {
  const v = searchOp.active;
  const WG = v.workgroupSize;
  let workgroups: [number, number?, number?];
  switch (entry) {
    case "select_swap":
    case "finish_factor":
    case "objective":
    case "spectral_step":
      workgroups = [1];
      break;
    case "symmetrise":
      workgroups = [Math.ceil(items / 16), Math.ceil(items / 16)];
      break;
    default:
      workgroups = grid1d(items, WG);
  }
  rt.dispatch({
    label: `search.${entry}/${v.name}`,
    code: v.code,
    entryPoint: entry,
    constants: { WG },
    buffers,
    uniforms: { n: 0, k: 0, s_over_n: 0, r: 0, row_offset: 0, rows: 0, shift: 0, add_bonus: 0, ...u },
    workgroups,
  });
}
