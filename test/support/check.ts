// Compare a GPU result with its float64 CPU twin.
export interface Tolerance {
  /** Relative error bound, measured against max(|want|, scale). */
  rtol: number;
  /** Errors are relative to at least this magnitude (avoids dividing by ~0). Default 1. */
  scale?: number;
}

export function maxRelError(got: ArrayLike<number>, want: ArrayLike<number>, scale = 1): { err: number; at: number } {
  if (got.length !== want.length) throw new Error(`length ${got.length} != expected ${want.length}`);
  let err = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), scale);
    // NaN (a poisoned, unwritten element) must fail: NaN comparisons are false, so test explicitly.
    if (!(e <= err)) {
      err = Number.isNaN(e) ? Infinity : e;
      at = i;
      if (err === Infinity) break;
    }
  }
  return { err, at };
}

export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance, what = "result"): number {
  const { err, at } = maxRelError(got, want, tol.scale ?? 1);
  if (!(err <= tol.rtol)) {
    throw new Error(
      `${what}: max relative error ${err.toExponential(3)} > ${tol.rtol} at index ${at} (got ${got[at]}, want ${
        want[at]
      })`,
    );
  }
  return err;
}

export function assertEqualArrays(got: ArrayLike<number>, want: ArrayLike<number>, what = "result"): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} != ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) throw new Error(`${what}: element ${i} is ${got[i]}, expected ${want[i]}`);
  }
}
