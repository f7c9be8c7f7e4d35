import { describe, expect, it } from "vitest";
import { mkdir, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "fflate";
import { clearCifarCache, loadCifar10, readTar } from "../../src/data/cifar.ts";
import { classCounts } from "../../src/data/dataset.ts";
import { GUNZIPPED_CACHE, readGunzipped } from "../../src/data/io.ts";
import { testSeed } from "../support/rng.ts";
import { CIFAR_CLASSES, cifarFiles, makeTar, prefixed, tempDir } from "./fixtures.ts";

const PER = 7; // records per fake batch file
const opts = { recordsPerFile: PER };

async function writeTarGz(dir: string, name: string, files: Record<string, Uint8Array>): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, gzipSync(makeTar(prefixed(files, "cifar-10-batches-bin/"))));
  return p;
}

async function writeDir(dir: string, files: Record<string, Uint8Array>): Promise<string> {
  const d = join(dir, "cifar-10-batches-bin");
  await mkdir(d, { recursive: true });
  for (const [k, v] of Object.entries(files)) await writeFile(join(d, k), v);
  return d;
}

/** Expected labels and CHW pixels of a split, straight from the fake record bytes. */
function expected(files: Record<string, Uint8Array>, names: string[]) {
  const recs = names.flatMap((f) =>
    Array.from({ length: files[f].length / 3073 }, (_, r) => files[f].subarray(r * 3073, (r + 1) * 3073))
  );
  return { labels: recs.map((r) => r[0]), images: recs.map((r) => Array.from(r.subarray(1))) };
}

function sameAs(ds: Awaited<ReturnType<typeof loadCifar10>>, exp: ReturnType<typeof expected>) {
  expect(ds.n).toBe(exp.labels.length);
  expect([ds.c, ds.h, ds.w]).toEqual([3, 32, 32]);
  expect(Array.from(ds.labels)).toEqual(exp.labels);
  for (let i = 0; i < ds.n; i++) {
    expect(Array.from(ds.images.subarray(i * 3072, (i + 1) * 3072))).toEqual(exp.images[i]);
  }
}

