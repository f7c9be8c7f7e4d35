// Winograd F(2x2, 3x3) transforms for 3x3 / stride 1 / pad 1 convolutions of CNHW activations (Lavin and
// Gray 2015): y = Aᵀ [(G w Gᵀ) ⊙ (Bᵀ d B)] A per 2x2 output tile, d its 4x4 input patch. The 16 products
// ⊙ summed over channels are 16 batched GEMMs (kernels/matmul.ts), 2.25x fewer multiply-adds than the
// direct convolution. Tiles t = (n, ty, tx) over N x H/2 x W/2; transformed operands are [16, rows, T].
// input, output and output_grad take 4 side-by-side tiles per invocation, one per vec4 lane, so every
// storage access moves a vec4 (llvmpipe pays per access: kernels/README.md); they need W % 8 == 0.
// weights and weight_grad take one (row, column) pair of the weight matrix per invocation.
struct Params {
  R: u32, // rows: output channels of weights, output, output_grad and weight_grad
  S: u32, // input channels of weights, input and weight_grad
  N: u32,
  H: u32,
  W: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> src4: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst4: array<vec4f>;
@group(0) @binding(4) var<uniform> params: Params;

override WG: u32 = 64;

// Groups of 4 tiles in T: tile group g is tiles 4g .. 4g+3 of image n, tile row ty, from tile column tx0.
struct Group {
  n: u32,
  ty: u32,
  tx0: u32,
}

fn groups() -> u32 { return params.N * params.H * params.W / 16u; }

fn group_of(g: u32) -> Group {
  let per_row = params.W / 8u;
  let row = g / per_row; // over N * H/2
  return Group(row / (params.H / 2u), row % (params.H / 2u), (g % per_row) * 4u);
}

// The vec4 index of row yy of channel c, image n, at the group's first column 2 tx0.
fn row_at(c: u32, n: u32, yy: u32, tx0: u32) -> u32 {
  return ((c * params.N + n) * params.H + yy) * (params.W / 4u) + tx0 / 2u;
}

// Element (r, j) of a transformed 4x4, for 4 tiles, at vec4 index g of plane r*4+j, row `row` of `rows`.
fn plane(r: u32, j: u32, row: u32, rows: u32, g: u32) -> u32 { return ((r * 4u + j) * rows + row) * groups() + g; }

// Patch row yy (zero outside the image) of the 4 tiles: column k of the result is patch column k, by lane.
fn patch_row(c: u32, grp: Group, yy: i32) -> mat4x4f {
  if (yy < 0 || yy >= i32(params.H)) { return mat4x4f(); }
  let i = row_at(c, grp.n, u32(yy), grp.tx0);
  let l0 = src4[i];
  let l1 = src4[i + 1u];
  var left = 0.0;
  if (grp.tx0 > 0u) { left = src4[i - 1u].w; }
  var right = 0.0;
  if (2u * grp.tx0 + 8u < params.W) { right = src4[i + 2u].x; }
  return mat4x4f(
    vec4f(left, l0.y, l0.w, l1.y),
    vec4f(l0.x, l0.z, l1.x, l1.z),
    vec4f(l0.y, l0.w, l1.y, l1.w),
    vec4f(l0.z, l1.x, l1.z, right),
  );
}

// Bᵀ applied along a row of the patch (its 4 columns).
fn bt_row(q: mat4x4f) -> mat4x4f { return mat4x4f(q[0] - q[2], q[1] + q[2], q[2] - q[1], q[1] - q[3]); }

fn store_row(r: u32, row: u32, rows: u32, g: u32, v: mat4x4f) {
  for (var j = 0u; j < 4u; j++) { dst4[plane(r, j, row, rows, g)] = v[j]; }
}

// V[16, S, T] = Bᵀ d B from x[S, N, H, W].
@compute @workgroup_size(WG)
fn input(@builtin(global_invocation_id) id: vec3u) {
  let g = id.x;
  let c = id.y;
  if (g >= groups() || c >= params.S) { return; }
  let grp = group_of(g);
  let top = i32(2u * grp.ty) - 1;
  let p0 = patch_row(c, grp, top);
  let p1 = patch_row(c, grp, top + 1);
  let p2 = patch_row(c, grp, top + 2);
  let p3 = patch_row(c, grp, top + 3);
  store_row(0u, c, params.S, g, bt_row(p0 - p2));
  store_row(1u, c, params.S, g, bt_row(p1 + p2));
  store_row(2u, c, params.S, g, bt_row(p2 - p1));
  store_row(3u, c, params.S, g, bt_row(p1 - p3));
}

fn load_row(r: u32, row: u32, rows: u32, g: u32) -> mat4x4f {
  return mat4x4f(
    src4[plane(r, 0u, row, rows, g)],
    src4[plane(r, 1u, row, rows, g)],
    src4[plane(r, 2u, row, rows, g)],
    src4[plane(r, 3u, row, rows, g)],
  );
}

// Output row (2 columns per tile) of the 4 tiles, as the 2 vec4s of the image row they cover.
fn store_pixels(i: u32, y0: vec4f, y1: vec4f) {
  dst4[i] = vec4f(y0.x, y1.x, y0.y, y1.y);
  dst4[i + 1u] = vec4f(y0.z, y1.z, y0.w, y1.w);
}

// y[R, N, H, W] = Aᵀ m A from M[16, R, T].
@compute @workgroup_size(WG)
fn output(@builtin(global_invocation_id) id: vec3u) {
  let g = id.x;
  let o = id.y;
  if (g >= groups() || o >= params.R) { return; }
  let m0 = load_row(0u, o, params.R, g);
  let m1 = load_row(1u, o, params.R, g);
  let m2 = load_row(2u, o, params.R, g);
  let m3 = load_row(3u, o, params.R, g);
  let t0 = m0 + m1 + m2;
  let t1 = m1 - m2 - m3;
  let grp = group_of(g);
  let i = row_at(o, grp.n, 2u * grp.ty, grp.tx0);
  store_pixels(i, t0[0] + t0[1] + t0[2], t0[1] - t0[2] - t0[3]);
  store_pixels(i + params.W / 4u, t1[0] + t1[1] + t1[2], t1[1] - t1[2] - t1[3]);
}

// A along a row of a 2x2 output-gradient tile (its 2 columns, by lane): 4 columns.
fn a_row(g0: vec4f, g1: vec4f) -> mat4x4f { return mat4x4f(g0, g0 + g1, g0 - g1, -g1); }

// dM[16, R, T] = A dy Aᵀ from dy[R, N, H, W]: the gradient of output's input.
@compute @workgroup_size(WG)
fn output_grad(@builtin(global_invocation_id) id: vec3u) {
  let g = id.x;
  let o = id.y;
  if (g >= groups() || o >= params.R) { return; }
  let grp = group_of(g);
  let i = row_at(o, grp.n, 2u * grp.ty, grp.tx0);
  let a0 = src4[i];
  let a1 = src4[i + 1u];
  let b0 = src4[i + params.W / 4u];
  let b1 = src4[i + params.W / 4u + 1u];
  let top = a_row(vec4f(a0.x, a0.z, a1.x, a1.z), vec4f(a0.y, a0.w, a1.y, a1.w));
  let bottom = a_row(vec4f(b0.x, b0.z, b1.x, b1.z), vec4f(b0.y, b0.w, b1.y, b1.w));
  store_row(0u, o, params.R, g, top);
  store_row(1u, o, params.R, g, top + bottom);
  store_row(2u, o, params.R, g, top - bottom);
  store_row(3u, o, params.R, g, -1.0 * bottom);
}

// The flat index of a grid folded over x and y as registry.ts grid1d folds it.
fn flat(id: vec3u) -> u32 { return id.x + id.y * 65535u * WG; }

// G along a 3-vector: 4 values.
fn g3(v: vec3f) -> vec4f { return vec4f(v.x, 0.5 * (v.x + v.y + v.z), 0.5 * (v.x - v.y + v.z), v.z); }

// U[16, R, S] = G w Gᵀ from w[R, S*9] (row-major 3x3 kernels).
@compute @workgroup_size(WG)
fn weights(@builtin(global_invocation_id) id: vec3u) {
  let k = flat(id); // o * S + s
  let rs = params.R * params.S;
  if (k >= rs) { return; }
  let w0 = vec3f(src[9u * k], src[9u * k + 1u], src[9u * k + 2u]);
  let w1 = vec3f(src[9u * k + 3u], src[9u * k + 4u], src[9u * k + 5u]);
  let w2 = vec3f(src[9u * k + 6u], src[9u * k + 7u], src[9u * k + 8u]);
  let rows = array<vec4f, 4>(g3(w0), g3(0.5 * (w0 + w1 + w2)), g3(0.5 * (w0 - w1 + w2)), g3(w2));
  for (var r = 0u; r < 4u; r++) {
    for (var j = 0u; j < 4u; j++) { dst[(r * 4u + j) * rs + k] = rows[r][j]; }
  }
}

// Gᵀ along a 4-vector: 3 values.
fn gt4(v: vec4f) -> vec3f { return vec3f(v.x + 0.5 * (v.y + v.z), 0.5 * (v.y - v.z), 0.5 * (v.y + v.z) + v.w); }

// dw[R, S*9] = Gᵀ dU G from dU[16, R, S]: the gradient of weights' input.
@compute @workgroup_size(WG)
fn weight_grad(@builtin(global_invocation_id) id: vec3u) {
  let k = flat(id);
  let rs = params.R * params.S;
  if (k >= rs) { return; }
  var u: array<vec4f, 4>;
  for (var r = 0u; r < 4u; r++) {
    let i = r * 4u * rs + k;
    u[r] = vec4f(src[i], src[i + rs], src[i + 2u * rs], src[i + 3u * rs]);
  }
  let d0 = gt4(u[0] + 0.5 * (u[1] + u[2]));
  let d1 = gt4(0.5 * (u[1] - u[2]));
  let d2 = gt4(0.5 * (u[1] + u[2]) + u[3]);
  dst[9u * k] = d0.x;
  dst[9u * k + 1u] = d0.y;
  dst[9u * k + 2u] = d0.z;
  dst[9u * k + 3u] = d1.x;
  dst[9u * k + 4u] = d1.y;
  dst[9u * k + 5u] = d1.z;
  dst[9u * k + 6u] = d2.x;
  dst[9u * k + 7u] = d2.y;
  dst[9u * k + 8u] = d2.z;
}
