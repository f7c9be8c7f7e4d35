// Datamodels regression (src/datamodels/regression.ts): every target is a column of an [rows, cols]
// row-major matrix (cols = row stride), so per-target quantities are per-column vectors.
//   rank1_update:  mat = s * (mat + c * u v^T)                     centring a streamed Gram / cross product
//   prox_step:     one accelerated proximal-gradient step for all targets at once (see below); hy <- |step|
//   col_sse:       out[j] += sum_k (yh[k, j] - p[k, j] - bias[j])^2 held-out squared error per target
//   col_absmax:    out[j] = max_{k (!= j if offdiag)} |p[k, j]|   per-target lasso lambda_max, step sizes
//   select_copy:   best_theta[:, j] = cand[:, j] where j < n and sse[j] < best[j]
//   select_update: best[j], best_bias[j], choice[j] = sse[j], bias[j], index where sse[j] < best[j]
//   finalize:      out[i, j] = (i == j) ? 0 : cand[j, i], i, j < n (to row = target, cropped, diagonal zeroed)
// Ridge by conjugate gradients on (H + ridge I) t = r, every column its own CG run in lockstep:
//   cg_init:  res = r - hy - ridge theta (hy = H theta); pdir = res
//   col_dot:  out[j] = sum_k p[k, j] (yh[k, j] + ridge p[k, j])   (p^T (H + ridge I) p with yh = H p; |res|^2)
//   cg_step:  alpha = rr[j] / pap[j]; theta += alpha pdir; res -= alpha (hy + ridge pdir)   (hy = H pdir)
//   cg_dir:   pdir = res + (rr_new[j] / rr[j]) pdir
// A column stops (no step, no new direction) once rr[j] <= floor2 * r0[j], r0 = |r|^2: past that, f32 CG
// only drives the recursive residual towards underflow, and a 0/0 would poison the column.
// select_copy must run before select_update (it reads the old best): two dispatches, kept in order.
// sse = +inf never beats anything and NaN never wins (comparisons with NaN are false).
struct Params {
  rows: u32,
  cols: u32,
  count: u32,
  n: u32,
  index: u32,
  s: f32,
  c: f32,
  step: f32,
  ridge: f32,
  beta: f32,
  offdiag: u32,
  floor2: f32,
}

// Every entry point uses its own names (the runtime binds only what an entry point uses).
@group(0) @binding(0) var<storage, read_write> mat: array<f32>;          // rank1_update
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> hy: array<f32>;           // prox_step
@group(0) @binding(4) var<storage, read> r: array<f32>;
@group(0) @binding(5) var<storage, read> lam1: array<f32>;
@group(0) @binding(6) var<storage, read_write> theta: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
@group(0) @binding(8) var<storage, read> p: array<f32>;                  // col_sse, col_absmax
@group(0) @binding(9) var<storage, read> yh: array<f32>;
@group(0) @binding(10) var<storage, read> bias: array<f32>;
@group(0) @binding(11) var<storage, read_write> out: array<f32>;
@group(0) @binding(12) var<storage, read> cand: array<f32>;              // select_copy, select_update, finalize
@group(0) @binding(13) var<storage, read> sse: array<f32>;
@group(0) @binding(14) var<storage, read_write> best: array<f32>;
@group(0) @binding(15) var<storage, read_write> best_theta: array<f32>;
@group(0) @binding(16) var<storage, read_write> best_bias: array<f32>;
@group(0) @binding(17) var<storage, read_write> choice: array<f32>;
@group(0) @binding(18) var<uniform> params: Params;
@group(0) @binding(19) var<storage, read_write> res: array<f32>;        // cg_init, cg_step, cg_dir
@group(0) @binding(20) var<storage, read_write> pdir: array<f32>;
@group(0) @binding(21) var<storage, read> rr: array<f32>;
@group(0) @binding(22) var<storage, read> pap: array<f32>;
@group(0) @binding(23) var<storage, read> rr_new: array<f32>;
@group(0) @binding(24) var<storage, read> r0: array<f32>;

override WG: u32 = 256;

fn flat(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * WG; }

