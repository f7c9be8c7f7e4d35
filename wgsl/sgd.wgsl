// SGD with momentum (optionally Nesterov) and decoupled-from-nothing L2 weight decay, PyTorch's convention:
//   g' = g + wd * p;  v = mu * v + g';  step = nesterov ? g' + mu * v : v;  p -= lr * step.
struct Params { n: u32, lr: f32, momentum: f32, weight_decay: f32, nesterov: u32, }

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> velocity: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let g = grad[i] + params.weight_decay * param[i];
  let v = params.momentum * velocity[i] + g;
  velocity[i] = v;
  let step = select(v, g + params.momentum * v, params.nesterov != 0u);
  param[i] = param[i] - params.lr * step;
}
