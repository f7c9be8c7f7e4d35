// Assemble a training batch on the device: gather images of an epoch's shuffled order from the dataset
// (u8 pixels packed four to a u32, each image C*H*W in CHW order), augment (random crop after zero
// padding by `pad` pixels, random horizontal flip), normalise per channel, and write CNHW floats.
// Augmentation draws come from the counter-based generator (prepended random_lib.wgsl): a pure function
// of (seed, stream = epoch, position in the epoch), so an epoch replays exactly.
struct Params {
  mean: vec4<f32>,
  inv_std: vec4<f32>,
  B: u32, C: u32, H: u32, W: u32,
  start: u32, pad: u32, flip: u32, seed: u32,
  stream: u32,
}

@group(0) @binding(0) var<storage, read> pixels: array<u32>;
@group(0) @binding(1) var<storage, read> order: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<u32>;
@group(0) @binding(5) var<uniform> params: Params;
@group(0) @binding(6) var<storage, read_write> x4: array<vec4f>; // x as vec4s, for images4

override WG: u32 = 256u;

fn pixel(index: u32) -> f32 {
  return f32((pixels[index >> 2u] >> ((index & 3u) * 8u)) & 0xffu);
}

// Where output element i (CNHW) reads: its channel, the pixel index of its example's channel plane, and the
// source row and column after the crop and flip; `dir` is the column step of the next w (-1 when flipped).
struct Source { c: u32, plane_base: u32, sh: i32, sw: i32, dir: i32, }

fn source(i: u32) -> Source {
  let H = params.H;
  let W = params.W;
  let plane = H * W;
  let c = i / (params.B * plane);
  let b = (i / plane) % params.B;
  let h = (i / W) % H;
  let w = i % W;
  let pos = params.start + b;
  var sh = i32(h);
  var sw = i32(w);
  var dir = 1;
  if (params.pad > 0u || params.flip != 0u) {
    let bits = rng_bits(params.seed, params.stream, pos);
    let span = 2u * params.pad + 1u;
    if (params.flip != 0u && ((bits >> 16u) & 1u) == 1u) {
      sw = i32(W) - 1 - sw;
      dir = -1;
    }
    sh += i32(((bits >> 8u) & 0xffu) % span) - i32(params.pad);
    sw += i32((bits & 0xffu) % span) - i32(params.pad);
  }
  return Source(c, (order[pos] * params.C + c) * plane, sh, sw, dir);
}

// The pixel at source row sh, column sw, or 0 outside the image (zero padding, in pixel space).
fn source_pixel(s: Source, sh: i32, sw: i32) -> f32 {
  if (sh < 0 || sh >= i32(params.H) || sw < 0 || sw >= i32(params.W)) { return 0.0; }
  return pixel(s.plane_base + u32(sh) * params.W + u32(sw));
}

@compute @workgroup_size(WG)
fn images(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.C * params.B * params.H * params.W) { return; }
  let s = source(i);
  x[i] = (source_pixel(s, s.sh, s.sw) / 255.0 - params.mean[s.c]) * params.inv_std[s.c];
}

// images for W % 4 == 0: four neighbours along w per invocation and one vec4 store, a quarter of the
// index arithmetic (integer division by runtime values is slow on CPUs).
@compute @workgroup_size(WG)
fn images4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i4 = gid.x + gid.y * nwg.x * WG;
  if (i4 >= params.C * params.B * params.H * params.W / 4u) { return; }
  let s = source(4u * i4);
  var v = vec4f(0.0);
  for (var k = 0; k < 4; k++) { v[k] = source_pixel(s, s.sh, s.sw + k * s.dir); }
  x4[i4] = (v / 255.0 - params.mean[s.c]) * params.inv_std[s.c];
}

@compute @workgroup_size(WG)
fn targets(@builtin(global_invocation_id) gid: vec3u) {
  let b = gid.x;
  if (b < params.B) { y[b] = labels[order[params.start + b]]; }
}
