// CIFAR-10 in the official binary layout, from the release tarball or its extracted directory, and a
// checksum-verified downloader. Record: 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32),
// which is already the CHW layout Dataset uses.
import { checkDataset, type Dataset } from "./dataset.ts";
import {
  baseName,
  gunzipChecked,
  isGzip,
  joinPath,
  makeDir,
  pathKind,
  readBytes,
  readGunzipped,
  sha256Hex,
  writeBytesAtomic,
} from "./io.ts";

/** The copy of CIFAR-10 beside the project (../shared/datasets/): the default data of every command. */
export const DEFAULT_DATA = new URL("../../../shared/datasets/cifar-10-binary.tar.gz", import.meta.url).pathname;

export const CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/** MD5 of the official release tarball, as published on the CIFAR-10 page. */
export const CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530";
const DIR = "cifar-10-batches-bin";
const PIXELS = 3 * 32 * 32;
const RECORD = 1 + PIXELS;
const TRAIN_FILES = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`);

export interface CifarOptions {
  split: "train" | "test";
  /** Keep only the first `limit` images of the split (files after the limit are not read). */
  limit?: number;
  /** Records each batch file must hold (official: 10000); null accepts any count, for small custom sets. */
  recordsPerFile?: number | null;
}

// ---------------------------------------------------------------------------------------------
// tar

function tarString(b: Uint8Array, start: number, len: number): string {
  let end = start;
  while (end < start + len && b[end] !== 0) end++;
  return new TextDecoder().decode(b.subarray(start, end));
}

function tarNumber(h: Uint8Array, start: number, len: number, what: string): number {
  if (h[start] & 0x80) {
    // GNU base-256 encoding, used for sizes past the 8 GiB octal limit.
    let v = h[start] & 0x7f;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + h[i];
    return v;
  }
  const s = tarString(h, start, len).trim();
  if (!/^[0-7]*$/.test(s)) throw new Error(`bad octal ${what} field ${JSON.stringify(s)}`);
  return s === "" ? 0 : parseInt(s, 8);
}

/**
 * Regular files of a tar archive by path (leading "./" dropped), as views into `tar`. Handles
 * ustar prefixes, GNU long names and pax `path` records; checks header checksums and that the
 * archive is complete (data present, end-of-archive block reached).
 */
export function readTar(tar: Uint8Array, label: string): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  let off = 0;
  let nextName: string | null = null;
  for (;;) {
    if (off + 512 > tar.length) {
      throw new Error(`${label}: truncated tar (no end-of-archive block after ${files.size} files)`);
    }
    const h = tar.subarray(off, off + 512);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
    if (sum === 8 * 0x20) break; // all-zero block: end of archive
    let size: number;
    try {
      const stored = tarNumber(h, 148, 8, "checksum");
      if (stored !== sum) throw new Error(`header checksum mismatch`);
      size = tarNumber(h, 124, 12, "size");
    } catch (e) {
      throw new Error(`${label}: corrupt tar at offset ${off} (${(e as Error).message})`);
    }
    let name = tarString(h, 0, 100);
    if (tarString(h, 257, 5) === "ustar") {
      const prefix = tarString(h, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    const start = off + 512;
    if (start + size > tar.length) {
      throw new Error(`${label}: truncated tar: ${name} needs ${size} bytes, only ${tar.length - start} remain`);
    }
    const data = tar.subarray(start, start + size);
    const type = String.fromCharCode(h[156] || 0x30);
    if (type === "L") nextName = tarString(data, 0, data.length);
    else if (type === "x") {
      nextName = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(new TextDecoder().decode(data))?.[1] ?? nextName;
    } else {
      if (type === "0" || type === "7") files.set((nextName ?? name).replace(/^(\.\/)+/, ""), data);
      nextName = null;
    }
    off = start + Math.ceil(size / 512) * 512;
  }
  return files;
}

// Decompressed tar entries per archive path, kept for the process: the 170 MB tarball is gunzipped
// once even when train and test are both loaded.
const archiveCache = new Map<string, Promise<Map<string, Uint8Array>>>();

function openArchive(path: string): Promise<Map<string, Uint8Array>> {
  let entries = archiveCache.get(path);
  if (!entries) {
    const label = baseName(path);
    entries = readGunzipped(path).then((tar) => readTar(tar, label));
    entries.catch(() => archiveCache.delete(path)); // do not cache failures
    archiveCache.set(path, entries);
  }
  return entries;
}

/** Drops the cached decompressed archives (frees their memory). */
export function clearCifarCache(): void {
  archiveCache.clear();
}

// ---------------------------------------------------------------------------------------------
// loader

interface Source {
  get(file: string): Promise<{ name: string; bytes: Uint8Array }>;
}

async function openSource(path: string, top = DIR): Promise<Source> {
  const kind = await pathKind(path);
  if (kind === null) throw new Error(`${path}: no such file or directory`);
  if (kind === "file") return archiveSource(await openArchive(path), baseName(path), top);
  // An extracted directory: either cifar-10-batches-bin itself or the folder that holds it.
  const dir = (await pathKind(joinPath(path, top))) === "dir" ? joinPath(path, top) : path;
  return {
    async get(file) {
      const p = joinPath(dir, file);
      if ((await pathKind(p)) !== "file") throw new Error(`${dir}: missing ${file}`);
      return { name: p, bytes: await readBytes(p) };
    },
  };
}

function archiveSource(entries: Map<string, Uint8Array>, label: string, top = DIR): Source {
  return {
    async get(file) {
      const want = `${top}/${file}`;
      let bytes = entries.get(want);
      if (!bytes) { for (const [k, v] of entries) if (k.endsWith(`/${want}`)) bytes = v; }
      if (!bytes) throw new Error(`${label}: missing ${want}`);
      return { name: `${label}/${want}`, bytes };
    },
  };
}

function parseClassNames(text: string, name: string): string[] {
  const classes = text.split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length > 0);
  if (classes.length !== 10) throw new Error(`${name}: expected 10 class names, found ${classes.length}`);
  return classes;
}

function checkBatch(bytes: Uint8Array, name: string, recordsPerFile: number | null): number {
  if (bytes.length === 0) throw new Error(`${name}: file is empty`);
  if (bytes.length % RECORD !== 0) {
    throw new Error(`${name}: ${bytes.length} bytes is not a multiple of the ${RECORD}-byte record`);
  }
  const n = bytes.length / RECORD;
  if (recordsPerFile !== null && n !== recordsPerFile) {
    throw new Error(`${name}: ${n} records, expected ${recordsPerFile} (truncated file?)`);
  }
  for (let r = 0; r < n; r++) {
    const label = bytes[r * RECORD];
    if (label > 9) throw new Error(`${name}: label ${label} at record ${r} is out of range 0..9`);
  }
  return n;
}

/**
 * Loads one split of CIFAR-10 from `cifar-10-binary.tar.gz` (or an uncompressed .tar) or from an
 * extracted `cifar-10-batches-bin/` directory (or its parent). Every file read is validated; any
 * truncation, corruption or missing file throws an error naming the file.
 */
export async function loadCifar10(path: string, opts: CifarOptions): Promise<Dataset> {
  checkOptions(opts);
  return loadFrom(await openSource(path), opts);
}

/** The same from the release tarball's bytes (a browser worker fetches them; no file system). */
export async function loadCifar10Archive(archive: Uint8Array, label: string, opts: CifarOptions): Promise<Dataset> {
  checkOptions(opts);
  return loadFrom(
    archiveSource(readTar(isGzip(archive) ? gunzipChecked(archive, label) : archive, label), label),
    opts,
  );
}

function checkOptions({ split, limit = Infinity }: CifarOptions): void {
  if (split !== "train" && split !== "test") {
    throw new Error(`loadCifar10: split must be "train" or "test", got ${String(split)}`);
  }
  if (!(limit >= 0)) throw new Error(`loadCifar10: limit ${limit} must be >= 0`);
}

async function loadFrom(src: Source, opts: CifarOptions): Promise<Dataset> {
  const { split, limit = Infinity, recordsPerFile = 10000 } = opts;
  const meta = await src.get("batches.meta.txt");
  const classes = parseClassNames(new TextDecoder().decode(meta.bytes), meta.name);

  const batches: Uint8Array[] = [];
  let total = 0;
  for (const file of split === "train" ? TRAIN_FILES : ["test_batch.bin"]) {
    if (total >= limit) break;
    const { name, bytes } = await src.get(file);
    total += checkBatch(bytes, name, recordsPerFile);
    batches.push(bytes);
  }
  const n = Math.min(total, limit);
  const images = new Uint8Array(n * PIXELS);
  const labels = new Uint8Array(n);
  let i = 0;
  for (const bytes of batches) {
    for (let r = 0; r * RECORD < bytes.length && i < n; r++, i++) {
      labels[i] = bytes[r * RECORD];
      images.set(bytes.subarray(r * RECORD + 1, (r + 1) * RECORD), i * PIXELS);
    }
  }
  return checkDataset({ name: `cifar10-${split}`, images, labels, n, c: 3, h: 32, w: 32, classes });
}

// ---------------------------------------------------------------------------------------------
// CIFAR-100: cifar-100-binary/{train,test}.bin, records of a coarse label, a fine label and 3072 pixel
// bytes; the 100 fine classes (fine_label_names.txt) are the labels.

const DIR100 = "cifar-100-binary";
const RECORD100 = 2 + PIXELS;

/** One split of CIFAR-100 from its release tarball or extracted directory (fine labels). */
export async function loadCifar100(path: string, split: "train" | "test"): Promise<Dataset> {
  const src = await openSource(path, DIR100);
  const meta = await src.get("fine_label_names.txt");
  const classes = new TextDecoder().decode(meta.bytes).split(/\r?\n/).map((c) => c.trim()).filter(Boolean);
  if (classes.length !== 100) throw new Error(`${meta.name}: expected 100 class names, found ${classes.length}`);
  const { name, bytes } = await src.get(`${split}.bin`);
  if (bytes.length === 0 || bytes.length % RECORD100 !== 0) {
    throw new Error(`${name}: ${bytes.length} bytes is not a whole number of ${RECORD100}-byte records (truncated?)`);
  }
  const n = bytes.length / RECORD100;
  const images = new Uint8Array(n * PIXELS);
  const labels = new Uint8Array(n);
  for (let r = 0; r < n; r++) {
    labels[r] = bytes[r * RECORD100 + 1];
    if (labels[r] > 99) throw new Error(`${name}: fine label ${labels[r]} at record ${r} is out of range 0..99`);
    images.set(bytes.subarray(r * RECORD100 + 2, (r + 1) * RECORD100), r * PIXELS);
  }
  return checkDataset({ name: `cifar100-${split}`, images, labels, n, c: 3, h: 32, w: 32, classes });
}

// ---------------------------------------------------------------------------------------------
// MD5 (RFC 1321), incremental so the download is hashed as it arrives. Needed because the
// official checksum is MD5, which WebCrypto does not offer.

const MD5_S = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
const MD5_K = Int32Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32));

export class Md5 {
  private h = Int32Array.of(0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476);
  private buf = new Uint8Array(64);
  private bufLen = 0;
  private total = 0;
  private x = new Int32Array(16);

  update(data: Uint8Array): this {
    let i = 0;
    this.total += data.length;
    if (this.bufLen > 0) {
      i = Math.min(64 - this.bufLen, data.length);
      this.buf.set(data.subarray(0, i), this.bufLen);
      this.bufLen += i;
      if (this.bufLen < 64) return this;
      this.block(this.buf, 0);
      this.bufLen = 0;
    }
    for (; i + 64 <= data.length; i += 64) this.block(data, i);
    this.buf.set(data.subarray(i), 0);
    this.bufLen = data.length - i;
    return this;
  }

  /** Lowercase hex digest; the hasher must not be used afterwards. */
  hex(): string {
    const bits = this.total * 8;
    const pad = new Uint8Array(((this.bufLen < 56 ? 56 : 120) - this.bufLen) + 8);
    pad[0] = 0x80;
    const view = new DataView(pad.buffer);
    view.setUint32(pad.length - 8, bits >>> 0, true);
    view.setUint32(pad.length - 4, Math.floor(bits / 2 ** 32), true);
    this.update(pad);
    let s = "";
    for (let i = 0; i < 4; i++) {
      for (let b = 0; b < 4; b++) s += ((this.h[i] >>> (8 * b)) & 255).toString(16).padStart(2, "0");
    }
    return s;
  }

  private block(d: Uint8Array, o: number): void {
    const x = this.x;
    for (let j = 0; j < 16; j++, o += 4) x[j] = d[o] | (d[o + 1] << 8) | (d[o + 2] << 16) | (d[o + 3] << 24);
    let [a, b, c, dd] = this.h;
    for (let j = 0; j < 64; j++) {
      let f: number, g: number;
      if (j < 16) (f = (b & c) | (~b & dd)), (g = j);
      else if (j < 32) (f = (dd & b) | (~dd & c)), (g = (5 * j + 1) & 15);
      else if (j < 48) (f = b ^ c ^ dd), (g = (3 * j + 5) & 15);
      else (f = c ^ (b | ~dd)), (g = (7 * j) & 15);
      const s = MD5_S[((j >> 4) << 2) | (j & 3)];
      const t = (a + f + MD5_K[j] + x[g]) | 0;
      a = dd;
      dd = c;
      c = b;
      b = (b + ((t << s) | (t >>> (32 - s)))) | 0;
    }
    this.h[0] += a;
    this.h[1] += b;
    this.h[2] += c;
    this.h[3] += dd;
  }
}

export const md5Hex = (data: Uint8Array): string => new Md5().update(data).hex();

// ---------------------------------------------------------------------------------------------
// download

export interface DownloadOptions {
  url?: string;
  fetchImpl?: (url: string) => Promise<Response>;
  /** Defaults to the official tarball's MD5; pass another for a mirror or a test file. */
  expectedMd5?: string;
  onProgress?: (received: number, total: number | undefined) => void;
  /** Defaults to cifar-10-binary.tar.gz. */
  fileName?: string;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  md5: string;
  sha256: string;
  skipped: boolean;
}

/**
 * Downloads the CIFAR-10 binary tarball into `destDir`, checks its MD5 before writing, and writes it
 * atomically (temporary file + rename). An existing file with the right MD5 is kept (skipped: true).
 */
export async function downloadCifar10(destDir: string, opts: DownloadOptions = {}): Promise<DownloadResult> {
  const url = opts.url ?? CIFAR10_URL;
  const expected = (opts.expectedMd5 ?? CIFAR10_MD5).toLowerCase();
  const path = joinPath(destDir, opts.fileName ?? "cifar-10-binary.tar.gz");
  await makeDir(destDir);
  if ((await pathKind(path)) === "file") {
    const existing = await readBytes(path);
    const md5 = md5Hex(existing);
    if (md5 === expected) {
      return { path, bytes: existing.length, md5, sha256: await sha256Hex(existing), skipped: true };
    }
  }

  const res = await (opts.fetchImpl ?? fetch)(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  const header = res.headers.get("content-length");
  const total = header === null ? undefined : Number(header);
  const hasher = new Md5();
  const chunks: Uint8Array[] = [];
  let received = 0;
  const take = (chunk: Uint8Array) => {
    hasher.update(chunk);
    chunks.push(chunk);
    received += chunk.length;
    opts.onProgress?.(received, total);
  };
  if (res.body) {
    const reader = res.body.getReader();
    for (let r = await reader.read(); !r.done; r = await reader.read()) take(r.value);
  } else take(new Uint8Array(await res.arrayBuffer()));
  if (total !== undefined && received !== total) {
    throw new Error(`${url}: download truncated: received ${received} of ${total} bytes`);
  }

  const md5 = hasher.hex();
  if (md5 !== expected) {
    throw new Error(`${url}: checksum mismatch: MD5 ${md5}, expected ${expected} (nothing written)`);
  }
  const data = new Uint8Array(received);
  let at = 0;
  for (const c of chunks) data.set(c, at), (at += c.length);
  await writeBytesAtomic(path, data);
  return { path, bytes: received, md5, sha256: await sha256Hex(data), skipped: false };
}
