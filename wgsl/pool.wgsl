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