@compute @workgroup_size(WG)
fn rank1_update(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let e = flat(gid, nwg);
  if (e >= params.rows * params.cols) { return; }
  let i = e / params.cols;
  let j = e % params.cols;
  mat[e] = params.s * (mat[e] + params.c * u[i] * v[j]);
}

// Minimises 1/2 t^T H t - r^T t + ridge/2 |t|^2 + lam1[j] |t|_1 per column j. With hy = H y (y the
// extrapolated point): z = y - step (hy - r + ridge y); t' = soft(z, step lam1[j]); y' = t' + beta (t' - t).
// hy is spent once read: it returns |t' - t| (the step, for the convergence test).
@compute @workgroup_size(WG)
fn prox_step(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let e = flat(gid, nwg);
  if (e >= params.count) { return; }
  let j = e % params.cols;
  let ye = y[e];
  let z = ye - params.step * (hy[e] - r[e] + params.ridge * ye);
  let th = params.step * lam1[j];
  let t_new = sign(z) * max(abs(z) - th, 0.0);
  let t_old = theta[e];
  y[e] = t_new + params.beta * (t_new - t_old);
  theta[e] = t_new;
  hy[e] = abs(t_new - t_old);
}

// One invocation per column j < n; rows loop, so neighbouring invocations read neighbouring addresses.
@compute @workgroup_size(WG)
fn col_sse(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  if (j >= params.n) { return; }
  var acc = 0.0;
  for (var k = 0u; k < params.rows; k++) {
    let d = yh[k * params.cols + j] - p[k * params.cols + j] - bias[j];
    acc += d * d;
  }
  out[j] += acc;
}

@compute @workgroup_size(WG)
fn col_absmax(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  if (j >= params.n) { return; }
  var m = 0.0;
  for (var k = 0u; k < params.rows; k++) {
    if (k != j || params.offdiag == 0u) { m = max(m, abs(p[k * params.cols + j])); }
  }
  out[j] = m;
}

@compute @workgroup_size(WG)
fn select_copy(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let e = flat(gid, nwg);
  if (e >= params.count) { return; }
  let j = e % params.cols;
  if (j < params.n && sse[j] < best[j]) { best_theta[e] = cand[e]; }
}

@compute @workgroup_size(WG)
fn select_update(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  if (j >= params.n) { return; }
  if (sse[j] < best[j]) {
    best[j] = sse[j];
    best_bias[j] = bias[j];
    choice[j] = f32(params.index);
  }
}

@compute @workgroup_size(WG)
fn finalize(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let e = flat(gid, nwg);
  if (e >= params.n * params.n) { return; }
  let i = e / params.n;
  let j = e % params.n;
  if (i == j) { out[e] = 0.0; } else { out[e] = cand[j * params.cols + i]; }
}

@compute @workgroup_size(WG)
fn cg_init(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let e = flat(gid, nwg);
  if (e >= params.count) { return; }
  let v0 = r[e] - hy[e] - params.ridge * theta[e];
  res[e] = v0;
  pdir[e] = v0;
}

@compute @workgroup_size(WG)
fn col_dot(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  if (j >= params.n) { return; }
  var acc = 0.0;
  for (var k = 0u; k < params.rows; k++) {
    let a = p[k * params.cols + j];
    acc += a * (yh[k * params.cols + j] + params.ridge * a);
  }
  out[j] = acc;
}

@compute @workgroup_size(WG)
fn cg_step(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let e = flat(gid, nwg);
  if (e >= params.count) { return; }
  let j = e % params.cols;
  let d = pap[j];
  if (!(rr[j] > params.floor2 * r0[j]) || !(d > 0.0)) { return; }
  let alpha = rr[j] / d;
  let pe = pdir[e];
  theta[e] += alpha * pe;
  res[e] -= alpha * (hy[e] + params.ridge * pe);
}

@compute @workgroup_size(WG)
fn cg_dir(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let e = flat(gid, nwg);
  if (e >= params.count) { return; }
  let j = e % params.cols;
  if (!(rr[j] > params.floor2 * r0[j])) { return; }
  pdir[e] = res[e] + (rr_new[j] / rr[j]) * pdir[e];
}
