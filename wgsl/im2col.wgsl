// im2col / col2im for CNHW activations, and a per-row bias add, for convolution as one GEMM:
//   cols[(c*KH + ki)*KW + kj, (n*OH + oh)*OW + ow] = x[c, n, oh*STRIDE + ki - PAD, ow*STRIDE + kj - PAD]
// (zero outside the image). col2im is the adjoint, as a gather: each dx element sums the (at most
// KH*KW) cols entries that read it, so no atomics and every dx element is written exactly once.
// Geometry (KH, KW, STRIDE, PAD) is specialised through overrides: divisions by them compile to
// shifts/multiplies. Grids: x walks the long axis P = N*OH*OW (or N*H*W) with a grid-stride loop,
// y (+ z * 65535 when folded) is the row: a cols row for im2col, a channel for col2im, an output
// row for add_row_bias, so nothing divides the flat index by the row length. im2col_t (cols transposed)
// walks a flat 1-D grid. Positions are decomposed into (n, oh, ow)-style digits once per invocation
// and then advanced with carries: per-element integer division by a runtime value is slow on CPUs
// (llvmpipe) and not free on GPUs.
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
@group(0) @binding(7) var<storage, read_write> cols4: array<vec4f>; // cols as vec4s, for im2col4
@group(0) @binding(8) var<storage, read> x4: array<vec4f>; // x as vec4s, for im2col4 at stride 1
@group(0) @binding(9) var<storage, read> dcols4: array<vec4f>; // dcols and dx as vec4s, for col2im4
@group(0) @binding(10) var<storage, read_write> dx4: array<vec4f>;

override WG: u32 = 256;
override KH: u32 = 3;
override KW: u32 = 3;
override STRIDE: u32 = 1;
override PAD: u32 = 1;

fn row_of(wid: vec3u) -> u32 { return wid.y + wid.z * 65535u; }

// A position p along a row of [N, A, B] (p = (n*A + a)*B + b), walked by a fixed step without
// dividing per element: the step is decomposed once and added with carries.
struct Pos { n: u32, a: u32, b: u32, }

fn decompose(p: u32, A: u32, B: u32) -> Pos {
  let plane = A * B;
  let n = p / plane;
  let r = p - n * plane;
  let a = r / B;
  return Pos(n, a, r - a * B);
}

fn advance(q: Pos, step: Pos, A: u32, B: u32) -> Pos {
  var r = Pos(q.n + step.n, q.a + step.a, q.b + step.b);
  if (r.b >= B) { r.b -= B; r.a += 1u; }
  if (r.a >= A) { r.a -= A; r.n += 1u; }
  return r;
}

// The (channel, kernel row, kernel column) a cols row reads.
fn tap_of(row: u32) -> vec3u {
  let c = row / (KH * KW);
  let k = row - c * (KH * KW);
  let ki = k / KW;
  return vec3u(c, ki, k - ki * KW);
}

@compute @workgroup_size(WG)
fn im2col(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let row = row_of(wid);
  if (row >= params.rows) { return; }
  let tap = tap_of(row);
  let c = tap.x;
  let ki = tap.y;
  let kj = tap.z;
  let H = i32(params.H);
  let W = i32(params.W);
  let base = row * params.P;
  let x_base = c * params.N * params.H * params.W;
  let stride = nwg.x * WG;
  let step = decompose(stride, params.OH, params.OW);
  var p = wid.x * WG + lid;
  var q = decompose(p, params.OH, params.OW);
  for (; p < params.P; p += stride) {
    let h = i32(q.a * STRIDE + ki) - i32(PAD);
    let w = i32(q.b * STRIDE + kj) - i32(PAD);
    var v = 0.0;
    if (h >= 0 && h < H && w >= 0 && w < W) {
      v = x[x_base + (q.n * params.H + u32(h)) * params.W + u32(w)];
    }
    cols[base + p] = v;
    q = advance(q, step, params.OH, params.OW);
  }
}

