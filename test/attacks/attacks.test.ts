// Pure-CPU tests of the attack suite (Node or Deno).
import { describe, expect, it } from "vitest";
import {
  adapBlend,
  adapPatch,
  applyTrigger,
  asrClasses,
  badnets,
  blended,
  labelConsistent,
  parseAttackConfig,
  poison,
  sig,
  tact,
  wanet,
} from "../../src/attacks/index.ts";
import { buildPatch, type PatchConfig, PatchConfig as PatchSchema, patchOrigin } from "../../src/attacks/badnets.ts";
import { blendPattern } from "../../src/attacks/blended.ts";
import { sigSignal } from "../../src/attacks/sig.ts";
import { type AttackName, type AttackResult, ATTACKS } from "../../src/attacks/types.ts";
import type { Dataset } from "../../src/data/dataset.ts";
import { testSeed } from "../support/rng.ts";
import { changedImages, changedLabels, constantDataset, image, randomDataset, sameBytes } from "./helpers.ts";

const PURE: readonly AttackName[] = ATTACKS;
// Poisoning applies part of the adaptive attacks' trigger, the test time all of it.
const PARTIAL: AttackName[] = ["adap-blend", "adap-patch"];
// label-consistent with steps: 0 is the patch alone (no device); the PGD path is in the GPU test.
const baseConfig = (
  attack: AttackName,
  extra: Record<string, unknown> = {},
) => (attack === "label-consistent" ? { steps: 0, ...extra } : extra);

async function run(attack: AttackName, ds: Dataset, config: Record<string, unknown>): Promise<AttackResult> {
  return await poison(attack, ds, baseConfig(attack, config) as never);
}

