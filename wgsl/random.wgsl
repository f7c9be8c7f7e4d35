// Fill a tensor from the counter-based generator (functions in random_lib.wgsl, prepended by the kernel
// module). Element i gets the value at counter offset + i.
struct Params { n: u32, seed: u32, stream: u32, offset: u32, }

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;

override WG: u32 = 256;
// 0 uniform [0,1), 1 normal, 2 sign (+-1)
override DIST: u32 = 0u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let c = params.offset + i;
  if (DIST == 0u) { out[i] = rng_uniform(params.seed, params.stream, c); }
  else if (DIST == 1u) { out[i] = rng_normal(params.seed, params.stream, c); }
  else { out[i] = rng_sign(params.seed, params.stream, c); }
}
