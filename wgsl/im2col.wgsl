// im2col / col2im for CNHW activations, and a per-row bias add, for convolution as one GEMM:
//   cols[(c*KH + ki)*KW + kj, (n*OH + oh)*OW + ow] = x[c, n, oh*STRIDE + ki - PAD, ow*STRIDE + kj - PAD]
// (zero outside the image). col2im is the adjoint, as a gather: each dx element sums the (at most
// KH*KW) cols entries that read it, so no atomics and every dx element is written exactly once.
// Geometry (KH, KW, STRIDE, PAD) is specialised through overrides: divisions by them compile to
// shifts/multiplies. Grids: x walks the long axis P = N*OH*OW (or N*H*W) with a grid-stride loop,
// y (+ z * 65535 when folded) is the row: a cols row for im2col, a channel for col2im, an output
// row for add_row_bias, so nothing divides the flat index by the row length.
struct Params {
  C: u32, N: u32, H: u32, W: u32,
  OH: u32, OW: u32,
  rows: u32, // im2col: C*KH*KW; col2im: C; add_row_bias: O
  P: u32,    // row length: N*OH*OW (im2col, add_row_bias) or N*H*W (col2im)
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> cols: array<f32>;
@group(0) @binding(2) var<storage, read> dcols: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

override WG: u32 = 256;
override KH: u32 = 3;
override KW: u32 = 3;
override STRIDE: u32 = 1;
override PAD: u32 = 1;

fn row_of(wid: vec3u) -> u32 { return wid.y + wid.z * 65535u; }

@compute @workgroup_size(WG)
fn im2col(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let row = row_of(wid);
  if (row >= params.rows) { return; }
  let c = row / (KH * KW);
  let k = row - c * (KH * KW);
  let ki = k / KW;
  let kj = k - ki * KW;
  let plane = params.OH * params.OW;
  let H = i32(params.H);
  let W = i32(params.W);
  let base = row * params.P;
  for (var p = wid.x * WG + lid; p < params.P; p += nwg.x * WG) {
    let n = p / plane;
    let r = p - n * plane;
    let oh = r / params.OW;
    let ow = r - oh * params.OW;
    let h = i32(oh * STRIDE + ki) - i32(PAD);
    let w = i32(ow * STRIDE + kj) - i32(PAD);
    var v = 0.0;
    if (h >= 0 && h < H && w >= 0 && w < W) {
      v = x[((c * params.N + n) * params.H + u32(h)) * params.W + u32(w)];
    }
    cols[base + p] = v;
  }
}

@compute @workgroup_size(WG)
fn col2im(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let c = row_of(wid);
  if (c >= params.rows) { return; }
  let plane = params.H * params.W;
  let P_out = params.N * params.OH * params.OW;
  for (var p = wid.x * WG + lid; p < params.P; p += nwg.x * WG) {
    let n = p / plane;
    let r = p - n * plane;
    let h = r / params.W;
    let w = r - h * params.W;
    var acc = 0.0;
    for (var ki = 0u; ki < KH; ki++) {
      // oh * STRIDE = h + PAD - ki must be a non-negative multiple of STRIDE below OH * STRIDE.
      let th = h + PAD;
      if (th < ki) { continue; }
      let sh = th - ki;
      let oh = sh / STRIDE;
      if (oh * STRIDE != sh || oh >= params.OH) { continue; }
      for (var kj = 0u; kj < KW; kj++) {
        let tw = w + PAD;
        if (tw < kj) { continue; }
        let sw = tw - kj;
        let ow = sw / STRIDE;
        if (ow * STRIDE != sw || ow >= params.OW) { continue; }
        let row = (c * KH + ki) * KW + kj;
        acc += dcols[row * P_out + (n * params.OH + oh) * params.OW + ow];
      }
    }
    dx[c * params.P + p] = acc;
  }
}

// y[o, p] += bias[o], in place on the GEMM output.
@compute @workgroup_size(WG)
fn add_row_bias(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let o = row_of(wid);
  if (o >= params.rows) { return; }
  let b = bias[o];
  let base = o * params.P;
  for (var p = wid.x * WG + lid; p < params.P; p += nwg.x * WG) {
    y[base + p] = y[base + p] + b;
  }
}
