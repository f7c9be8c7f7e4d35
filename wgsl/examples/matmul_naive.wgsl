// Example of a user variant (registered in kernels/variants.ts): the simplest correct matmul, one
// invocation per output, no transposes. It follows the matmul binding contract in kernels/matmul.ts.
struct Params { M: u32, N: u32, K: u32, stride_a: u32, stride_b: u32, stride_c: u32, }

@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

override WG_X: u32 = 16u;
override WG_Y: u32 = 16u;

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let row = gid.y;
  let col = gid.x;
  if (row >= params.M || col >= params.N) { return; }
  let a = gid.z * params.stride_a + row * params.K;
  let b = gid.z * params.stride_b + col;
  var acc = 0.0;
  for (var k = 0u; k < params.K; k++) { acc = fma(A[a + k], B[b + k * params.N], acc); }
  C[gid.z * params.stride_c + row * params.N + col] = acc;
}
