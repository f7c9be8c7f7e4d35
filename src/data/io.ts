// Minimal file access for the data and checkpoint code, through node:fs/promises (Node and Deno both
// provide it). It is imported on first use, so a browser bundle that never touches files loads fine.
import { gunzipSync } from "fflate";
import { fnv1a } from "../math.ts";

const fs = () => import("node:fs/promises");

export interface DirEntry {
  name: string;
  isFile: boolean;
  isDirectory: boolean;
}
export type PathKind = "file" | "dir" | null;

export async function readBytes(path: string): Promise<Uint8Array> {
  try {
    const b = await (await fs()).readFile(path);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    throw new Error(`${path}: cannot read (${(e as Error).message})`);
  }
}

export async function readText(path: string): Promise<string> {
  return new TextDecoder().decode(await readBytes(path));
}

/** Temp files being written now: an interrupted process removes them (removePartialWrites). */
const inFlight = new Set<string>();

/** Writes to a temporary sibling and renames it into place, so readers never see a partial file. */
export function writeBytesAtomic(path: string, data: Uint8Array): Promise<void> {
  return writeFilesAtomic([[path, data]]);
}

/**
 * Several files as one: all are written to temporary siblings first, then renamed into place, so an
 * interruption leaves either the old set or the new one (but for the moment of the renames).
 */
export async function writeFilesAtomic(files: [string, Uint8Array][]): Promise<void> {
  const tmps = files.map(([path]) =>
    `${path}.tmp-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`
  );
  tmps.forEach((t) => inFlight.add(t));
  let at = 0;
  try {
    for (; at < files.length; at++) await (await fs()).writeFile(tmps[at], files[at][1]);
    for (const [i, [path]] of files.entries()) await (await fs()).rename(tmps[i], path);
  } catch (e) {
    await Promise.all(tmps.map((t) => removePath(t).catch(() => {})));
    throw new Error(`${files[Math.min(at, files.length - 1)][0]}: cannot write (${(e as Error).message})`);
  } finally {
    tmps.forEach((t) => inFlight.delete(t));
  }
}

/** Remove the temp files of writes still in progress (a process stopping mid-write: Ctrl-C). */
export async function removePartialWrites(): Promise<void> {
  await Promise.all([...inFlight].map((t) => removePath(t).catch(() => {})));
}

export async function pathKind(path: string): Promise<PathKind> {
  try {
    const s = await (await fs()).stat(path);
    return s.isDirectory() ? "dir" : s.isFile() ? "file" : null;
  } catch {
    return null;
  }
}

export async function listDir(path: string): Promise<DirEntry[]> {
  try {
    const ents = await (await fs()).readdir(path, { withFileTypes: true });
    return ents.map((e) => ({ name: e.name, isFile: e.isFile(), isDirectory: e.isDirectory() }));
  } catch (e) {
    throw new Error(`${path}: cannot list directory (${(e as Error).message})`);
  }
}

export async function makeDir(path: string): Promise<void> {
  await (await fs()).mkdir(path, { recursive: true });
}

export async function removePath(path: string): Promise<void> {
  await (await fs()).rm(path, { recursive: true, force: true });
}