describe("every attack", () => {
  for (const attack of PURE) {
    it(`${attack}: changes exactly the examples in its manifest, never mutates its input`, async () => {
      const seed = testSeed(`${attack} manifest`);
      const ds = randomDataset(seed);
      const before = { images: ds.images.slice(), labels: ds.labels.slice() };
      const rate = attack === "sig" || attack === "label-consistent" ? 0.06 : 0.1;
      const { poisoned, manifest } = await run(attack, ds, { rate, seed, targetClass: 3 });
      expect(sameBytes(ds.images, before.images)).toBe(true);
      expect(sameBytes(ds.labels, before.labels)).toBe(true);
      expect(manifest.attack).toBe(attack);
      expect(manifest.indices.length).toBe(Math.round(rate * ds.n));
      expect(manifest.indices).toEqual([...manifest.indices].sort((a, b) => a - b));
      expect(manifest.originalLabels).toEqual(manifest.indices.map((i) => ds.labels[i]));
      const modified = [...manifest.indices, ...(manifest.noiseIndices ?? []), ...(manifest.coverIndices ?? [])]
        .sort((a, b) => a - b);
      expect(changedImages(ds, poisoned)).toEqual(modified);
      const clean = attack === "sig" || attack === "label-consistent";
      if (clean) {
        expect(changedLabels(ds, poisoned)).toEqual([]);
        expect(manifest.indices.every((i) => ds.labels[i] === 3)).toBe(true);
      } else {
        expect(manifest.indices.every((i) => ds.labels[i] !== 3 && poisoned.labels[i] === 3)).toBe(true);
        expect(changedLabels(ds, poisoned)).toEqual(manifest.indices);
      }
      if (attack === "wanet") {
        expect(manifest.noiseIndices!.length).toBe(2 * manifest.indices.length);
        expect(manifest.noiseIndices!.some((i) => manifest.indices.includes(i))).toBe(false);
      }
    });

    it(`${attack}: same seed reproduces, another seed differs`, async () => {
      const seed = testSeed(`${attack} seeds`);
      const ds = randomDataset(seed);
      const a = await run(attack, ds, { rate: 0.05, seed });
      const b = await run(attack, ds, { rate: 0.05, seed });
      const c = await run(attack, ds, { rate: 0.05, seed: seed + 1 });
      expect(sameBytes(a.poisoned.images, b.poisoned.images)).toBe(true);
      expect(sameBytes(a.poisoned.labels, b.poisoned.labels)).toBe(true);
      expect(a.manifest.indices).toEqual(b.manifest.indices);
      expect(sameBytes(a.poisoned.images, c.poisoned.images)).toBe(false);
      expect(a.manifest.indices.join() === c.manifest.indices.join()).toBe(false);
    });

    if (PARTIAL.includes(attack)) continue;
    it(`${attack}: applyTrigger reproduces what poisoning did to the poisoned images`, async () => {
      const seed = testSeed(`${attack} trigger`);
      const ds = randomDataset(seed);
      const config = baseConfig(attack, { rate: 0.05, seed, ...(attack === "badnets" ? { position: "random" } : {}) });
      const { poisoned, manifest } = await poison(attack, ds, config as never);
      const triggered = applyTrigger(attack, config as never, ds);
      expect(sameBytes(triggered.labels, ds.labels)).toBe(true);
      for (const i of manifest.indices) expect(sameBytes(image(triggered, i), image(poisoned, i))).toBe(true);
      expect(changedImages(ds, triggered).length).toBe(ds.n); // the trigger lands on every image
    });
  }

  it("dirty-label attacks honour sourceClasses; counts are over the whole set", () => {
    const seed = testSeed("source classes");
    const ds = randomDataset(seed, 300);
    for (const attack of [badnets, blended, wanet]) {
      const { manifest } = attack(ds, { rate: 0.05, seed, sourceClasses: [2, 5], targetClass: 0 });
      expect(manifest.indices.length).toBe(15);
      expect(manifest.indices.every((i) => ds.labels[i] === 2 || ds.labels[i] === 5)).toBe(true);
    }
    const all = badnets(ds, { rate: 0.3, seed, targetClass: 7 });
    expect(all.manifest.indices.some((i) => ds.labels[i] === 7)).toBe(false);
  });

  it("bad configs fail with errors that name the field", async () => {
    const ds = randomDataset(1);
    expect(() => badnets(ds, { rate: 1.5 })).toThrow(/rate/);
    expect(() => badnets(ds, { targt: 1 } as never)).toThrow(/targt/);
    expect(() => badnets(ds, { targetClass: 10 })).toThrow(/targetClass 10 is out of range/);
    expect(() => badnets(ds, { rate: 0.5, sourceClasses: [1] })).toThrow(/only 20 have a source class/);
    expect(() => badnets(ds, { patchSize: 17 })).toThrow(/does not fit/);
    expect(() => badnets(ds, { color: [1, 2] })).toThrow(/color has 2 values/);
    expect(() => badnets(ds, { pattern: [[1, 2], [3]] })).toThrow(/same length/);
    expect(() => badnets(ds, { position: "middle" as never })).toThrow(/position/);
    expect(() => sig(ds, { sourceClasses: [1] })).toThrow(/clean-label/);
    expect(() => sig(ds, { rate: 0.2 })).toThrow(/source class/);
    expect(() => blended(ds, { alpha: 1.5 })).toThrow(/alpha/);
    expect(() => wanet(ds, { rate: 0.2, crossRatio: 5 })).toThrow(/noise-mode/);
    expect(() => parseAttackConfig("nope" as never, {})).toThrow(/unknown attack "nope"/);
    let message = "";
    await labelConsistent(ds, { sourceClasses: [4] }).catch((e) => (message = (e as Error).message));
    expect(message).toMatch(/clean-label/);
  });
});

