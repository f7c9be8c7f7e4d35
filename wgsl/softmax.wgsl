// Softmax and log-softmax along the last axis of a [rows, cols] matrix: one workgroup per row.
struct Params { rows: u32, cols: u32, }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

override WG: u32 = 64;
override LOG: u32 = 0u; // u32, not bool: bool overrides crash Dawn+SwiftShader

var<workgroup> scratch: array<f32, WG>;

fn reduce_max(lid: u32, v: f32) -> f32 {
  scratch[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { scratch[lid] = max(scratch[lid], scratch[lid + s]); }
    workgroupBarrier();
  }
  let r = scratch[0];
  workgroupBarrier();
  return r;
}

fn reduce_sum(lid: u32, v: f32) -> f32 {
  scratch[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { scratch[lid] = scratch[lid] + scratch[lid + s]; }
    workgroupBarrier();
  }
  let r = scratch[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; } // uniform across the workgroup, so barriers stay uniform
  let base = row * params.cols;
  var m = bitcast<f32>(0xff7fffffu);
  for (var j = lid; j < params.cols; j += WG) { m = max(m, x[base + j]); }
  m = reduce_max(lid, m);
  var s = 0.0;
  for (var j = lid; j < params.cols; j += WG) { s += exp(x[base + j] - m); }
  s = reduce_sum(lid, s);
  let log_s = log(s);
  for (var j = lid; j < params.cols; j += WG) {
    let z = x[base + j] - m;
    if (LOG != 0u) { out[base + j] = z - log_s; } else { out[base + j] = exp(z) / s; }
  }
}
