// TRAK dense random projection with the projection matrix regenerated on the fly (never stored):
//   partial[s, n, j] = sum_{p in split s} G[n, p] * R[p, j],
//   R[p, j] = sign(rng_combine(rng_bits(seed, model, p_offset + p), j))   (+-1; the 1/sqrt(k) is applied
//   by `reduce`). Prepended: wgsl/random_lib.wgsl (RANDOM_LIB).
// Entries:
//   project  workgroup 16x16; grid (k / 64, ceil(N / 64), S): a 64-example x 64-column output tile of
//            one split of P. Each R entry is hashed once per workgroup and serves up to 64 examples.
//   reduce   phi[(row0 + n) * k + j] += scale * sum_s partial[s, n, j]; flat grid over N*k (x, y-folded).
//   generate R rows [p0, p0 + rows) explicitly as +-1 into `partial` (the materialise-then-multiply
//            baseline and the tests); flat grid over rows*k.
struct Params {
  N: u32,        // examples in the tile
  P: u32,        // parameters of this layer (columns of G)
  k: u32,        // projection dimension
  seed: u32,
  model: u32,
  p_offset: u32, // index of this layer's first parameter in the model's concatenated weight vector
  chunk: u32,    // parameters per split (multiple of TP)
  S: u32,        // splits
  row0: u32,     // reduce: first row of phi to accumulate into
  scale: f32,    // reduce: multiplier
}

@group(0) @binding(0) var<storage, read> G: array<f32>;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> phi: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const TP: u32 = 16u;  // parameters per chunk
const TN: u32 = 64u;  // examples per workgroup (16 threads x 4)
const TJ: u32 = 64u;  // columns per workgroup (16 threads x 4)

var<workgroup> base: array<u32, 16>;              // rng_bits(seed, model, p) for the chunk's TP parameters
var<workgroup> rs: array<vec4<f32>, 256>;         // [TP][TJ / 4]: signs of the chunk
var<workgroup> gs: array<vec4<f32>, 256>;         // [TP][TN / 4]: G chunk, transposed

@compute @workgroup_size(16, 16)
fn project(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tx = lid3.x; // column group: columns j0 + 4 tx .. +3
  let ty = lid3.y; // example group: examples n0 + 4 ty .. +3
  let j0 = wid.x * TJ;
  let n0 = wid.y * TN;
  let p_begin = wid.z * params.chunk;
  let p_end = min(params.P, p_begin + params.chunk);
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  // This thread's slot when filling the tiles: rs entry (pp, column quad) and gs entry (pp, example quad).
  let pp = lid / 16u;
  let q = lid % 16u;
  for (var p0 = p_begin; p0 < p_end; p0 += TP) {
    if (lid < TP) {
      base[lid] = rng_bits(params.seed, params.model, params.p_offset + p0 + lid);
    }
    workgroupBarrier();
    {
      let h = base[pp];
      let j = j0 + 4u * q;
      var r = vec4<f32>(0.0);
      if (p0 + pp < p_end) {
        r = vec4<f32>(
          select(1.0, -1.0, (rng_combine(h, j) & 0x80000000u) != 0u),
          select(1.0, -1.0, (rng_combine(h, j + 1u) & 0x80000000u) != 0u),
          select(1.0, -1.0, (rng_combine(h, j + 2u) & 0x80000000u) != 0u),
          select(1.0, -1.0, (rng_combine(h, j + 3u) & 0x80000000u) != 0u));
      }
      rs[lid] = r;
      let p = p0 + pp;
      var g = vec4<f32>(0.0);
      let n = n0 + 4u * q;
      if (p < p_end) {
        if (n < params.N) { g.x = G[n * params.P + p]; }
        if (n + 1u < params.N) { g.y = G[(n + 1u) * params.P + p]; }
        if (n + 2u < params.N) { g.z = G[(n + 2u) * params.P + p]; }
        if (n + 3u < params.N) { g.w = G[(n + 3u) * params.P + p]; }
      }
      gs[lid] = g;
    }
    workgroupBarrier();
    for (var t = 0u; t < TP; t++) {
      let a = gs[t * 16u + ty];
      let b = rs[t * 16u + tx];
      acc0 += a.x * b;
      acc1 += a.y * b;
      acc2 += a.z * b;
      acc3 += a.w * b;
    }
    workgroupBarrier();
  }
  let plane = wid.z * params.N * params.k;
  let j = j0 + 4u * tx;
  let n = n0 + 4u * ty;
  // k is a multiple of 4 (checked on the host), so a column quad is either all in range or all out.
  if (j < params.k) {
    if (n < params.N) { store4(plane + n * params.k + j, acc0); }
    if (n + 1u < params.N) { store4(plane + (n + 1u) * params.k + j, acc1); }
    if (n + 2u < params.N) { store4(plane + (n + 2u) * params.k + j, acc2); }
    if (n + 3u < params.N) { store4(plane + (n + 3u) * params.k + j, acc3); }
  }
}

fn store4(at: u32, v: vec4<f32>) {
  partial[at] = v.x;
  partial[at + 1u] = v.y;
  partial[at + 2u] = v.z;
  partial[at + 3u] = v.w;
}

@compute @workgroup_size(256)
fn reduce(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  let total = params.N * params.k;
  if (i >= total) { return; }
  var s = 0.0;
  for (var z = 0u; z < params.S; z++) { s += partial[z * total + i]; }
  let at = params.row0 * params.k + i;
  phi[at] = phi[at] + params.scale * s;
}

@compute @workgroup_size(256)
fn generate(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= params.P * params.k) { return; }
  let p = i / params.k;
  let j = i - p * params.k;
  let h = rng_bits(params.seed, params.model, params.p_offset + p);
  partial[i] = select(1.0, -1.0, (rng_combine(h, j) & 0x80000000u) != 0u);
}
