// Fill with one 32-bit word (an f32's bits, or a u32/i32), so one shader serves every dtype.
struct Params { n: u32, bits: u32, }

@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<uniform> params: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i < params.n) { out[i] = params.bits; }
}
