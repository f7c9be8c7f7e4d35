// C[b] = op(A[b]) * op(B[b]) for any shapes: op is an optional transpose (TRANS_A, TRANS_B), every load
// and store is bounds-checked. Each invocation computes a TM x TN block of C in registers.
// Batch b is workgroup_id.z; a stride of 0 broadcasts one matrix over the batch.
struct Params { M: u32, N: u32, K: u32, stride_a: u32, stride_b: u32, stride_c: u32, }

@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

// Register block: constants (not overrides) because function-scope arrays need const sizes; the kernel
// module rewrites these lines to specialise the shader.
const TM: u32 = 4u;
const TN: u32 = 4u;
override WG_X: u32 = 8;
override WG_Y: u32 = 8;
override TRANS_A: u32 = 0u; // u32, not bool: bool overrides crash Dawn+SwiftShader
override TRANS_B: u32 = 0u;

fn a_at(base: u32, m: u32, k: u32) -> f32 {
  if (m >= params.M || k >= params.K) { return 0.0; }
  if (TRANS_A != 0u) { return A[base + k * params.M + m]; }
  return A[base + m * params.K + k];
}

fn b_at(base: u32, k: u32, n: u32) -> f32 {
  if (k >= params.K || n >= params.N) { return 0.0; }
  if (TRANS_B != 0u) { return B[base + n * params.K + k]; }
  return B[base + k * params.N + n];
}

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let a_base = gid.z * params.stride_a;
  let b_base = gid.z * params.stride_b;
  let c_base = gid.z * params.stride_c;
  let row0 = gid.y * TM;
  let col0 = gid.x * TN;
  var acc: array<array<f32, TN>, TM>;
  for (var k = 0u; k < params.K; k++) {
    var a: array<f32, TM>;
    var b: array<f32, TN>;
    for (var i = 0u; i < TM; i++) { a[i] = a_at(a_base, row0 + i, k); }
    for (var j = 0u; j < TN; j++) { b[j] = b_at(b_base, k, col0 + j); }
    for (var i = 0u; i < TM; i++) {
      for (var j = 0u; j < TN; j++) { acc[i][j] = fma(a[i], b[j], acc[i][j]); }
    }
  }
  for (var i = 0u; i < TM; i++) {
    let r = row0 + i;
    if (r >= params.M) { break; }
    for (var j = 0u; j < TN; j++) {
      let c = col0 + j;
      if (c < params.N) { C[c_base + r * params.N + c] = acc[i][j]; }
    }
  }
}
