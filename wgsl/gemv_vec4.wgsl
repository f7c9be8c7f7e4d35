// y = M x with vec4 loads (cols % 4 == 0, x_offset % 4 == 0): same contract as gemv.wgsl's rows_* entries,
// with cols and x_offset counted in floats. One invocation per row, or ROWS rows per workgroup of WG lanes.
struct Params { rows: u32, cols: u32, x_offset: u32, y_offset: u32, beta: f32, row_blocks: u32, }

@group(0) @binding(0) var<storage, read> M: array<vec4f>;
@group(0) @binding(1) var<storage, read> x: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

override WG: u32 = 64;

fn store(o: u32, v: f32) {
  if (params.beta != 0.0) { y[o] = v + params.beta * y[o]; } else { y[o] = v; }
}

@compute @workgroup_size(WG)
fn rows_thread4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.rows) { return; }
  let c4 = params.cols / 4u;
  let base = i * c4;
  let xo = params.x_offset / 4u;
  var a0 = vec4f(0.0);
  var a1 = vec4f(0.0);
  var k = 0u;
  for (; k + 1u < c4; k += 2u) {
    a0 += M[base + k] * x[xo + k];
    a1 += M[base + k + 1u] * x[xo + k + 1u];
  }
  if (k < c4) { a0 += M[base + k] * x[xo + k]; }
  let a = a0 + a1;
  store(params.y_offset + i, a.x + a.y + a.z + a.w);
}

var<workgroup> red: array<vec4f, WG>;

@compute @workgroup_size(WG)
fn rows_wg4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let i = wid.x + wid.y * nwg.x;
  let c4 = params.cols / 4u;
  let xo = params.x_offset / 4u;
  var acc = vec4f(0.0);
  if (i < params.rows) {
    let base = i * c4;
    for (var k = lid; k < c4; k += WG) { acc += M[base + k] * x[xo + k]; }
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u && i < params.rows) { let a = red[0]; store(params.y_offset + i, a.x + a.y + a.z + a.w); }
}