describe("adaptive attacks and TaCT", () => {
  /** Pixels (h x w positions, any channel) where two images differ. */
  const changedPixels = (a: Uint8Array, b: Uint8Array, hw: number) => {
    const out = new Set<number>();
    for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) out.add(k % hw);
    return out;
  };

  it("adap-blend: poisons and covers get half of the 4x4 pieces at alpha 0.15, the test trigger all at 0.2", () => {
    const seed = testSeed("adap-blend pieces");
    const ds = randomDataset(seed, 200, 3, 16, 16);
    const { poisoned, manifest } = adapBlend(ds, { rate: 0.05, seed, targetClass: 2 });
    expect(manifest.coverIndices!.length).toBe(10); // coverRate defaults to rate
    expect(manifest.coverIndices!.some((i) => manifest.indices.includes(i))).toBe(false);
    expect(manifest.coverIndices!.every((i) => poisoned.labels[i] === ds.labels[i])).toBe(true);
    const masks = new Set<string>();
    for (const i of [...manifest.indices, ...manifest.coverIndices!]) {
      const cells = new Set([...changedPixels(image(ds, i), image(poisoned, i), 256)].map((p) => {
        const y = Math.floor(p / 16), x = p % 16;
        return Math.floor(y / 4) * 4 + Math.floor(x / 4);
      }));
      expect(cells.size).toBeLessThanOrEqual(8); // 8 of 16 pieces kept (a kept pixel may round to itself)
      expect(cells.size).toBeGreaterThanOrEqual(7);
      masks.add([...cells].sort().join());
      const p = image(poisoned, i), c = image(ds, i);
      for (let k = 0; k < p.length; k++) {
        if (p[k] !== c[k]) expect(Math.abs(p[k] - c[k])).toBeLessThanOrEqual(Math.ceil(0.15 * 255));
      }
    }
    expect(masks.size).toBeGreaterThan(10); // the pieces differ from image to image
    const pattern = blendPattern(parseAttackConfig("adap-blend", { seed }) as never, ds);
    const triggered = applyTrigger("adap-blend", { seed }, ds);
    for (let k = 0; k < ds.images.length; k++) {
      expect(triggered.images[k]).toBe(Math.round(0.8 * ds.images[k] + 0.2 * pattern[k % 768]));
    }
  });

  it("adap-patch: each poison and cover gets one corner patch (a quarter of them each), the trigger all four", () => {
    const seed = testSeed("adap-patch corners");
    const ds = randomDataset(seed, 400, 3, 16, 16);
    const { poisoned, manifest } = adapPatch(ds, { rate: 0.1, seed, targetClass: 0 });
    const corner = (i: number) => {
      const px = [...changedPixels(image(ds, i), image(poisoned, i), 256)];
      const ys = px.map((p) => Math.floor(p / 16)), xs = px.map((p) => p % 16);
      expect(Math.max(...ys) - Math.min(...ys)).toBeLessThan(4);
      expect(Math.max(...xs) - Math.min(...xs)).toBeLessThan(4);
      return (ys[0] < 8 ? 0 : 2) + (xs[0] < 8 ? 0 : 1);
    };
    for (const group of [manifest.indices, manifest.coverIndices!]) {
      const counts = [0, 0, 0, 0];
      for (const i of group) counts[corner(i)]++;
      expect(counts).toEqual([10, 10, 10, 10]);
    }
    const triggered = applyTrigger("adap-patch", { seed }, ds);
    const again = applyTrigger("adap-patch", { seed }, constantDataset(77, 1, 3, 16, 16));
    for (let i = 0; i < ds.n; i++) {
      const px = changedPixels(image(ds, i), image(triggered, i), 256);
      expect([...px].every((p) => {
        const y = Math.floor(p / 16), x = p % 16;
        return (y >= 1 && y < 5 || y >= 11 && y < 15) && (x >= 1 && x < 5 || x >= 11 && x < 15);
      })).toBe(true);
      // Full opacity: the four patches' pixels are the same on every image.
      for (const [y, x] of [[1, 1], [1, 14], [14, 1], [14, 14]]) {
        for (let ch = 0; ch < 3; ch++) {
          expect(image(triggered, i)[(ch * 16 + y) * 16 + x]).toBe(image(again, 0)[(ch * 16 + y) * 16 + x]);
        }
      }
    }
  });

  it("tact: poisons from the source classes, covers from cover classes keep their labels; ASR counts sources", () => {
    const seed = testSeed("tact classes");
    const ds = randomDataset(seed, 500);
    const { poisoned, manifest } = tact(ds, { seed, targetClass: 0, sourceClasses: [1], coverClasses: [5, 7] });
    expect(manifest.indices.length).toBe(10);
    expect(manifest.indices.every((i) => ds.labels[i] === 1 && poisoned.labels[i] === 0)).toBe(true);
    expect(manifest.coverIndices!.length).toBe(5);
    expect(manifest.coverIndices!.every((i) => [5, 7].includes(ds.labels[i]) && poisoned.labels[i] === ds.labels[i]))
      .toBe(true);
    expect(asrClasses("tact", { sourceClasses: [1, 3] }, 10)).toEqual([1, 3]);
    expect(asrClasses("badnets", { targetClass: 4 }, 10)).toEqual([0, 1, 2, 3, 5, 6, 7, 8, 9]);
    expect(() => tact(ds, { coverClasses: [1] })).toThrow(/neither the target nor a source/);
  });
});