// Elements s .. s+3 of the eight in lo, hi.
fn funnel(lo: vec4f, hi: vec4f, s: u32) -> vec4f {
  var r = select(lo, vec4f(lo.yzw, hi.x), s == 1u);
  r = select(r, vec4f(lo.zw, hi.xy), s == 2u);
  return select(r, vec4f(lo.w, hi.xyz), s == 3u);
}

// im2col for OW % 4 == 0: each step writes four neighbours along ow as one vec4 (llvmpipe pays per storage
// access, not per byte). Positions walk (n, oh, ow / 4).
@compute @workgroup_size(WG)
fn im2col4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let row = row_of(wid);
  if (row >= params.rows) { return; }
  let tap = tap_of(row);
  let c = tap.x;
  let ki = tap.y;
  let kj = tap.z;
  let H = i32(params.H);
  let W = i32(params.W);
  let OW4 = params.OW / 4u;
  let P4 = params.P / 4u;
  let base = row * P4;
  let x_base = c * params.N * params.H * params.W;
  let stride = nwg.x * WG;
  let step = decompose(stride, params.OH, OW4);
  var p = wid.x * WG + lid;
  var q = decompose(p, params.OH, OW4);
  for (; p < P4; p += stride) {
    let h = i32(q.a * STRIDE + ki) - i32(PAD);
    let w0 = i32(4u * q.b * STRIDE + kj) - i32(PAD);
    var v = vec4f(0.0);
    if (h >= 0 && h < H) {
      let x_row = x_base + (q.n * params.H + u32(h)) * params.W;
      if (STRIDE == 1u) {
        // Four neighbours: two aligned vec4 loads and a funnel shift; lanes outside the row read as 0.
        let e = i32(x_row) + w0;
        let at = e >> 2u; // floor(e / 4), also for e < 0
        let lo = x4[u32(max(at, 0))];
        let hi = x4[u32(at + 1)];
        let w = vec4i(w0) + vec4i(0, 1, 2, 3);
        let inside = (w >= vec4i(0)) & (w < vec4i(W));
        v = select(vec4f(0.0), funnel(lo, hi, u32(e & 3)), inside);
      } else {
        for (var e = 0; e < 4; e++) {
          let w = w0 + e * i32(STRIDE);
          if (w >= 0 && w < W) { v[e] = x[x_row + u32(w)]; }
        }
      }
    }
    cols4[base + p] = v;
    q = advance(q, step, params.OH, OW4);
  }
}

// The transpose of im2col, colsT[P, C*KH*KW], written directly (dw = dy · colsT is then a plain NN
// GEMM). Flat grid-stride walk over i = p*K + k, with p = (n*OH + oh)*OW + ow and k = (c*KH + ki)*KW + kj
// kept as six mixed-radix digits advanced with carries.
struct Digits { n: u32, oh: u32, ow: u32, c: u32, ki: u32, kj: u32, }

fn digits(i: u32) -> Digits {
  let K = params.C * KH * KW;
  let p = i / K;
  let k = i - p * K;
  let q = decompose(p, params.OH, params.OW);
  let c = k / (KH * KW);
  let r = k - c * (KH * KW);
  let ki = r / KW;
  return Digits(q.n, q.a, q.b, c, ki, r - ki * KW);
}

fn advance_digits(d: Digits, s: Digits) -> Digits {
  var r = Digits(d.n + s.n, d.oh + s.oh, d.ow + s.ow, d.c + s.c, d.ki + s.ki, d.kj + s.kj);
  if (r.kj >= KW) { r.kj -= KW; r.ki += 1u; }
  if (r.ki >= KH) { r.ki -= KH; r.c += 1u; }
  if (r.c >= params.C) { r.c -= params.C; r.ow += 1u; }
  if (r.ow >= params.OW) { r.ow -= params.OW; r.oh += 1u; }
  if (r.oh >= params.OH) { r.oh -= params.OH; r.n += 1u; }
  return r;
}

