// Reductions along one axis of a tensor viewed as [outer, len, inner] -> [outer, inner].
// OP: 0 sum, 1 max, 2 argmax (first index of the maximum). Results go out as raw 32-bit words:
// f32 bits for sum/max, a u32 index for argmax.
struct Params { outer: u32, len: u32, inner: u32, }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

override OP: u32 = 0u;
override WG: u32 = 64;

struct Acc { v: f32, i: u32, }

fn identity() -> Acc {
  if (OP == 0u) { return Acc(0.0, 0u); }
  return Acc(bitcast<f32>(0xff7fffffu), 0xffffffffu); // lowest finite f32
}

fn combine(a: Acc, b: Acc) -> Acc {
  if (OP == 0u) { return Acc(a.v + b.v, 0u); }
  // Ties (and NaN-free equal values) keep the smaller index so results do not depend on the schedule.
  if (b.v > a.v || (b.v == a.v && b.i < a.i)) { return b; }
  return a;
}

fn emit(o: u32, acc: Acc) {
  if (OP == 2u) { out[o] = acc.i; } else { out[o] = bitcast<u32>(acc.v); }
}

// One invocation per output: best when there are many outputs and short axes.
@compute @workgroup_size(WG)
fn per_thread(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let o = gid.x + gid.y * nwg.x * WG;
  if (o >= params.outer * params.inner) { return; }
  let base = (o / params.inner) * params.len * params.inner + o % params.inner;
  var acc = identity();
  for (var j = 0u; j < params.len; j++) {
    acc = combine(acc, Acc(x[base + j * params.inner], j));
  }
  emit(o, acc);
}

var<workgroup> partial: array<Acc, WG>;

// One workgroup per output: long axes with few outputs.
@compute @workgroup_size(WG)
fn per_workgroup(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let o = wid.x + wid.y * nwg.x;
  let in_range = o < params.outer * params.inner;
  var acc = identity();
  if (in_range) {
    let base = (o / params.inner) * params.len * params.inner + o % params.inner;
    for (var j = lid; j < params.len; j += WG) {
      acc = combine(acc, Acc(x[base + j * params.inner], j));
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { partial[lid] = combine(partial[lid], partial[lid + s]); }
    workgroupBarrier();
  }
  if (lid == 0u && in_range) { emit(o, partial[0]); }
}