export function joinPath(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

/** The directory part of a path ("." for a bare name). */
export function dirName(path: string): string {
  return path.slice(0, Math.max(0, path.lastIndexOf("/"))) || ".";
}

export function baseName(path: string): string {
  const p = path.replace(/\/+$/, "");
  return p.slice(p.lastIndexOf("/") + 1);
}

/** SHA-256 as hex (WebCrypto: Node, Deno and browsers). */
export async function sha256Hex(data: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

export const isGzip = (b: Uint8Array): boolean => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

export function crc32(data: Uint8Array): number {
  let c = -1;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 255] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * gunzip a single-member gzip file and check its trailer. fflate sizes the output from the trailer's
 * ISIZE and does not check the CRC, so a truncated or bit-flipped file could otherwise decode to
 * plausible-looking garbage; `label` names the file in errors.
 */
export function gunzipChecked(data: Uint8Array, label: string): Uint8Array {
  if (!isGzip(data)) throw new Error(`${label}: not a gzip file (bad magic bytes)`);
  if (data.length < 18) throw new Error(`${label}: corrupt gzip: only ${data.length} bytes`);
  const tail = data.length - 8;
  const crc = (data[tail] | (data[tail + 1] << 8) | (data[tail + 2] << 16) | (data[tail + 3] << 24)) >>> 0;
  const size = (data[tail + 4] | (data[tail + 5] << 8) | (data[tail + 6] << 16) | (data[tail + 7] << 24)) >>> 0;
  // Deflate cannot expand more than ~1032x; a larger ISIZE means the trailer is not a trailer.
  if (size > data.length * 1032 + 1024) {
    throw new Error(`${label}: corrupt or truncated gzip (trailer size ${size} is implausible)`);
  }
  let out: Uint8Array;
  try {
    out = gunzipSync(data);
  } catch (e) {
    throw new Error(`${label}: corrupt or truncated gzip (${(e as Error).message})`);
  }
  if (out.length !== size) {
    throw new Error(`${label}: corrupt or truncated gzip (decoded ${out.length} bytes, trailer says ${size})`);
  }
  if (crc32(out) !== crc) throw new Error(`${label}: corrupt gzip (CRC-32 mismatch)`);
  return out;
}

/** Where gunzipped archives are kept between runs (Node and Deno). */
export const GUNZIPPED_CACHE = new URL("../../.cache/gunzipped/", import.meta.url).pathname;

/**
 * The file's bytes, gunzipped when it is gzip. From `cacheFrom` gunzipped bytes on (default 16 MiB), they are
 * kept under .cache/gunzipped/ and read from there while the file keeps its path, size and modification time:
 * the CIFAR-10 tarball then takes a plain read instead of a 3 s inflate and CRC check.
 */
export async function readGunzipped(path: string, opts: { cacheFrom?: number } = {}): Promise<Uint8Array> {
  const files = await fs();
  const st = await files.stat(path).catch(() => null);
  // One entry per file: its name, a hash of its full path, then size and time, which change with the file.
  const prefix = st && `${baseName(path)}.${fnv1a(await files.realpath(path).catch(() => path))}.`;
  const cached = prefix && joinPath(GUNZIPPED_CACHE, `${prefix}${st.size}.${Math.floor(st.mtimeMs)}`);
  if (cached && (await pathKind(cached)) === "file") return readBytes(cached);
  const raw = await readBytes(path);
  if (!isGzip(raw)) return raw;
  const out = gunzipChecked(raw, baseName(path));
  if (cached && out.length >= (opts.cacheFrom ?? 16 << 20)) {
    try {
      await makeDir(GUNZIPPED_CACHE);
      for (const e of await listDir(GUNZIPPED_CACHE)) {
        if (e.name.startsWith(prefix)) await removePath(joinPath(GUNZIPPED_CACHE, e.name));
      }
      await writeBytesAtomic(cached, out);
    } catch {
      // a read-only checkout: inflate again next time
    }
  }
  return out;
}

// Append-only files (datamodel margins arrive one model at a time and must survive an interrupted run).

/** Size in bytes, or -1 when there is no such file. */
export async function fileSize(path: string): Promise<number> {
  try {
    return (await (await fs()).stat(path)).size;
  } catch {
    return -1;
  }
}

/** Appends `data` at the end of `path` (created if missing). */
export async function appendBytes(path: string, data: Uint8Array): Promise<void> {
  try {
    await (await fs()).appendFile(path, data);
  } catch (e) {
    throw new Error(`${path}: cannot append (${(e as Error).message})`);
  }
}

/** `length` bytes from `offset` (throws when the file is shorter). */
export async function readRange(path: string, offset: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let got = 0;
  try {
    const h = await (await fs()).open(path, "r");
    try {
      while (got < length) {
        const { bytesRead } = await h.read(out, got, length - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } finally {
      await h.close();
    }
  } catch (e) {
    throw new Error(`${path}: cannot read bytes ${offset}..${offset + length} (${(e as Error).message})`);
  }
  if (got < length) throw new Error(`${path}: file ends before byte ${offset + length} (got ${got} of ${length})`);
  return out;
}

/** Cuts `path` to `length` bytes (drops a torn last record). */
export async function truncateFile(path: string, length: number): Promise<void> {
  await (await fs()).truncate(path, length);
}
