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

override WG: u32 = 256u;

fn pixel(index: u32) -> f32 {
  return f32((pixels[index >> 2u] >> ((index & 3u) * 8u)) & 0xffu);
}

@compute @workgroup_size(WG)
fn images(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  let H = params.H;
  let W = params.W;
  let plane = H * W;
  if (i >= params.C * params.B * plane) { return; }
  let c = i / (params.B * plane);
  let b = (i / plane) % params.B;
  let h = (i / W) % H;
  let w = i % W;
  let pos = params.start + b;
  let example = order[pos];
  var sh = i32(h);
  var sw = i32(w);
  if (params.pad > 0u || params.flip != 0u) {
    let bits = rng_bits(params.seed, params.stream, pos);
    let span = 2u * params.pad + 1u;
    if (params.flip != 0u && ((bits >> 16u) & 1u) == 1u) { sw = i32(W) - 1 - sw; }
    sh += i32(((bits >> 8u) & 0xffu) % span) - i32(params.pad);
    sw += i32((bits & 0xffu) % span) - i32(params.pad);
  }
  var v = 0.0; // zero padding, in pixel space
  if (sh >= 0 && sh < i32(H) && sw >= 0 && sw < i32(W)) {
    v = pixel(example * params.C * plane + c * plane + u32(sh) * W + u32(sw));
  }
  x[i] = (v / 255.0 - params.mean[c]) * params.inv_std[c];
}

@compute @workgroup_size(WG)
fn targets(@builtin(global_invocation_id) gid: vec3u) {
  let b = gid.x;
  if (b < params.B) { y[b] = labels[order[params.start + b]]; }
}
