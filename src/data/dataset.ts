// In-memory image classification dataset: uint8 pixels, channel-planar (CHW) per image.

export interface Dataset {
  name: string;
  /** n*c*h*w bytes, image i at [i*c*h*w, (i+1)*c*h*w), each image CHW (all of channel 0, then 1, ...). */
  images: Uint8Array;
  labels: Uint8Array;
  n: number;
  c: number;
  h: number;
  w: number;
  classes: string[];
}

export const CIFAR10_MEAN: readonly number[] = [0.4914, 0.4822, 0.4465];
export const CIFAR10_STD: readonly number[] = [0.247, 0.2435, 0.2616];

export interface Normalisation {
  mean: readonly number[];
  std: readonly number[];
}

export const imageSize = (ds: Pick<Dataset, "c" | "h" | "w">): number => ds.c * ds.h * ds.w;

/** Images at `indices` (any order, repeats allowed), copied into a new dataset. */
export function subset(ds: Dataset, indices: ArrayLike<number>, name = `${ds.name}[subset]`): Dataset {
  const size = imageSize(ds);
  const m = indices.length;
  const images = new Uint8Array(m * size);
  const labels = new Uint8Array(m);
  for (let j = 0; j < m; j++) {
    const i = indices[j];
    if (!Number.isInteger(i) || i < 0 || i >= ds.n) {
      throw new Error(`subset: index ${i} at position ${j} is out of range 0..${ds.n - 1}`);
    }
    images.set(ds.images.subarray(i * size, (i + 1) * size), j * size);
    labels[j] = ds.labels[i];
  }
  return { ...ds, name, images, labels, n: m };
}

/**
 * mulberry32: a 32-bit-state seeded PRNG (Tommy Ettinger's), uniform in [0, 1). Small and fast;
 * fine for sampling, not for cryptography. Same seed → same sequence in every JS runtime.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `count` distinct indices from 0..n-1: the first `count` positions of a Fisher–Yates shuffle of
 * 0..n-1 driven by mulberry32(seed) (position j swaps with a uniform k in j..n-1). The result is in
 * shuffled order, so a prefix of a larger sample with the same seed is the smaller sample.
 */
export function seededIndices(n: number, count: number, seed: number): Uint32Array {
  if (!Number.isInteger(count) || count < 0 || count > n) {
    throw new Error(`seededIndices: count ${count} is not in 0..${n}`);
  }
  const rand = mulberry32(seed);
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let j = 0; j < count; j++) {
    const k = j + Math.floor(rand() * (n - j));
    const t = perm[j];
    perm[j] = perm[k];
    perm[k] = t;
  }
  return perm.slice(0, count);
}

/** Deterministic sample of `count` images without replacement; see seededIndices for the RNG. */
export function seededSubset(ds: Dataset, count: number, seed: number): Dataset {
  return subset(ds, seededIndices(ds.n, count, seed), `${ds.name}[seed=${seed},n=${count}]`);
}

/**
 * Pixels as float32 (same CHW layout), (x/255 - mean[ch]) / std[ch]. Defaults to the CIFAR-10
 * statistics, which only make sense for 3-channel data, so other channel counts must pass theirs.
 */
export function toFloat(ds: Dataset, norm?: Normalisation): Float32Array {
  const { mean, std } = norm ?? (ds.c === 3 ? { mean: CIFAR10_MEAN, std: CIFAR10_STD } : missingNorm(ds));
  if (mean.length !== ds.c || std.length !== ds.c) {
    throw new Error(`toFloat: ${ds.name} has ${ds.c} channels but mean/std have ${mean.length}/${std.length}`);
  }
  const plane = ds.h * ds.w;
  const out = new Float32Array(ds.images.length);
  const lut = new Float32Array(256);
  for (let ch = 0; ch < ds.c; ch++) {
    if (!(std[ch] > 0)) throw new Error(`toFloat: std[${ch}] = ${std[ch]} must be positive`);
    for (let v = 0; v < 256; v++) lut[v] = (v / 255 - mean[ch]) / std[ch];
    for (let i = 0; i < ds.n; i++) {
      const base = (i * ds.c + ch) * plane;
      for (let p = base; p < base + plane; p++) out[p] = lut[ds.images[p]];
    }
  }
  return out;
}

function missingNorm(ds: Dataset): never {
  throw new Error(
    `toFloat: ${ds.name} has ${ds.c} channel(s); pass {mean, std} (the defaults are CIFAR-10's 3-channel statistics)`,
  );
}

/** Datasets of the same image shape and class list, one after another. */
export function concat(...parts: Dataset[]): Dataset {
  if (parts.length === 0) throw new Error("concat: no datasets");
  const [first] = parts;
  for (const p of parts) {
    if (p.c !== first.c || p.h !== first.h || p.w !== first.w) {
      throw new Error(`concat: ${p.name} is ${p.c}x${p.h}x${p.w}, ${first.name} is ${first.c}x${first.h}x${first.w}`);
    }
    if (p.classes.join("\n") !== first.classes.join("\n")) {
      throw new Error(`concat: ${p.name} and ${first.name} have different class lists`);
    }
  }
  const n = parts.reduce((s, p) => s + p.n, 0);
  const images = new Uint8Array(n * imageSize(first));
  const labels = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    images.set(p.images.subarray(0, p.n * imageSize(p)), at * imageSize(first));
    labels.set(p.labels.subarray(0, p.n), at);
    at += p.n;
  }
  return {
    name: parts.map((p) => p.name).join("+"),
    images,
    labels,
    n,
    c: first.c,
    h: first.h,
    w: first.w,
    classes: [...first.classes],
  };
}

/** All images as HWC (interleaved channels, as PNG, NumPy and PIL lay them out) instead of CHW. */
export function toHwc(ds: Dataset): Uint8Array {
  const plane = ds.h * ds.w, size = ds.c * plane, out = new Uint8Array(ds.n * size);
  for (let i = 0; i < ds.n; i++) {
    for (let k = 0; k < ds.c; k++) {
      for (let p = 0; p < plane; p++) out[i * size + p * ds.c + k] = ds.images[i * size + k * plane + p];
    }
  }
  return out;
}

/** Number of images per class, indexed by label. */
export function classCounts(ds: Dataset): number[] {
  const counts = new Array<number>(ds.classes.length).fill(0);
  for (let i = 0; i < ds.n; i++) counts[ds.labels[i]]++;
  return counts;
}

/** Throws unless sizes agree and every label names a class; loaders call this before returning. */
export function checkDataset(ds: Dataset): Dataset {
  const size = imageSize(ds);
  if (ds.images.length !== ds.n * size) {
    throw new Error(`${ds.name}: ${ds.images.length} pixel bytes, expected ${ds.n}x${size}`);
  }
  if (ds.labels.length !== ds.n) throw new Error(`${ds.name}: ${ds.labels.length} labels for ${ds.n} images`);
  for (let i = 0; i < ds.n; i++) {
    if (ds.labels[i] >= ds.classes.length) {
      throw new Error(`${ds.name}: label ${ds.labels[i]} at record ${i} is out of range 0..${ds.classes.length - 1}`);
    }
  }
  return ds;
}
