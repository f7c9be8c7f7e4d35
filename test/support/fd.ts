// Finite-difference checks of float64 twins: central differences on a few random entries.
import { randInt } from "./rng.ts";

export const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

export interface FdOptions {
  /** Step (default 1e-6). */
  h?: number;
  /** Largest error relative to max(|analytic|, 1e-3) (default 1e-5). */
  rtol?: number;
  /** Entries probed per array (default 8). */
  probes?: number;
}

/**
 * For each [name, array, analytic gradient], perturb random entries of the array in place by ±h and
 * compare (loss(+h) - loss(-h)) / 2h with the analytic gradient; throws naming the entry on a mismatch.
 */
export function fdCheck(
  rand: () => number,
  loss: () => number,
  params: readonly (readonly [string, Float64Array, ArrayLike<number>])[],
  what: string,
  o: FdOptions = {},
): void {
  const h = o.h ?? 1e-6;
  const rtol = o.rtol ?? 1e-5;
  for (const [name, param, grad] of params) {
    for (let t = 0; t < (o.probes ?? 8); t++) {
      const j = randInt(rand, 0, param.length - 1);
      const keep = param[j];
      param[j] = keep + h;
      const up = loss();
      param[j] = keep - h;
      const down = loss();
      param[j] = keep;
      const fd = (up - down) / (2 * h);
      const err = Math.abs(fd - grad[j]) / Math.max(Math.abs(grad[j]), 1e-3);
      if (!(err < rtol)) {
        throw new Error(
          `${what}: d loss / d ${name}[${j}]: finite difference ${fd}, twin ${grad[j]} (rel. error ${err})`,
        );
      }
    }
  }
}
