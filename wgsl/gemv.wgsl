// Matrix-vector products on a row-major [rows, cols] matrix M.
//   rows_wg / rows_thread:  y[y_offset + i] = sum_k M[i, k] x[x_offset + k]  (+ beta * y[y_offset + i])
//   cols_partial + cols_sum: y[y_offset + j] = sum_i M[i, j] x[x_offset + i] (+ beta * y[y_offset + j]),
//     in two passes: partial sums over blocks of RB rows, then a sum over the blocks.
// y is read only when beta != 0, so a fresh (NaN-poisoned) output is fine with beta = 0.
struct Params { rows: u32, cols: u32, x_offset: u32, y_offset: u32, beta: f32, row_blocks: u32, }

@group(0) @binding(0) var<storage, read> M: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

override WG: u32 = 64;
override RB: u32 = 256;

var<workgroup> red: array<f32, WG>;

fn store(o: u32, v: f32) {
  if (params.beta != 0.0) { y[o] = v + params.beta * y[o]; } else { y[o] = v; }
}

// One workgroup per row: lanes stride along the row (contiguous loads), then a tree reduction.
@compute @workgroup_size(WG)
fn rows_wg(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let i = wid.x + wid.y * nwg.x;
  var acc = 0.0;
  if (i < params.rows) {
    let base = i * params.cols;
    for (var k = lid; k < params.cols; k += WG) {
      acc += M[base + k] * x[params.x_offset + k];
    }
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u && i < params.rows) { store(params.y_offset + i, red[0]); }
}

// One invocation per row.
@compute @workgroup_size(WG)
fn rows_thread(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.rows) { return; }
  let base = i * params.cols;
  var acc = 0.0;
  for (var k = 0u; k < params.cols; k++) {
    acc += M[base + k] * x[params.x_offset + k];
  }
  store(params.y_offset + i, acc);
}

// partial[b * cols + j] = sum over rows i in block b of M[i, j] x[x_offset + i]. Grid: (cols / WG, row_blocks).
@compute @workgroup_size(WG)
fn cols_partial(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  let b = gid.y;
  if (j >= params.cols) { return; }
  let start = b * RB;
  let end = min(start + RB, params.rows);
  var acc = 0.0;
  for (var i = start; i < end; i++) {
    acc += M[i * params.cols + j] * x[params.x_offset + i];
  }
  partial[b * params.cols + j] = acc;
}

@compute @workgroup_size(WG)
fn cols_sum(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  if (j >= params.cols) { return; }
  var acc = 0.0;
  for (var b = 0u; b < params.row_blocks; b++) {
    acc += partial[b * params.cols + j];
  }
  store(params.y_offset + j, acc);
}
