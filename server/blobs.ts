// Result blobs on disk, addressed by content hash (sha-256 hex); the database stores only hashes.
// Several coordinator instances share one directory. Writes go to a temp file and are renamed into
// place, so a reader never sees a partial blob and a crash leaves at most a stray temp file. The
// coordinator's garbage collection deletes blobs no row references once they are older than a grace
// period, so `put` refreshes the age of a blob it finds already there.
import { createHash, randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** A stored file: a blob (`hash` set) or a temp file a crashed write left behind (`hash` null). */
export interface BlobEntry {
  name: string;
  hash: string | null;
  mtimeMs: number;
}

export interface BlobStore {
  put(bytes: Uint8Array): Promise<string>;
  get(hash: string): Promise<Uint8Array>;
  has(hash: string): Promise<boolean>;
  list(): Promise<BlobEntry[]>;
  /** Remove a listed entry (no error when it is already gone). */
  delete(entry: BlobEntry): Promise<void>;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

const HASH = /^[0-9a-f]{64}$/;

export class DiskBlobStore implements BlobStore {
  constructor(readonly dir: string) {}

  private path(hash: string): string {
    if (!HASH.test(hash)) throw new Error(`blob: malformed hash ${hash}`);
    return join(this.dir, hash.slice(0, 2), hash);
  }

  async put(bytes: Uint8Array): Promise<string> {
    const hash = sha256Hex(bytes);
    const path = this.path(hash);
    if (await this.has(hash)) {
      const now = new Date();
      await utimes(path, now, now).catch(() => undefined);
      return hash;
    }
    await mkdir(join(this.dir, hash.slice(0, 2)), { recursive: true });
    const tmp = `${path}.${randomUUID()}.tmp`;
    await writeFile(tmp, bytes);
    await rename(tmp, path);
    return hash;
  }

  async get(hash: string): Promise<Uint8Array> {
    return new Uint8Array(await readFile(this.path(hash)));
  }

  async has(hash: string): Promise<boolean> {
    try {
      await stat(this.path(hash));
      return true;
    } catch {
      return false;
    }
  }

  async list(): Promise<BlobEntry[]> {
    const out: BlobEntry[] = [];
    for (const dir of await readdir(this.dir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{2}$/.test(dir)) continue;
      for (const name of await readdir(join(this.dir, dir)).catch(() => [] as string[])) {
        const s = await stat(join(this.dir, dir, name)).catch(() => null);
        if (s?.isFile()) out.push({ name: join(dir, name), hash: HASH.test(name) ? name : null, mtimeMs: s.mtimeMs });
      }
    }
    return out;
  }

  async delete(entry: BlobEntry): Promise<void> {
    if (!/^[0-9a-f]{2}[/\\][0-9a-f]{64}(\.[0-9a-f-]+\.tmp)?$/.test(entry.name)) {
      throw new Error(`blob: not a blob file ${entry.name}`);
    }
    await rm(join(this.dir, entry.name), { force: true });
  }
}
