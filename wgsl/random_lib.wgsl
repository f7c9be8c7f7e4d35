// Counter-based random numbers: every value is a pure function of (seed, stream, index), so any device
// (and the TypeScript twin in kernels/random.ts) regenerates the same bits. Only integer ops, exact
// power-of-two scalings and small-integer conversions are used: results are bit-identical everywhere.
// Other shaders (the TRAK projection) prepend this file to use rng_* inline.

// "lowbias32" integer hash (Chris Wellons): good avalanche with two multiplies.
fn rng_hash(v: u32) -> u32 {
  var x = v;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

fn rng_combine(h: u32, v: u32) -> u32 {
  return rng_hash(h ^ (v + 0x9e3779b9u + (h << 6u) + (h >> 2u)));
}

fn rng_bits(seed: u32, stream: u32, index: u32) -> u32 {
  return rng_combine(rng_combine(rng_hash(seed), stream), index);
}

// Uniform in [0, 1) with 24 random bits: exactly representable in f32.
fn rng_uniform(seed: u32, stream: u32, index: u32) -> f32 {
  return f32(rng_bits(seed, stream, index) >> 8u) * (1.0 / 16777216.0);
}

// +1 or -1 with equal probability.
fn rng_sign(seed: u32, stream: u32, index: u32) -> f32 {
  return select(1.0, -1.0, (rng_bits(seed, stream, index) & 0x80000000u) != 0u);
}

// Standard normal by Irwin-Hall: the sum of 12 uniform 16-bit draws, minus 6. Exact in f32 (the sum is an
// integer below 2^20), unlike Box-Muller whose log/cos differ across devices. Tails are cut at +-6.
fn rng_normal(seed: u32, stream: u32, index: u32) -> f32 {
  let base = rng_bits(seed, stream, index);
  var sum = 0u;
  for (var k = 0u; k < 6u; k++) {
    let h = rng_combine(base, k);
    sum += (h & 0xffffu) + (h >> 16u);
  }
  return (f32(sum) - 393216.0) * (1.0 / 65536.0);
}