describe("BadNets patches", () => {
  const corners = ["bottom-right", "bottom-left", "top-right", "top-left"] as const;
  for (const position of corners) {
    it(`lands at the ${position} corner (margin 1) and touches nothing else`, () => {
      const seed = testSeed(`badnets ${position}`);
      const ds = randomDataset(seed, 50, 3, 12, 10);
      const { poisoned, manifest } = badnets(ds, {
        rate: 0.2,
        seed,
        position,
        margin: 1,
        patchSize: 3,
        color: [10, 200, 30],
      });
      const y0 = position.startsWith("top") ? 1 : 12 - 3 - 1, x0 = position.endsWith("left") ? 1 : 10 - 3 - 1;
      for (const i of manifest.indices) {
        const a = image(ds, i), b = image(poisoned, i);
        for (let ch = 0; ch < 3; ch++) {
          for (let y = 0; y < 12; y++) {
            for (let x = 0; x < 10; x++) {
              const k = (ch * 12 + y) * 10 + x;
              const inPatch = y >= y0 && y < y0 + 3 && x >= x0 && x < x0 + 3;
              expect(b[k]).toBe(inPatch ? [10, 200, 30][ch] : a[k]);
            }
          }
        }
      }
    });
  }

  it("random positions: in bounds, varied across images, the patch exactly there", () => {
    const seed = testSeed("badnets random");
    const ds = randomDataset(seed, 400, 1, 16, 16);
    const pattern = [[0, 255, 0, 255], [255, 0, 255, 0], [0, 255, 0, 255]]; // 3 rows x 4 columns
    const config = { rate: 0.2, seed, position: "random" as const, pattern };
    const { poisoned, manifest } = badnets(ds, config);
    const p: PatchConfig = PatchSchema.parse({ position: "random", pattern });
    const patch = buildPatch(p, 1);
    const origins = new Set<string>();
    for (const i of manifest.indices) {
      const { y, x } = patchOrigin(p, patch, 16, 16, seed, i);
      expect(y >= 0 && y <= 16 - 3 && x >= 0 && x <= 16 - 4).toBe(true);
      origins.add(`${y},${x}`);
      const a = image(ds, i), b = image(poisoned, i);
      for (let yy = 0; yy < 16; yy++) {
        for (let xx = 0; xx < 16; xx++) {
          const inPatch = yy >= y && yy < y + 3 && xx >= x && xx < x + 4;
          expect(b[yy * 16 + xx]).toBe(inPatch ? pattern[yy - y][xx - x] : a[yy * 16 + xx]);
        }
      }
    }
    expect(origins.size).toBeGreaterThan(manifest.indices.length / 2);
  });

  it("a [c][h][w] pattern is stamped per channel", () => {
    const ds = randomDataset(testSeed("badnets chw pattern"), 40, 3, 8, 8);
    const pattern = [[[1, 2]], [[3, 4]], [[5, 6]]]; // 1 x 2 per channel
    const { poisoned, manifest } = badnets(ds, { rate: 0.25, pattern, position: "top-left" });
    for (const i of manifest.indices) {
      const b = image(poisoned, i);
      expect([b[0], b[1], b[64], b[65], b[128], b[129]]).toEqual([1, 2, 3, 4, 5, 6]);
    }
  });
});

describe("pixel ranges", () => {
  it("SIG on white and black images clips to 0..255 and follows the signal elsewhere", () => {
    for (const value of [0, 255, 128]) {
      const ds = constantDataset(value, 20, 3, 8, 12, 2);
      const { poisoned, manifest } = sig(ds, { rate: 0.5, delta: 40, frequency: 3, targetClass: 1 });
      const v = sigSignal({ delta: 40, frequency: 3 }, 12);
      for (const i of manifest.indices) {
        const b = image(poisoned, i);
        for (let k = 0; k < b.length; k++) {
          const want = Math.min(255, Math.max(0, Math.round(value + v[k % 12])));
          expect(b[k]).toBe(want);
        }
        if (value === 255) expect(Math.min(...b)).toBe(215);
        if (value === 0) expect(Math.max(...b)).toBe(40);
      }
    }
  });

  it("Blended with an image pattern mixes at alpha (rounded) and resizes the pattern", () => {
    const ds = constantDataset(100, 10, 3, 8, 8, 2);
    const rgb = new Uint8Array(4 * 4 * 3);
    for (let p = 0; p < 16; p++) rgb.set([250, 0, 50], p * 3);
    const { poisoned, manifest } = blended(ds, {
      rate: 0.5,
      targetClass: 1,
      alpha: 0.2,
      pattern: { kind: "image", rgb, w: 4, h: 4 },
    });
    for (const i of manifest.indices) {
      const b = image(poisoned, i);
      expect([b[0], b[64], b[128], b[191]]).toEqual([130, 80, 90, 90]);
    }
    expect(() => blended(ds, { pattern: { kind: "image", rgb, w: 5, h: 4 } })).toThrow(/expected 5x4x3/);
  });

  it("WaNet keeps constant images constant (a warp moves pixels, it does not invent values)", () => {
    const ds = constantDataset(77, 20, 3, 16, 16, 2);
    const { poisoned } = wanet(ds, { rate: 0.25, targetClass: 1, crossRatio: 1 });
    expect(poisoned.images.every((v) => v === 77)).toBe(true);
  });
});
