// Elementwise ops over flat f32 arrays. `b` broadcasts by index modulo b_len, so adding a bias row
// to every row of a matrix is `add` with b_len = columns.
struct Params { n: u32, b_len: u32, alpha: f32, }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

override WG: u32 = 256;

// Grids wider than 65535 workgroups fold into y.
fn flat(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * WG; }

@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = a[i] + b[i % params.b_len];
}

@compute @workgroup_size(WG)
fn mul(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = a[i] * b[i % params.b_len];
}

// out = alpha * a + b: scale (with b_len = 0 meaning "no b") and axpy in one.
@compute @workgroup_size(WG)
fn axpy(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = params.alpha * a[i] + b[i % params.b_len];
}

// In place: out = alpha * a + out (an SGD step). A buffer cannot be bound read-only and read-write at once.
@compute @workgroup_size(WG)
fn axpy_inplace(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = params.alpha * a[i] + out[i];
}

@compute @workgroup_size(WG)
fn scale(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = params.alpha * a[i];
}

@compute @workgroup_size(WG)
fn relu(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = max(a[i], 0.0);
}

// Gradient of relu: a is the upstream gradient, b the relu's input (same length).
@compute @workgroup_size(WG)
fn relu_grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = select(0.0, a[i], b[i] > 0.0);
}
