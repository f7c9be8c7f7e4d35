// WaNet's warp field: bounded, smooth, seeded; noise mode is not smooth.
import { describe, expect, it } from "vitest";
import { noiseField, upsample, wanetControlGrid, wanetField } from "../../src/attacks/wanet.ts";
import { mulberry32, testSeed } from "../support/rng.ts";

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/**
 * Largest difference between horizontally or vertically neighbouring pixels of an h x w field, over
 * pixels where `free` is true (the border clamp to [-1, 1], as in WaNet, is a deliberate kink).
 */
function maxStep(f: Float64Array, h: number, w: number, free: (p: number) => boolean = () => true): number {
  let m = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      if (!free(p)) continue;
      if (x + 1 < w && free(p + 1)) m = Math.max(m, Math.abs(f[p + 1] - f[p]));
      if (y + 1 < h && free(p + w)) m = Math.max(m, Math.abs(f[p + w] - f[p]));
    }
  }
  return m;
}

/** Mean absolute difference between horizontally or vertically neighbouring pixels of an h x w field. */
function meanStep(f: Float64Array, h: number, w: number): number {
  let sum = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      if (x + 1 < w) sum += Math.abs(f[p + 1] - f[p]);
      if (y + 1 < h) sum += Math.abs(f[p + w] - f[p]);
    }
  }
  return sum / (2 * h * w - h - w);
}

describe("WaNet warp field", () => {
  for (const upsampleMode of ["bilinear", "bicubic"] as const) {
    it(`${upsampleMode}: bounded by s * max|control| (pixels) and smooth`, () => {
      const seed = testSeed(`wanet field ${upsampleMode}`);
      const H = 32, W = 32, s = 0.5, k = 4;
      const ctrl = wanetControlGrid({ k, seed });
      // mean |ins| = 1
      expect(Math.abs(ctrl.reduce((a, v) => a + Math.abs(v), 0) / ctrl.length - 1)).toBeLessThan(1e-12);
      const f = wanetField({ seed, s, k, upsample: upsampleMode }, H, W);
      const M = maxAbs(ctrl);
      // Bilinear never leaves the control values' range; PyTorch's bicubic (A = -0.75) can overshoot
      // by at most its weights' absolute sum, 1.375 per axis at t = 0.5.
      const gain = upsampleMode === "bilinear" ? 1 : 1.375 ** 2;
      // Displacement in pixels: s * noise / H in normalised units, times (W - 1) / 2 pixels per unit.
      const bound = (s * M * gain * (W - 1)) / (2 * H);
      for (const d of [f.dx, f.dy]) {
        expect(maxAbs(d)).toBeLessThanOrEqual(bound + 1e-9);
        expect(maxAbs(d)).toBeGreaterThan(0.05); // it does warp
      }
      // Smooth: control points are (W - 1) / (k - 1) pixels apart, so neighbours differ by at most the
      // control range over that spacing (bilinear) or a small multiple (bicubic), in displacement pixels.
      const stepBound = ((s * 2 * M * gain * (W - 1)) / (2 * H)) * ((k - 1) / (W - 1)) *
        (upsampleMode === "bilinear" ? 1 : 2);
      const free = (p: number) => Math.abs(f.gx[p]) < 1 && Math.abs(f.gy[p]) < 1;
      let clamped = 0;
      for (let p = 0; p < H * W; p++) {
        if (free(p)) continue;
        clamped++;
        const x = p % W, y = Math.floor(p / W);
        expect(x === 0 || y === 0 || x === W - 1 || y === H - 1).toBe(true); // only the border clamps
      }
      expect(clamped).toBeLessThan(4 * W);
      expect(maxStep(f.dx, H, W, free)).toBeLessThanOrEqual(stepBound);
      expect(maxStep(f.dy, H, W, free)).toBeLessThanOrEqual(stepBound);
      // ... and much smoother than the per-pixel noise of noise mode: its mean step is 6.5-fold or more over 3,000
      // seeds of each mode (the largest steps are not: 2-fold failed about 1 seed in 60, CI seed 45926657).
      const nf = noiseField(f, H, W, mulberry32(seed));
      expect(meanStep(nf.dx, H, W)).toBeGreaterThan(4 * meanStep(f.dx, H, W));
      expect(maxAbs(nf.dx.map((v, p) => v - f.dx[p]))).toBeLessThanOrEqual((W - 1) / (2 * H) + 1e-9);
    });
  }

  it("sampling coordinates stay inside the image", () => {
    const seed = testSeed("wanet clamp");
    const f = wanetField({ seed, s: 8 }, 16, 16); // a strong warp hits the clamp
    for (let p = 0; p < 256; p++) {
      const x = p % 16, y = Math.floor(p / 16);
      expect(x + f.dx[p] >= -1e-9 && x + f.dx[p] <= 15 + 1e-9).toBe(true);
      expect(y + f.dy[p] >= -1e-9 && y + f.dy[p] <= 15 + 1e-9).toBe(true);
    }
  });

  it("seeded: triggerSeed decides the field", () => {
    const seed = testSeed("wanet seeds");
    const a = wanetField({ seed }, 8, 8),
      b = wanetField({ seed: seed + 1, triggerSeed: seed }, 8, 8),
      c = wanetField({ seed: seed + 1 }, 8, 8);
    expect(Array.from(a.dx)).toEqual(Array.from(b.dx));
    expect(Array.from(a.dx).join() === Array.from(c.dx).join()).toBe(false);
  });

  it("upsampling passes through the control points (align_corners)", () => {
    const rand = mulberry32(testSeed("wanet upsample"));
    const plane = Float64Array.from({ length: 16 }, () => rand() * 2 - 1);
    for (const mode of ["bilinear", "bicubic"] as const) {
      const up = upsample(plane, 4, 10, 10, mode); // control points at pixels 0, 3, 6, 9
      for (let i = 0; i < 4; i++) {
        for (let j = 0; j < 4; j++) expect(Math.abs(up[i * 3 * 10 + j * 3] - plane[i * 4 + j])).toBeLessThan(1e-12);
      }
    }
  });
});