const TRAIN = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`);

describe("loadCifar10 on small fake data", () => {
  it("round-trips a tar.gz, a plain tar and an extracted directory", async () => {
    const seed = testSeed("cifar round trip");
    const files = cifarFiles(seed, PER);
    const dir = await tempDir("cifar");
    const tgz = await writeTarGz(dir, "cifar-10-binary.tar.gz", files);
    const train = await loadCifar10(tgz, { split: "train", ...opts });
    expect(train.name).toBe("cifar10-train");
    expect(train.classes).toEqual(CIFAR_CLASSES);
    sameAs(train, expected(files, TRAIN));
    sameAs(await loadCifar10(tgz, { split: "test", ...opts }), expected(files, ["test_batch.bin"]));

    const limited = await loadCifar10(tgz, { split: "train", limit: 10, ...opts });
    const exp = expected(files, TRAIN);
    sameAs(limited, { labels: exp.labels.slice(0, 10), images: exp.images.slice(0, 10) });

    const tar = join(dir, "plain.tar");
    await writeFile(tar, makeTar(prefixed(files, "./cifar-10-batches-bin/")));
    sameAs(await loadCifar10(tar, { split: "train", ...opts }), exp);

    const extracted = await writeDir(dir, files);
    sameAs(await loadCifar10(extracted, { split: "train", ...opts }), exp);
    // parent folder works too
    sameAs(await loadCifar10(dir, { split: "test", ...opts }), expected(files, ["test_batch.bin"]));
  });

  it("insists on 10000 records per file by default", async () => {
    const dir = await tempDir("cifar");
    const tgz = await writeTarGz(dir, "small.tar.gz", cifarFiles(1, PER));
    await expect(loadCifar10(tgz, { split: "test" })).rejects.toThrow(
      "small.tar.gz/cifar-10-batches-bin/test_batch.bin: 7 records, expected 10000",
    );
  });

  it("rejects a truncated batch file", async () => {
    const seed = testSeed("cifar truncated");
    const files = cifarFiles(seed, PER);
    const dir = await tempDir("cifar");
    files["data_batch_3.bin"] = files["data_batch_3.bin"].subarray(0, PER * 3073 - 10);
    const tgz = await writeTarGz(dir, "trunc.tar.gz", files);
    await expect(loadCifar10(tgz, { split: "train", ...opts })).rejects.toThrow(
      `data_batch_3.bin: ${PER * 3073 - 10} bytes is not a multiple of the 3073-byte record`,
    );
    // The test split does not read the bad file, so it still loads.
    expect((await loadCifar10(tgz, { split: "test", ...opts })).n).toBe(PER);
    // A whole record missing is caught by the record count.
    files["data_batch_3.bin"] = files["data_batch_4.bin"].subarray(0, (PER - 1) * 3073);
    const d = await writeDir(dir, files);
    await expect(loadCifar10(d, { split: "train", ...opts })).rejects.toThrow(
      `data_batch_3.bin: ${PER - 1} records, expected ${PER}`,
    );
  });

  it("rejects an out-of-range label", async () => {
    const seed = testSeed("cifar bad label");
    const files = cifarFiles(seed, PER);
    files["data_batch_2.bin"][5 * 3073] = 12;
    const dir = await tempDir("cifar");
    await expect(loadCifar10(await writeDir(dir, files), { split: "train", ...opts })).rejects.toThrow(
      /data_batch_2\.bin: label 12 at record 5 is out of range 0\.\.9/,
    );
  });

  it("names a missing file", async () => {
    const files = cifarFiles(2, PER);
    delete files["test_batch.bin"];
    const dir = await tempDir("cifar");
    const tgz = await writeTarGz(dir, "cifar-10-binary.tar.gz", files);
    await expect(loadCifar10(tgz, { split: "test", ...opts })).rejects.toThrow(
      "cifar-10-binary.tar.gz: missing cifar-10-batches-bin/test_batch.bin",
    );
    const withoutMeta = cifarFiles(2, PER);
    delete withoutMeta["batches.meta.txt"];
    delete withoutMeta["data_batch_4.bin"];
    await expect(loadCifar10(await writeDir(join(dir, "x"), withoutMeta), { split: "train", ...opts })).rejects.toThrow(
      /missing batches\.meta\.txt/,
    );
    const noBatch4 = cifarFiles(2, PER);
    delete noBatch4["data_batch_4.bin"];
    await expect(loadCifar10(await writeDir(join(dir, "y"), noBatch4), { split: "train", ...opts })).rejects.toThrow(
      /cifar-10-batches-bin: missing data_batch_4\.bin/,
    );
    await expect(loadCifar10(join(dir, "nope.tar.gz"), { split: "train" })).rejects.toThrow(
      /nope\.tar\.gz: no such file or directory/,
    );
  });

  it("rejects corrupt gzip and tar data", async () => {
    const seed = testSeed("cifar corrupt");
    const files = cifarFiles(seed, PER);
    const dir = await tempDir("cifar");
    const gz = gzipSync(makeTar(prefixed(files, "cifar-10-batches-bin/")));
    await writeFile(join(dir, "cut.tar.gz"), gz.subarray(0, gz.length >> 1));
    await expect(loadCifar10(join(dir, "cut.tar.gz"), { split: "train", ...opts })).rejects.toThrow(
      /cut\.tar\.gz: corrupt or truncated gzip/,
    );
    const flipped = gz.slice();
    // Inside the deflate stream among the random image bytes. (Near its end, where the tar's zero padding
    // is coded as matches, a flipped distance bit can copy the same zeros from elsewhere and decode to
    // identical bytes: TEST_SEED=872005684 did.)
    flipped[flipped.length >> 1] ^= 0x40;
    await writeFile(join(dir, "flip.tar.gz"), flipped);
    await expect(loadCifar10(join(dir, "flip.tar.gz"), { split: "train", ...opts })).rejects.toThrow(
      /flip\.tar\.gz: corrupt (or truncated )?gzip/,
    );
    const badCrc = gz.slice();
    badCrc[badCrc.length - 8] ^= 1;
    await writeFile(join(dir, "crc.tar.gz"), badCrc);
    await expect(loadCifar10(join(dir, "crc.tar.gz"), { split: "train", ...opts })).rejects.toThrow(
      "crc.tar.gz: corrupt gzip (CRC-32 mismatch)",
    );

    const tar = makeTar(prefixed(files, "cifar-10-batches-bin/"));
    const second = 512 + Math.ceil(files["batches.meta.txt"].length / 512) * 512;
    const hdr = tar.slice();
    hdr[second + 3] ^= 1;
    await writeFile(join(dir, "hdr.tar.gz"), gzipSync(hdr));
    await expect(loadCifar10(join(dir, "hdr.tar.gz"), { split: "train", ...opts })).rejects.toThrow(
      `hdr.tar.gz: corrupt tar at offset ${second} (header checksum mismatch)`,
    );
    expect(() => readTar(tar.subarray(0, tar.length - 2048), "short.tar")).toThrow(/short\.tar: truncated tar/);
  });
});

describe("readGunzipped", () => {
  it("keeps an archive's gunzipped bytes between reads, until the file's time or size changes", async () => {
    const seed = testSeed("gunzipped cache");
    const files = cifarFiles(seed, PER);
    const dir = await tempDir("gunzip-cache");
    const name = `cache-test-${seed}.tar.gz`;
    const tgz = await writeTarGz(dir, name, files);
    const want = makeTar(prefixed(files, "cifar-10-batches-bin/"));
    const time = 1_700_000_000; // whole seconds: Node's utimes rounds a Date's milliseconds
    try {
      await utimes(tgz, time, time);
      expect(await readGunzipped(tgz, { cacheFrom: 0 })).toEqual(want);
      // Corrupt the archive in place, keeping its size and time: the bytes now come from the cache.
      const bytes = await readFile(tgz);
      bytes.fill(0, 2);
      await writeFile(tgz, bytes);
      await utimes(tgz, time, time);
      expect(await readGunzipped(tgz, { cacheFrom: 0 })).toEqual(want);
      // A newer time: the file is read again, and its corruption found.
      await utimes(tgz, time, time + 5);
      await expect(readGunzipped(tgz, { cacheFrom: 0 })).rejects.toThrow(`${name}: corrupt`);
    } finally {
      for (const e of await readdir(GUNZIPPED_CACHE).catch(() => [])) {
        if (e.startsWith(name)) await rm(join(GUNZIPPED_CACHE, e));
      }
    }
  });
});

describe("loadCifar10 on the shared copy", () => {
  it("loads the full train and test splits", async () => {
    const path = fileURLToPath(new URL("../../../shared/datasets/cifar-10-binary.tar.gz", import.meta.url));
    const t0 = performance.now();
    const train = await loadCifar10(path, { split: "train" });
    const t1 = performance.now();
    const test = await loadCifar10(path, { split: "test" });
    console.log(
      `[cifar] train ${((t1 - t0) / 1000).toFixed(2)} s, test (cached archive) ${
        ((performance.now() - t1) / 1000).toFixed(2)
      } s`,
    );
    expect(train.n).toBe(50000);
    expect(train.images.length).toBe(50000 * 3072);
    expect(classCounts(train)).toEqual(new Array(10).fill(5000));
    expect(test.n).toBe(10000);
    expect(classCounts(test)).toEqual(new Array(10).fill(1000));
    expect(train.classes).toEqual(CIFAR_CLASSES);
    // Real photos: mean pixel well inside 0..255 and not constant.
    let sum = 0;
    for (let i = 0; i < 3072 * 100; i++) sum += train.images[i];
    expect(sum / (3072 * 100)).toBeGreaterThan(60);
    expect(sum / (3072 * 100)).toBeLessThan(200);
    clearCifarCache();
  });
});