@compute @workgroup_size(WG)
fn im2col_t(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let total = params.rows * params.P;
  let H = i32(params.H);
  let W = i32(params.W);
  let stride = nwg.x * WG;
  let step = digits(stride);
  var i = wid.x * WG + lid;
  var d = digits(i);
  for (; i < total; i += stride) {
    let h = i32(d.oh * STRIDE + d.ki) - i32(PAD);
    let w = i32(d.ow * STRIDE + d.kj) - i32(PAD);
    var v = 0.0;
    if (h >= 0 && h < H && w >= 0 && w < W) {
      v = x[((d.c * params.N + d.n) * params.H + u32(h)) * params.W + u32(w)];
    }
    cols[i] = v;
    d = advance_digits(d, step);
  }
}

@compute @workgroup_size(WG)
fn col2im(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let c = row_of(wid);
  if (c >= params.rows) { return; }
  let P_out = params.N * params.OH * params.OW;
  let stride = nwg.x * WG;
  let step = decompose(stride, params.H, params.W);
  var p = wid.x * WG + lid;
  var q = decompose(p, params.H, params.W);
  for (; p < params.P; p += stride) {
    let h = q.a;
    let w = q.b;
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
        acc += dcols[row * P_out + (q.n * params.OH + oh) * params.OW + ow];
      }
    }
    dx[c * params.P + p] = acc;
    q = advance(q, step, params.H, params.W);
  }
}

// Four consecutive elements of a flat array seen as vec4s, starting at element e (which may be negative or
// unaligned: two aligned loads and a funnel shift; lanes outside the array are junk for the caller to mask).
fn dcols_at(e: i32) -> vec4f {
  let at = e >> 2u;
  return funnel(dcols4[u32(max(at, 0))], dcols4[u32(at + 1)], u32(e & 3));
}

// col2im at stride 1 with W % 4 == 0: four neighbours along w per step, each tap's four dcols entries are
// neighbours too (ow = w + PAD - kj), read as vec4s; one vec4 store. Positions walk (n, h, w / 4).
@compute @workgroup_size(WG)
fn col2im4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let c = row_of(wid);
  if (c >= params.rows) { return; }
  let P_out = params.N * params.OH * params.OW;
  let W4 = params.W / 4u;
  let P4 = params.P / 4u;
  let stride = nwg.x * WG;
  let step = decompose(stride, params.H, W4);
  var p = wid.x * WG + lid;
  var q = decompose(p, params.H, W4);
  for (; p < P4; p += stride) {
    var acc = vec4f(0.0);
    for (var ki = 0u; ki < KH; ki++) {
      let oh = i32(q.a + PAD) - i32(ki);
      if (oh < 0 || oh >= i32(params.OH)) { continue; }
      for (var kj = 0u; kj < KW; kj++) {
        let ow = vec4i(i32(4u * q.b + PAD) - i32(kj)) + vec4i(0, 1, 2, 3);
        let row = (c * KH + ki) * KW + kj;
        let e = i32(row * P_out + (q.n * params.OH + u32(oh)) * params.OW) + ow.x;
        acc += select(vec4f(0.0), dcols_at(e), (ow >= vec4i(0)) & (ow < vec4i(i32(params.OW))));
      }
    }
    dx4[c * P4 + p] = acc;
    q = advance(q, step, params.H, W4);
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

// The weights of the convolution whose forward is conv2d's dx at stride 1: wf[c, (o*KH + a)*KW + b] =
// w[o, (c*KH + KH-1-a)*KW + KW-1-b] (input and output channels swapped, taps mirrored); `rows` = O. One
// invocation per element of wf, flat grid.
@compute @workgroup_size(WG)
fn flip_taps(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let taps = KH * KW;
  let total = params.C * params.rows * taps;
  for (var i = wid.x * WG + lid; i < total; i += nwg.x * WG) {
    let c = i / (params.rows * taps);
    let r = i - c * params.rows * taps;
    let o = r / taps;
    let t = r - o * taps;
    cols[i] = x[(o * params.C + c) * taps + (taps - 1u - t)];
  }
}
