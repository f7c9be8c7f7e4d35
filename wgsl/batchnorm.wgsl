// Batch norm over CNHW activations: channel c is the contiguous row x[c*L .. (c+1)*L), L = N*H*W.
// train_fwd and bwd: one workgroup per channel (y-grid, folded into z past 65535), each invocation
// accumulating a strided slice of the row sequentially, then a tree over the workgroup. Statistics
// take one pass over x, shifted by the row's first element so that a large mean costs no f32 accuracy
// (the cancellation in E[d^2] - E[d]^2 is then that of the spread, not of the mean).
// eval_fwd is elementwise: y-grid = channel, x-grid walks the row, several elements per invocation (the
// per-channel prologue is paid once per invocation).
// RELU fuses a following relu: y = max(y, 0) forward, and bwd masks dy where that output was 0 (recomputed
// from x and the saved statistics exactly as train_fwd computed it), saving the relu's two passes.
// The *4 entry points are the same kernels on rows of vec4s (L % 4 == 0): llvmpipe pays per storage access,
// not per byte (kernels/README.md). train_fwd saves stats = [mean[C], invstd[C]] for bwd.
struct Params {
  C: u32,
  L: u32,
  eps: f32,
  momentum: f32,
  unbias: f32, // L / (L - 1): biased batch variance -> unbiased, for the running variance
  W4: u32, // *_pool4: vec4s per image row (W / 4)
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> run_mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> run_var: array<f32>;
@group(0) @binding(7) var<storage, read> dy: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;
@group(0) @binding(9) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(10) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(11) var<uniform> params: Params;
// The same x, y, dy and dx as rows of vec4s, for the *4 entry points.
@group(0) @binding(12) var<storage, read> x4: array<vec4f>;
@group(0) @binding(13) var<storage, read_write> y4: array<vec4f>;
@group(0) @binding(14) var<storage, read> dy4: array<vec4f>;
@group(0) @binding(15) var<storage, read_write> dx4: array<vec4f>;
// The pooled y and dy of the *_pool4 entries, two windows per vec2.
@group(0) @binding(16) var<storage, read_write> y2: array<vec2f>;
@group(0) @binding(17) var<storage, read> dy2: array<vec2f>;

override WG: u32 = 256; // a power of two
override RELU: bool = false;

var<workgroup> scratch: array<vec2f, WG>;

fn channel_of(wid: vec3u) -> u32 { return wid.y + wid.z * 65535u; }

fn activation(v: f32) -> f32 { return select(v, max(v, 0.0), RELU); }
fn activation4(v: vec4f) -> vec4f { return select(v, max(v, vec4f(0.0)), RELU); }
fn hsum(v: vec4f) -> f32 { return v.x + v.y + v.z + v.w; }

// Sum of v over the workgroup (both lanes), broadcast to every invocation.
fn reduce2(lid: u32, v: vec2f) -> vec2f {
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

// train_fwd's per-channel epilogue: the saved statistics and the running ones.
fn save_stats(c: u32, mean: f32, variance: f32, invstd: f32) {
  stats[c] = mean;
  stats[params.C + c] = invstd;
  let m = params.momentum;
  run_mean[c] = (1.0 - m) * run_mean[c] + m * mean;
  run_var[c] = (1.0 - m) * run_var[c] + m * variance * params.unbias;
}

// Batch statistics, y = gamma (x - mean) invstd + beta, saved mean/invstd, running stats updated in place.
@compute @workgroup_size(WG)
fn train_fwd(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = channel_of(wid);
  if (c >= params.C) { return; } // uniform across the workgroup: barriers stay uniform
  let L = params.L;
  let base = c * L;
  let shift = x[base];
  var s = 0.0;
  var q = 0.0;
  for (var j = lid; j < L; j += WG) {
    let d = x[base + j] - shift;
    s += d;
    q += d * d;
  }
  let sums = reduce2(lid, vec2f(s, q)) / f32(L);
  let mean = shift + sums.x;
  let variance = max(sums.y - sums.x * sums.x, 0.0);
  let invstd = inverseSqrt(variance + params.eps);
  let a = gamma[c] * invstd;
  let b = beta[c];
  for (var j = lid; j < L; j += WG) { y[base + j] = activation((x[base + j] - mean) * a + b); }
  if (lid == 0u) { save_stats(c, mean, variance, invstd); }
}

// (mean, variance) of the vec4 row starting at base, in one pass, broadcast to the workgroup.
fn row_stats4(base: u32, lid: u32) -> vec2f {
  let shift = x4[base].x;
  var s = vec4f(0.0);
  var q = vec4f(0.0);
  for (var j = lid; j < params.L / 4u; j += WG) {
    let d = x4[base + j] - shift;
    s += d;
    q += d * d;
  }
  let sums = reduce2(lid, vec2f(hsum(s), hsum(q))) / f32(params.L);
  return vec2f(shift + sums.x, max(sums.y - sums.x * sums.x, 0.0));
}

@compute @workgroup_size(WG)
fn train_fwd4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = channel_of(wid);
  if (c >= params.C) { return; }
  let L4 = params.L / 4u;
  let base = c * L4;
  let st = row_stats4(base, lid);
  let invstd = inverseSqrt(st.y + params.eps);
  let a = gamma[c] * invstd;
  let b = beta[c];
  for (var j = lid; j < L4; j += WG) { y4[base + j] = activation4((x4[base + j] - st.x) * a + b); }
  if (lid == 0u) { save_stats(c, st.x, st.y, invstd); }
}

// *_pool4: train_fwd4 and bwd4 with a 2x2 max pool after the output, on rows of H x W images (H even,
// W % 4 == 0), two side-by-side windows per step: a vec4 of the top row and one of the row below. The
// backward finds each window's maximum again from x and the saved statistics (the first in row-major order,
// as maxpool2_fwd does), so neither the full-size output nor the argmax is ever stored.

// Channel c's pair p of windows: the vec4 index of its top row.
fn pair_top(base: u32, p: u32) -> u32 {
  let r = p / params.W4; // the pooled row, over N * H / 2
  return base + (2u * r) * params.W4 + (p - r * params.W4);
}

fn max4(v: vec4f) -> f32 { return max(max(v.x, v.y), max(v.z, v.w)); }

// The cell (0: top left, 1: top right, 2: bottom left, 3: bottom right) of a window's first maximum.
fn first_max(v: vec4f) -> u32 {
  var k = 0u;
  var m = v.x;
  if (v.y > m) { k = 1u; m = v.y; }
  if (v.z > m) { k = 2u; m = v.z; }
  if (v.w > m) { k = 3u; }
  return k;
}

@compute @workgroup_size(WG)
fn train_fwd_pool4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = channel_of(wid);
  if (c >= params.C) { return; }
  let base = c * (params.L / 4u);
  let st = row_stats4(base, lid);
  let invstd = inverseSqrt(st.y + params.eps);
  let a = gamma[c] * invstd;
  let b = beta[c];
  let pairs = params.L / 8u;
  for (var p = lid; p < pairs; p += WG) {
    let i = pair_top(base, p);
    let t = activation4((x4[i] - st.x) * a + b);
    let u = activation4((x4[i + params.W4] - st.x) * a + b);
    y2[c * pairs + p] = vec2f(max4(vec4f(t.xy, u.xy)), max4(vec4f(t.zw, u.zw)));
  }
  if (lid == 0u) { save_stats(c, st.x, st.y, invstd); }
}

