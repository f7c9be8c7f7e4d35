// A small synthetic image-classification set a tiny model learns in seconds: per-class random prototypes
// plus per-example noise, a fraction of labels flipped (so single examples matter), u8 pixels, CHW.
import { type Dataset, mulberry32 } from "../data/dataset.ts";

export interface SyntheticOptions {
  n: number;
  classes: number;
  shape: [number, number, number];
  seed: number;
  /** Prototype amplitude and per-pixel noise, in pixel units. Defaults 40 and 50. */
  signal?: number;
  noise?: number;
  /** Fraction of labels replaced by a uniformly random class. Default 0.1. */
  labelNoise?: number;
  /** Seed of the class prototypes (share it between a training and a target set). Default `seed`. */
  prototypeSeed?: number;
}

export function syntheticDataset(o: SyntheticOptions): Dataset {
  const [c, h, w] = o.shape;
  const size = c * h * w;
  const protoRand = mulberry32(o.prototypeSeed ?? o.seed);
  const protos = Array.from(
    { length: o.classes },
    () => Float64Array.from({ length: size }, () => 2 * protoRand() - 1),
  );
  const rand = mulberry32(o.seed ^ 0x5bd1e995);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const images = new Uint8Array(o.n * size);
  const labels = new Uint8Array(o.n);
  for (let i = 0; i < o.n; i++) {
    const y = Math.floor(rand() * o.classes);
    for (let p = 0; p < size; p++) {
      const v = 128 + (o.signal ?? 40) * protos[y][p] + (o.noise ?? 50) * gauss();
      images[i * size + p] = Math.max(0, Math.min(255, Math.round(v)));
    }
    labels[i] = rand() < (o.labelNoise ?? 0.1) ? Math.floor(rand() * o.classes) : y;
  }
  return {
    name: `synthetic[seed=${o.seed},n=${o.n}]`,
    images,
    labels,
    n: o.n,
    c,
    h,
    w,
    classes: Array.from({ length: o.classes }, (_, i) => `class${i}`),
  };
}
