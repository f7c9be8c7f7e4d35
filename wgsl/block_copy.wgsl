// Strided 2-D block copy with scaling, for assembling and slicing the attribution factors:
//   dst[(dr0 + r) * dld + dc0 + c] (= or +=) alpha * w[sr0 + r]? * src[(sr0 + r) * sld + sc0 + c]
// for r < rows, c < cols. w (a per-source-row weight, e.g. Qbar) is applied when use_w = 1; accumulate = 1
// adds into dst. Entry `main`, workgroup 256, flat grid over rows*cols (y-folded past 65535 workgroups).
struct Params {
  rows: u32, cols: u32,
  sr0: u32, sc0: u32, sld: u32,
  dr0: u32, dc0: u32, dld: u32,
  use_w: u32, accumulate: u32,
  alpha: f32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= params.rows * params.cols) { return; }
  let r = i / params.cols;
  let c = i - r * params.cols;
  var v = params.alpha * src[(params.sr0 + r) * params.sld + params.sc0 + c];
  if (params.use_w == 1u) { v *= w[params.sr0 + r]; }
  let at = (params.dr0 + r) * params.dld + params.dc0 + c;
  if (params.accumulate == 1u) { v += dst[at]; }
  dst[at] = v;
}
