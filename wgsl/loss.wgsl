// Per-example losses on class-major logits [K, B] (CNHW layout: classes are "channels"), one invocation
// per example. Labels are u32 [B].
//   cross_entropy: loss_i = -sum_c q_c log softmax(z_i)_c with q = (1-eps) onehot(y) + eps/K;
//                  dlogits[c, i] = (softmax_c - q_c) * grad_scale.
//   margin:        f_i = z_y - logsumexp_{c != y} z_c (the output function attribution differentiates);
//                  dlogits[y, i] = 1, dlogits[c, i] = -softmax over c != y.
// Both also write correct[i] (1 if the prediction is the label).
// `offset` places results in a longer per-epoch buffer so an epoch needs one readback.
struct Params { B: u32, eps: f32, grad_scale: f32, offset: u32, }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> value: array<f32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> correct: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

// The class count is a pipeline constant: llvmpipe runs these loops far slower with a uniform bound.
override K: u32;

// 1 when the first maximal logit is the label's: accuracy without a second pass or readback.
fn is_correct(i: u32, y: u32) -> f32 {
  var best = 0u;
  for (var c = 1u; c < K; c++) { if (logits[c * params.B + i] > logits[best * params.B + i]) { best = c; } }
  return select(0.0, 1.0, best == y);
}

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn cross_entropy(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= params.B) { return; }
  let B = params.B;
  let y = labels[i];
  var m = bitcast<f32>(0xff7fffffu);
  for (var c = 0u; c < K; c++) { m = max(m, logits[c * B + i]); }
  var s = 0.0;
  for (var c = 0u; c < K; c++) { s += exp(logits[c * B + i] - m); }
  let lse = m + log(s);
  let off = params.eps / f32(K);
  var loss = 0.0;
  for (var c = 0u; c < K; c++) {
    let z = logits[c * B + i];
    let q = select(off, 1.0 - params.eps + off, c == y);
    loss -= q * (z - lse);
    dlogits[c * B + i] = (exp(z - lse) - q) * params.grad_scale;
  }
  value[params.offset + i] = loss;
  correct[params.offset + i] = is_correct(i, y);
}

@compute @workgroup_size(WG)
fn margin(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= params.B) { return; }
  let B = params.B;
  let y = labels[i];
  var m = bitcast<f32>(0xff7fffffu);
  for (var c = 0u; c < K; c++) { if (c != y) { m = max(m, logits[c * B + i]); } }
  var s = 0.0;
  for (var c = 0u; c < K; c++) { if (c != y) { s += exp(logits[c * B + i] - m); } }
  let lse = m + log(s);
  value[params.offset + i] = logits[y * B + i] - lse;
  correct[params.offset + i] = is_correct(i, y);
  for (var c = 0u; c < K; c++) {
    let g = select(-exp(logits[c * B + i] - lse), 1.0, c == y);
    dlogits[c * B + i] = g * params.grad_scale;
  }
}
