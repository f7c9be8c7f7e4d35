// Device side of the maximum-sum submatrix local search (src/detect/search.ts, DESIGN.md section 3).
// State for a selection S of size s over n examples (all f32 unless noted):
//   P[x]      = sum_{j in S} (A[x][j] + A[j][x]) with the factor backend's own diagonal included
//               (P = U (V^T 1_S) + V (U^T 1_S)); selfd[x] = 2 (U V^T)[x][x] is what a member counts
//               of itself, 0 for the dense backend (whose symmetrised matrix has a zero diagonal);
//   rowsum[x] = sum_{j != x} A[x][j]: the centred diagonal for size s is d[x] = -(s/n) rowsum[x];
//   m[x]      = 1 for members, 0 otherwise; barred[x] (u32) = 1 once x was swapped in this epoch;
//   total     t[x] = P[x] - m[x] selfd[x] + d[x]  (= R_x + C_x -+ B[x][x] of DESIGN.md);
//   non-members are ranked for addition by t[x] + add_bonus (s/n) rowsum[x] (search.ts, ADD_BONUS);
//   picks (u32) [2k] = removed r, [2k+1] = added a of swap k; tvals the same for t_r, t_a;
//   gains[k]  = t_a - t_r - (B[r][a] + B[a][r]), the exact change of the objective;
//   q         = [V^T 1_S ; U^T 1_S] (2 r floats), factor backend only;
//   rows      = [U_r ; U_a ; V_r ; V_a] gathered for the swap being made (4 r floats).
struct Params {
  n: u32,
  k: u32,
  s_over_n: f32,
  r: u32,
  row_offset: u32,
  rows: u32,
  shift: f32,
  add_bonus: f32,
}

@group(0) @binding(0) var<storage, read_write> P: array<f32>;
@group(0) @binding(1) var<storage, read_write> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> barred: array<u32>;
@group(0) @binding(3) var<storage, read> rowsum: array<f32>;
@group(0) @binding(4) var<storage, read> selfd: array<f32>;
@group(0) @binding(5) var<storage, read_write> picks: array<u32>;
@group(0) @binding(6) var<storage, read_write> tvals: array<f32>;
@group(0) @binding(7) var<storage, read_write> gains: array<f32>;
@group(0) @binding(8) var<storage, read_write> stats: array<f32>;
@group(0) @binding(9) var<storage, read_write> q: array<f32>;
@group(0) @binding(10) var<storage, read_write> rows: array<f32>;
@group(0) @binding(11) var<storage, read> Uc: array<f32>;
@group(0) @binding(12) var<storage, read> Vc: array<f32>;
@group(0) @binding(13) var<storage, read> Sym: array<f32>;
@group(0) @binding(14) var<uniform> params: Params;

override WG: u32 = 256;

const BIG: f32 = 3.0e38;
const NONE: u32 = 0xffffffffu;

var<workgroup> lo_v: array<f32, WG>;
var<workgroup> lo_i: array<u32, WG>;
var<workgroup> hi_v: array<f32, WG>;
var<workgroup> hi_i: array<u32, WG>;
var<workgroup> acc_a: array<f32, WG>;
var<workgroup> acc_b: array<f32, WG>;

fn total(x: u32) -> f32 {
  return P[x] - m[x] * selfd[x] - params.s_over_n * rowsum[x];
}

// One workgroup. Picks the unbarred member with the smallest total and the unbarred non-member with
// the largest total plus its bonus; equal values go to the smaller index (the CPU twin does the same).
// tvals keeps the picked totals themselves, so the gains stay exact.
@compute @workgroup_size(WG)
fn select_swap(@builtin(local_invocation_index) lid: u32) {
  var lv = BIG;
  var li = NONE;
  var hv = -BIG;
  var hi = NONE;
  for (var x = lid; x < params.n; x += WG) {
    if (barred[x] != 0u) { continue; }
    let t = total(x);
    if (m[x] > 0.5) {
      if (t < lv) { lv = t; li = x; }
    } else {
      let key = t + params.add_bonus * params.s_over_n * rowsum[x];
      if (key > hv) { hv = key; hi = x; }
    }
  }
  lo_v[lid] = lv; lo_i[lid] = li; hi_v[lid] = hv; hi_i[lid] = hi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let ov = lo_v[lid + s]; let oi = lo_i[lid + s];
      if (ov < lo_v[lid] || (ov == lo_v[lid] && oi < lo_i[lid])) { lo_v[lid] = ov; lo_i[lid] = oi; }
      let pv = hi_v[lid + s]; let pi = hi_i[lid + s];
      if (pv > hi_v[lid] || (pv == hi_v[lid] && pi < hi_i[lid])) { hi_v[lid] = pv; hi_i[lid] = pi; }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    picks[2u * params.k] = lo_i[0];
    picks[2u * params.k + 1u] = hi_i[0];
    tvals[2u * params.k] = lo_v[0];
    tvals[2u * params.k + 1u] = select(hi_v[0], total(hi_i[0]), hi_i[0] != NONE);
  }
}

// Factor backend, once per row chunk [row_offset, row_offset + rows) of U and V: copy rows r and a.
@compute @workgroup_size(WG)
fn gather_rows(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  let R = params.r;
  if (j >= R) { return; }
  let rr = picks[2u * params.k];
  let aa = picks[2u * params.k + 1u];
  if (rr >= params.row_offset && rr < params.row_offset + params.rows) {
    let b = (rr - params.row_offset) * R + j;
    rows[j] = Uc[b];
    rows[2u * R + j] = Vc[b];
  }
  if (aa >= params.row_offset && aa < params.row_offset + params.rows) {
    let b = (aa - params.row_offset) * R + j;
    rows[R + j] = Uc[b];
    rows[3u * R + j] = Vc[b];
  }
}

