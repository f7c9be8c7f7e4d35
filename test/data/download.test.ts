import { describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "fflate";
import { CIFAR10_MD5, CIFAR10_URL, downloadCifar10, loadCifar10, Md5, md5Hex } from "../../src/data/cifar.ts";
import { mulberry32 } from "../../src/data/dataset.ts";
import { testSeed } from "../support/rng.ts";
import { cifarFiles, makeTar, prefixed, tempDir } from "./fixtures.ts";

const hex = (algo: string, b: Uint8Array) => createHash(algo).update(b).digest("hex");

/** Serves `body` at /cifar-10-binary.tar.gz in 4 flushed pieces (so progress fires more than once); 404 elsewhere. */
async function serve(body: Uint8Array): Promise<{ url: string; server: Server }> {
  const server = createServer(async (req, res) => {
    if (req.url !== "/cifar-10-binary.tar.gz") return void res.writeHead(404).end("not found");
    res.writeHead(200, { "content-length": String(body.length), "content-type": "application/gzip" });
    const step = Math.ceil(body.length / 4);
    for (let i = 0; i < body.length; i += step) {
      res.write(body.subarray(i, i + step));
      await new Promise((r) => setTimeout(r, 5));
    }
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  if (addr === null || typeof addr === "string") throw new Error("no port");
  return { url: `http://127.0.0.1:${addr.port}`, server };
}

describe("md5", () => {
  it("matches RFC 1321 vectors and node:crypto on chunked random data", () => {
    const vec: [string, string][] = [
      ["", "d41d8cd98f00b204e9800998ecf8427e"],
      ["a", "0cc175b9c0f1b6a831c399e269772661"],
      ["abc", "900150983cd24fb0d6963f7d28e17f72"],
      ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
      ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"],
      [
        "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
        "57edf4a22be3c955ac49da2e2107b67a",
      ],
    ];
    for (const [s, h] of vec) expect(md5Hex(new TextEncoder().encode(s))).toBe(h);
    const seed = testSeed("md5 random");
    const rand = mulberry32(seed);
    for (const len of [55, 56, 63, 64, 65, 119, 120, 1000, 4099]) {
      const data = Uint8Array.from({ length: len }, () => Math.floor(rand() * 256));
      const h = new Md5();
      for (let i = 0; i < len;) {
        const k = 1 + Math.floor(rand() * 100);
        h.update(data.subarray(i, i + k));
        i += k;
      }
      expect(h.hex()).toBe(hex("md5", data));
    }
  });
});

describe("downloadCifar10", () => {
  it("downloads from a local server, verifies MD5, writes atomically, then skips a good copy", async () => {
    const seed = testSeed("download");
    const tarball = gzipSync(makeTar(prefixed(cifarFiles(seed, 3), "cifar-10-batches-bin/")));
    const { url, server } = await serve(tarball);
    try {
      const dir = join(await tempDir("dl"), "nested", "dest");
      const progress: [number, number | undefined][] = [];
      const res = await downloadCifar10(dir, {
        url: `${url}/cifar-10-binary.tar.gz`,
        expectedMd5: hex("md5", tarball),
        onProgress: (r, t) => progress.push([r, t]),
      });
      expect(res.skipped).toBe(false);
      expect(res.path).toBe(join(dir, "cifar-10-binary.tar.gz"));
      expect(res.bytes).toBe(tarball.length);
      expect(res.md5).toBe(hex("md5", tarball));
      expect(res.sha256).toBe(hex("sha256", tarball));
      expect(new Uint8Array(await readFile(res.path))).toEqual(tarball);
      expect(await readdir(dir)).toEqual(["cifar-10-binary.tar.gz"]); // no temp file left behind
      expect(progress.length).toBeGreaterThan(1);
      expect(progress[progress.length - 1]).toEqual([tarball.length, tarball.length]);
      for (let i = 1; i < progress.length; i++) expect(progress[i][0]).toBeGreaterThan(progress[i - 1][0]);
      expect((await loadCifar10(res.path, { split: "test", recordsPerFile: 3 })).n).toBe(3);

      const again = await downloadCifar10(dir, { url: `${url}/cifar-10-binary.tar.gz`, expectedMd5: res.md5 });
      expect(again.skipped).toBe(true);
    } finally {
      server.close();
    }
  });

  it("fails clearly on a checksum mismatch or HTTP error and writes nothing", async () => {
    const tarball = gzipSync(makeTar(prefixed(cifarFiles(5, 2), "cifar-10-batches-bin/")));
    const { url, server } = await serve(tarball);
    try {
      const dir = await tempDir("dl");
      const wrong = "0123456789abcdef0123456789abcdef";
      await expect(downloadCifar10(dir, { url: `${url}/cifar-10-binary.tar.gz`, expectedMd5: wrong })).rejects.toThrow(
        `checksum mismatch: MD5 ${hex("md5", tarball)}, expected ${wrong} (nothing written)`,
      );
      await expect(downloadCifar10(dir, { url: `${url}/elsewhere.tar.gz`, expectedMd5: wrong })).rejects.toThrow(
        /elsewhere\.tar\.gz: HTTP 404/,
      );
      expect(await readdir(dir)).toEqual([]);
    } finally {
      server.close();
    }
  });

  it("defaults to the official URL and checksum", async () => {
    const dir = await tempDir("dl");
    const asked: string[] = [];
    const fetchImpl = async (u: string) => (asked.push(u), new Response(new Uint8Array([1, 2, 3])));
    await expect(downloadCifar10(dir, { fetchImpl })).rejects.toThrow(`expected ${CIFAR10_MD5}`);
    expect(asked).toEqual([CIFAR10_URL]);
    expect(CIFAR10_URL).toBe("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz");
  });
});
