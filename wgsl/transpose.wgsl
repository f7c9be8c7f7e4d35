// Batched transpose [batch, rows, cols] -> [batch, cols, rows], through a TILE x TILE workgroup tile so
// both the reads and the writes walk memory in order.
struct Params { rows: u32, cols: u32, }

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

const TILE: u32 = 16u;
var<workgroup> tile: array<array<u32, 17>, 16>; // padded column avoids bank conflicts on real GPUs

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let plane = wid.z * params.rows * params.cols;
  let r = wid.y * TILE + lid.y;
  let c = wid.x * TILE + lid.x;
  if (r < params.rows && c < params.cols) {
    tile[lid.y][lid.x] = x[plane + r * params.cols + c];
  }
  workgroupBarrier();
  let orow = wid.x * TILE + lid.y; // output row = input column
  let ocol = wid.y * TILE + lid.x;
  if (orow < params.cols && ocol < params.rows) {
    out[plane + orow * params.rows + ocol] = tile[lid.x][lid.y];
  }
}