// y = gamma (x - running_mean) / sqrt(running_var + eps) + beta.
@compute @workgroup_size(WG)
fn eval_fwd(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let c = channel_of(wid);
  if (c >= params.C) { return; }
  let a = gamma[c] * inverseSqrt(run_var[c] + params.eps);
  let mean = run_mean[c];
  let b = beta[c];
  let base = c * params.L;
  for (var j = wid.x * WG + lid; j < params.L; j += nwg.x * WG) {
    y[base + j] = activation((x[base + j] - mean) * a + b);
  }
}

@compute @workgroup_size(WG)
fn eval_fwd4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let c = channel_of(wid);
  if (c >= params.C) { return; }
  let a = gamma[c] * inverseSqrt(run_var[c] + params.eps);
  let mean = run_mean[c];
  let b = beta[c];
  let L4 = params.L / 4u;
  let base = c * L4;
  for (var j = wid.x * WG + lid; j < L4; j += nwg.x * WG) {
    y4[base + j] = activation4((x4[base + j] - mean) * a + b);
  }
}

// dy, or with RELU the gradient through the relu: 0 where train_fwd's output was clamped.
fn upstream(i: u32, mean: f32, a: f32, b: f32) -> f32 {
  return select(dy[i], 0.0, RELU && (x[i] - mean) * a + b <= 0.0);
}
fn upstream4(i: u32, mean: f32, a: f32, b: f32) -> vec4f {
  return select(dy4[i], vec4f(0.0), vec4<bool>(RELU) & ((x4[i] - mean) * a + b <= vec4f(0.0)));
}