// Factor backend, one workgroup: the cross term U_r.V_a + U_a.V_r, the gain, q += [V_a - V_r; U_a - U_r],
// and the membership / bar updates. The next P = U q[0:r] + V q[r:2r] is a gemv (kernels/gemv.ts).
@compute @workgroup_size(WG)
fn finish_factor(@builtin(local_invocation_index) lid: u32) {
  let R = params.r;
  var c = 0.0;
  for (var j = lid; j < R; j += WG) {
    let ur = rows[j]; let ua = rows[R + j]; let vr = rows[2u * R + j]; let va = rows[3u * R + j];
    c += ur * va + ua * vr;
    q[j] += va - vr;
    q[R + j] += ua - ur;
  }
  acc_a[lid] = c;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { acc_a[lid] += acc_a[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let k = params.k;
    let rr = picks[2u * k];
    let aa = picks[2u * k + 1u];
    gains[k] = tvals[2u * k + 1u] - tvals[2u * k] - acc_a[0];
    m[rr] = 0.0; m[aa] = 1.0;
    barred[rr] = 1u; barred[aa] = 1u;
  }
}

// Dense backend: P += Sym[a] - Sym[r] (Sym = A + A^T with a zero diagonal, so rows are columns).
@compute @workgroup_size(WG)
fn finish_dense(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let x = gid.x + gid.y * nwg.x * WG;
  let n = params.n;
  let k = params.k;
  let rr = picks[2u * k];
  let aa = picks[2u * k + 1u];
  if (x < n) { P[x] += Sym[aa * n + x] - Sym[rr * n + x]; }
  if (x == 0u) {
    gains[k] = tvals[2u * k + 1u] - tvals[2u * k] - Sym[rr * n + aa];
    m[rr] = 0.0; m[aa] = 1.0;
    barred[rr] = 1u; barred[aa] = 1u;
  }
}

// One workgroup: stats[0] = objective sum_{x in S} ((P[x] - selfd[x]) / 2 + d[x]); stats[1] = |S|.
@compute @workgroup_size(WG)
fn objective(@builtin(local_invocation_index) lid: u32) {
  var f = 0.0;
  var c = 0.0;
  for (var x = lid; x < params.n; x += WG) {
    let mx = m[x];
    f += mx * (0.5 * (P[x] - selfd[x]) - params.s_over_n * rowsum[x]);
    c += mx;
  }
  acc_a[lid] = f; acc_b[lid] = c;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { acc_a[lid] += acc_a[lid + s]; acc_b[lid] += acc_b[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { stats[0] = acc_a[0]; stats[1] = acc_b[0]; }
}

// Symmetrise: Sym[i][j] = A[i][j] + A[j][i], zero diagonal. A is bound as Uc (read), Sym as rows (rw).
@compute @workgroup_size(16, 16)
fn symmetrise(@builtin(global_invocation_id) gid: vec3u) {
  let n = params.n;
  let i = gid.y;
  let j = gid.x;
  if (i >= n || j >= n) { return; }
  var v = 0.0;
  if (i != j) { v = Uc[i * n + j] + Uc[j * n + i]; }
  rows[i * n + j] = v;
}

// rowsum_out[x] (bound as P) = sum_{j != x} A[x][j], A bound as Uc; one invocation per row.
@compute @workgroup_size(WG)
fn dense_rowsum(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let x = gid.x + gid.y * nwg.x * WG;
  let n = params.n;
  if (x >= n) { return; }
  var acc = 0.0;
  for (var j = 0u; j < n; j++) {
    if (j != x) { acc += Uc[x * n + j]; }
  }
  P[x] = acc;
}

// Factor chunk: P[row_offset + i] = U_i . V_i (the diagonal of U V^T), one invocation per row.
@compute @workgroup_size(WG)
fn row_dots(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.rows) { return; }
  let R = params.r;
  var acc = 0.0;
  for (var j = 0u; j < R; j++) { acc += Uc[i * R + j] * Vc[i * R + j]; }
  P[params.row_offset + i] = acc;
}

// One spectral power step, one workgroup. On entry P = M0 x with M0 = U V^T + V U^T (factor) or
// A + A^T zero-diagonal (dense, selfd = 0); x is bound as m, unit norm and centred.
// y = P/2 - (selfd/2) x + shift x, then y -= mean(y); stats[0] = x.y (Rayleigh quotient),
// stats[1] = |y|; x <- y / |y|.
@compute @workgroup_size(WG)
fn spectral_step(@builtin(local_invocation_index) lid: u32) {
  let n = params.n;
  var sum = 0.0;
  for (var i = lid; i < n; i += WG) {
    let v = 0.5 * P[i] - 0.5 * selfd[i] * m[i] + params.shift * m[i];
    P[i] = v;
    sum += v;
  }
  acc_a[lid] = sum;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { acc_a[lid] += acc_a[lid + s]; }
    workgroupBarrier();
  }
  let mean = acc_a[0] / f32(n);
  workgroupBarrier();
  var dot = 0.0;
  var nrm = 0.0;
  for (var i = lid; i < n; i += WG) {
    let v = P[i] - mean;
    P[i] = v;
    dot += v * m[i];
    nrm += v * v;
  }
  acc_a[lid] = dot; acc_b[lid] = nrm;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { acc_a[lid] += acc_a[lid + s]; acc_b[lid] += acc_b[lid + s]; }
    workgroupBarrier();
  }
  let norm = sqrt(acc_b[0]);
  let inv = select(0.0, 1.0 / norm, norm > 0.0);
  for (var i = lid; i < n; i += WG) { m[i] = P[i] * inv; }
  if (lid == 0u) { stats[0] = acc_a[0]; stats[1] = norm; }
}
