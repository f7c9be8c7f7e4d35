// C[b] = A[b] * B[b], any M, N, K, no transposes, for real GPUs: the workgroup stages a BM x BK block of A
// and a BK x BN block of B in workgroup memory, then each invocation accumulates a TM x TN block of C in
// registers from it. An invocation's rows and columns are strided by the workgroup's size, so neighbouring
// lanes read neighbouring words of workgroup memory and write neighbouring words of C.
// Batch b is workgroup_id.z; a stride of 0 broadcasts one matrix over the batch.
struct Params { M: u32, N: u32, K: u32, stride_a: u32, stride_b: u32, stride_c: u32, }

@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

// Constants, not overrides: workgroup arrays and register blocks need const sizes; the kernel module
// rewrites these lines to specialise the shader (kernels/matmul.ts tiledConstants: BM = TM WG_Y,
// BN = TN WG_X, THREADS = WG_X WG_Y). A's block is stored transposed (k-major), AS_STRIDE = BM + 1 words
// per k: the padding keeps its stores off a single bank. AS_SIZE = BK AS_STRIDE, BS_SIZE = BK BN.
const TM: u32 = 4u;
const TN: u32 = 4u;
const BK: u32 = 16u;
const WG_X: u32 = 16u;
const WG_Y: u32 = 16u;
const BM: u32 = 64u;
const BN: u32 = 64u;
const THREADS: u32 = 256u;
const AS_STRIDE: u32 = 65u;
const AS_SIZE: u32 = 1040u;
const BS_SIZE: u32 = 1024u;

var<workgroup> As: array<f32, AS_SIZE>;
var<workgroup> Bs: array<f32, BS_SIZE>;

@compute @workgroup_size(WG_X, WG_Y)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(local_invocation_index) li: u32,
) {
  let a_base = wid.z * params.stride_a;
  let b_base = wid.z * params.stride_b;
  let row0 = wid.y * BM;
  let col0 = wid.x * BN;
  var acc: array<array<f32, TN>, TM>;
  for (var k0 = 0u; k0 < params.K; k0 += BK) {
    // Rows of A along k, rows of B along n: consecutive lanes load consecutive addresses.
    for (var i = li; i < BM * BK; i += THREADS) {
      let m = row0 + i / BK;
      let k = k0 + i % BK;
      var v = 0.0;
      if (m < params.M && k < params.K) { v = A[a_base + m * params.K + k]; }
      As[(i % BK) * AS_STRIDE + i / BK] = v;
    }
    for (var i = li; i < BK * BN; i += THREADS) {
      let k = k0 + i / BN;
      let n = col0 + i % BN;
      var v = 0.0;
      if (k < params.K && n < params.N) { v = B[b_base + k * params.N + n]; }
      Bs[i] = v;
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      var a: array<f32, TM>;
      var b: array<f32, TN>;
      for (var i = 0u; i < TM; i++) { a[i] = As[k * AS_STRIDE + lid.y + i * WG_Y]; }
      for (var j = 0u; j < TN; j++) { b[j] = Bs[k * BN + lid.x + j * WG_X]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) { acc[i][j] = fma(a[i], b[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  let c_base = wid.z * params.stride_c;
  for (var i = 0u; i < TM; i++) {
    let r = row0 + lid.y + i * WG_Y;
    if (r >= params.M) { break; }
    for (var j = 0u; j < TN; j++) {
      let c = col0 + lid.x + j * WG_X;
      if (c < params.N) { C[c_base + r * params.N + c] = acc[i][j]; }
    }
  }
}