// dbeta = sum dy, dgamma = sum dy xhat, dx = gamma invstd / L (L dy - dbeta - xhat dgamma),
// xhat = (x - mean) invstd, from the saved batch statistics.
@compute @workgroup_size(WG)
fn bwd(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = channel_of(wid);
  if (c >= params.C) { return; }
  let L = params.L;
  let base = c * L;
  let mean = stats[c];
  let invstd = stats[params.C + c];
  let a = gamma[c] * invstd;
  let b = beta[c];
  var acc = vec2f(0.0);
  for (var j = lid; j < L; j += WG) {
    let g = upstream(base + j, mean, a, b);
    acc += vec2f(g, g * (x[base + j] - mean));
  }
  let sums = reduce2(lid, acc);
  let db = sums.x;
  let dg = sums.y * invstd;
  let k = gamma[c] * invstd / f32(L);
  for (var j = lid; j < L; j += WG) {
    let xhat = (x[base + j] - mean) * invstd;
    dx[base + j] = k * (f32(L) * upstream(base + j, mean, a, b) - db - xhat * dg);
  }
  if (lid == 0u) {
    dgamma[c] = dg;
    dbeta[c] = db;
  }
}

@compute @workgroup_size(WG)
fn bwd4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = channel_of(wid);
  if (c >= params.C) { return; }
  let L4 = params.L / 4u;
  let base = c * L4;
  let mean = stats[c];
  let invstd = stats[params.C + c];
  let a = gamma[c] * invstd;
  let b = beta[c];
  var sum_g = vec4f(0.0);
  var sum_gx = vec4f(0.0);
  for (var j = lid; j < L4; j += WG) {
    let g = upstream4(base + j, mean, a, b);
    sum_g += g;
    sum_gx += g * (x4[base + j] - mean);
  }
  let sums = reduce2(lid, vec2f(hsum(sum_g), hsum(sum_gx)));
  let db = sums.x;
  let dg = sums.y * invstd;
  let L = f32(params.L);
  let k = gamma[c] * invstd / L;
  for (var j = lid; j < L4; j += WG) {
    let xhat = (x4[base + j] - mean) * invstd;
    dx4[base + j] = k * (L * upstream4(base + j, mean, a, b) - db - xhat * dg);
  }
  if (lid == 0u) {
    dgamma[c] = dg;
    dbeta[c] = db;
  }
}

// The upstream gradients of a pair's top and bottom vec4s: each window's pooled dy at its first maximum, 0
// elsewhere and where a fused relu clamped.
fn pooled_upstream(i: u32, o: u32, mean: f32, a: f32, b: f32) -> array<vec4f, 2> {
  let zt = (x4[i] - mean) * a + b;
  let zb = (x4[i + params.W4] - mean) * a + b;
  let t = activation4(zt);
  let u = activation4(zb);
  let ka = first_max(vec4f(t.xy, u.xy));
  let kb = first_max(vec4f(t.zw, u.zw));
  let k = vec4u(ka, ka, kb, kb);
  let g = dy2[o];
  let g4 = vec4f(g.x, g.x, g.y, g.y);
  let relu = vec4<bool>(RELU);
  return array<vec4f, 2>(
    select(vec4f(0.0), g4, (k == vec4u(0u, 1u, 0u, 1u)) & !(relu & (zt <= vec4f(0.0)))),
    select(vec4f(0.0), g4, (k == vec4u(2u, 3u, 2u, 3u)) & !(relu & (zb <= vec4f(0.0)))),
  );
}

@compute @workgroup_size(WG)
fn bwd_pool4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = channel_of(wid);
  if (c >= params.C) { return; }
  let base = c * (params.L / 4u);
  let mean = stats[c];
  let invstd = stats[params.C + c];
  let a = gamma[c] * invstd;
  let b = beta[c];
  let pairs = params.L / 8u;
  var sum_g = vec4f(0.0);
  var sum_gx = vec4f(0.0);
  for (var p = lid; p < pairs; p += WG) {
    let i = pair_top(base, p);
    let g = pooled_upstream(i, c * pairs + p, mean, a, b);
    sum_g += g[0] + g[1];
    sum_gx += g[0] * (x4[i] - mean) + g[1] * (x4[i + params.W4] - mean);
  }
  let sums = reduce2(lid, vec2f(hsum(sum_g), hsum(sum_gx)));
  let db = sums.x;
  let dg = sums.y * invstd;
  let L = f32(params.L);
  let k = gamma[c] * invstd / L;
  for (var p = lid; p < pairs; p += WG) {
    let i = pair_top(base, p);
    let g = pooled_upstream(i, c * pairs + p, mean, a, b);
    dx4[i] = k * (L * g[0] - db - (x4[i] - mean) * invstd * dg);
    let j = i + params.W4;
    dx4[j] = k * (L * g[1] - db - (x4[j] - mean) * invstd * dg);
  }
  if (lid == 0u) {
    dgamma[c] = dg;
    dbeta[c] = db;
  }
}
