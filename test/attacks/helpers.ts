// Synthetic datasets for the attack tests (seeded).
import type { Dataset } from "../../src/data/dataset.ts";
import { mulberry32 } from "../support/rng.ts";

export function randomDataset(seed: number, n = 200, c = 3, h = 16, w = 16, classes = 10): Dataset {
  const rand = mulberry32(seed);
  const images = new Uint8Array(n * c * h * w);
  for (let k = 0; k < images.length; k++) images[k] = Math.floor(rand() * 256);
  // Every class present: labels cycle, then a seeded shuffle of the order is irrelevant for the tests.
  const labels = Uint8Array.from({ length: n }, (_, i) => i % classes);
  return {
    name: `random[${seed}]`,
    images,
    labels,
    n,
    c,
    h,
    w,
    classes: Array.from({ length: classes }, (_, k) => `class${k}`),
  };
}

export function constantDataset(value: number, n = 20, c = 3, h = 8, w = 12, classes = 2): Dataset {
  return {
    name: `constant[${value}]`,
    images: new Uint8Array(n * c * h * w).fill(value),
    labels: Uint8Array.from({ length: n }, (_, i) => i % classes),
    n,
    c,
    h,
    w,
    classes: Array.from({ length: classes }, (_, k) => `class${k}`),
  };
}

/** Indices of images whose bytes differ between a and b. */
export function changedImages(a: Dataset, b: Dataset): number[] {
  const size = a.c * a.h * a.w;
  const out: number[] = [];
  for (let i = 0; i < a.n; i++) {
    for (let k = i * size; k < (i + 1) * size; k++) {
      if (a.images[k] !== b.images[k]) {
        out.push(i);
        break;
      }
    }
  }
  return out;
}

export function changedLabels(a: Dataset, b: Dataset): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.n; i++) if (a.labels[i] !== b.labels[i]) out.push(i);
  return out;
}

export const image = (ds: Dataset, i: number): Uint8Array =>
  ds.images.subarray(i * ds.c * ds.h * ds.w, (i + 1) * ds.c * ds.h * ds.w);

export const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((v, k) => v === b[k]);
