// Pooling over the H, W axes of CNHW activations, viewed as planes = C*N planes of H x W.
// Max-pool 2x2 stride 2: OH = floor(H / 2), OW = floor(W / 2); an odd last row/column is dropped
// (never read forward, zero gradient backward). idx_out gets the flat index into x of each window's
// maximum (the first in row-major window order on ties). Backward: each x cell belongs to at most one
// window, which writes it: that window's dy when it is the recorded argmax, else 0.
// Global pools reduce each H*W plane to one value: [C, N, H, W] -> [C, N]; global max records the
// plane-local position (h*W + w) of the first maximum. One invocation per output (planes are short).
struct Params { planes: u32, H: u32, W: u32, OH: u32, OW: u32, n: u32, }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> idx_out: array<u32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> idx: array<u32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;
// The same buffers in vectors, for the *_pairs entries (W % 4 == 0).
@group(0) @binding(7) var<storage, read> x4: array<vec4f>;
@group(0) @binding(8) var<storage, read_write> y2: array<vec2f>;
@group(0) @binding(9) var<storage, read_write> idx_out2: array<vec2u>;
@group(0) @binding(10) var<storage, read> dy2: array<vec2f>;
@group(0) @binding(11) var<storage, read> idx2: array<vec2u>;
@group(0) @binding(12) var<storage, read_write> dx4: array<vec4f>;

override WG: u32 = 256;

fn flat(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * WG; }

// Max-pool window o: (the flat index of its top-left cell in x, its row oh, its column ow).
fn window(o: u32) -> vec3u {
  let per_plane = params.OH * params.OW;
  let plane = o / per_plane;
  let r = o - plane * per_plane;
  let oh = r / params.OW;
  let ow = r - oh * params.OW;
  return vec3u((plane * params.H + 2u * oh) * params.W + 2u * ow, oh, ow);
}

// n = planes * OH * OW outputs.
@compute @workgroup_size(WG)
fn maxpool2_fwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  if (o >= params.n) { return; }
  let i0 = window(o).x;
  var best = i0;
  var m = x[i0];
  // Row-major window order with a strict '>' keeps the first maximum.
  let cand = array<u32, 3>(i0 + 1u, i0 + params.W, i0 + params.W + 1u);
  for (var k = 0u; k < 3u; k++) {
    let v = x[cand[k]];
    if (v > m) { m = v; best = cand[k]; }
  }
  y[o] = m;
  idx_out[o] = best;
}

// n = planes * OH * OW windows. Each window writes its four cells (dy to the recorded argmax, 0 to the
// rest); the last window of a row or column also zeroes the dropped column or row of an odd W or H. A
// window per invocation, not a cell: a quarter of the index arithmetic and of the dy, idx reads.
@compute @workgroup_size(WG)
fn maxpool2_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  if (o >= params.n) { return; }
  let win = window(o);
  let i0 = win.x;
  let W = params.W;
  let g = dy[o];
  let at = idx[o];
  dx[i0] = select(0.0, g, at == i0);
  dx[i0 + 1u] = select(0.0, g, at == i0 + 1u);
  dx[i0 + W] = select(0.0, g, at == i0 + W);
  dx[i0 + W + 1u] = select(0.0, g, at == i0 + W + 1u);
  let last_col = (W & 1u) == 1u && win.z + 1u == params.OW;
  if (last_col) {
    dx[i0 + 2u] = 0.0;
    dx[i0 + W + 2u] = 0.0;
  }
  if ((params.H & 1u) == 1u && win.y + 1u == params.OH) {
    dx[i0 + 2u * W] = 0.0;
    dx[i0 + 2u * W + 1u] = 0.0;
    if (last_col) { dx[i0 + 2u * W + 2u] = 0.0; }
  }
}

// The max pool on pairs of neighbouring windows when W % 4 == 0 (llvmpipe pays per storage access, not
// per byte): n = planes * OH * OW / 2 pairs; a pair's two rows of four cells are two aligned vec4s.
@compute @workgroup_size(WG)
fn maxpool2_fwd_pairs(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  if (o >= params.n) { return; }
  let i0 = window(2u * o).x; // the pair's top-left cell, a multiple of 4
  let top = x4[i0 / 4u];
  let bottom = x4[(i0 + params.W) / 4u];
  var m = vec2f(top.x, top.z);
  var at = vec2u(i0, i0 + 2u);
  // Row-major window order with a strict '>' keeps the first maximum.
  let cand = array<vec2f, 3>(vec2f(top.y, top.w), vec2f(bottom.x, bottom.z), vec2f(bottom.y, bottom.w));
  let offsets = array<u32, 3>(1u, params.W, params.W + 1u);
  for (var k = 0u; k < 3u; k++) {
    let better = cand[k] > m;
    m = select(m, cand[k], better);
    at = select(at, vec2u(i0, i0 + 2u) + offsets[k], better);
  }
  y2[o] = m;
  idx_out2[o] = at;
}

@compute @workgroup_size(WG)
fn maxpool2_bwd_pairs(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  if (o >= params.n) { return; }
  let win = window(2u * o);
  let i0 = win.x;
  let W = params.W;
  let g = dy2[o];
  let at = idx2[o];
  let top = vec4u(i0, i0 + 1u, i0 + 2u, i0 + 3u);
  let gv = vec4f(g.x, g.x, g.y, g.y);
  let av = vec4u(at.x, at.x, at.y, at.y);
  dx4[i0 / 4u] = select(vec4f(0.0), gv, av == top);
  dx4[(i0 + W) / 4u] = select(vec4f(0.0), gv, av == top + W);
  if ((params.H & 1u) == 1u && win.y + 1u == params.OH) { dx4[(i0 + 2u * W) / 4u] = vec4f(0.0); }
}

// n = planes outputs; each reads one contiguous plane of H*W.
@compute @workgroup_size(WG)
fn global_avg_fwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  if (o >= params.n) { return; }
  let len = params.H * params.W;
  let base = o * len;
  var s = 0.0;
  for (var j = 0u; j < len; j++) { s += x[base + j]; }
  y[o] = s / f32(len);
}

// n = planes * H * W inputs: dx = dy[plane] / (H*W).
@compute @workgroup_size(WG)
fn global_avg_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= params.n) { return; }
  let len = params.H * params.W;
  dx[i] = dy[i / len] / f32(len);
}

@compute @workgroup_size(WG)
fn global_max_fwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = flat(gid, nwg);
  if (o >= params.n) { return; }
  let len = params.H * params.W;
  let base = o * len;
  var m = x[base];
  var best = 0u;
  for (var j = 1u; j < len; j++) {
    let v = x[base + j];
    if (v > m) { m = v; best = j; }
  }
  y[o] = m;
  idx_out[o] = best;
}

@compute @workgroup_size(WG)
fn global_max_bwd(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= params.n) { return; }
  let len = params.H * params.W;
  let plane = i / len;
  dx[i] = select(0.0, dy[plane], idx[plane] == i - plane * len);
}
