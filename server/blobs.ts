// Result blobs addressed by content hash (sha-256 hex); the store's tables hold only hashes. On disk
// (DiskBlobStore), which several coordinator instances share, or in the database itself (SqlBlobStore: the
// edge coordinator's Durable Object, which has no disk). Writes go to a temp file and are renamed into
// place, so a reader never sees a partial blob and a crash leaves at most a stray temp file. The
// coordinator's garbage collection deletes blobs no row references once they are older than a grace
// period, so `put` refreshes the age of a blob it finds already there.
import { createHash, randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { SqlDriver } from "./store/driver.ts";

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

/** Chunks as one array. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Rows under a Durable Object's 2 MB value limit. */
const CHUNK_BYTES = 1 << 20;

/**
 * Blobs in the database, in chunks of 1 MiB. A blob is written in one transaction, so a reader never sees
 * part of one and a crash leaves none; `list` therefore has no temp entries.
 */
export class SqlBlobStore implements BlobStore {
  /** `table`: another name keeps a second store apart (the edge's datasets, out of the garbage collection's way). */
  constructor(private readonly db: SqlDriver, private readonly table = "blob_chunks") {
    if (!/^[a-z_]+$/.test(table)) throw new Error(`blob: bad table name ${table}`);
  }

  async init(): Promise<this> {
    await this.db.migrate([
      `CREATE TABLE IF NOT EXISTS ${this.table} (hash TEXT NOT NULL, idx INTEGER NOT NULL, bytes BLOB NOT NULL,
       mtime BIGINT NOT NULL, PRIMARY KEY (hash, idx))`,
    ]);
    return this;
  }

  async put(bytes: Uint8Array): Promise<string> {
    const hash = sha256Hex(bytes);
    await this.db.tx(async (q) => {
      if (await q.run(`UPDATE ${this.table} SET mtime = ? WHERE hash = ?`, [Date.now(), hash])) return;
      for (let i = 0, at = 0; at < bytes.length || i === 0; i++, at += CHUNK_BYTES) {
        await q.run(`INSERT INTO ${this.table} (hash, idx, bytes, mtime) VALUES (?, ?, ?, ?)`, [
          hash,
          i,
          bytes.subarray(at, at + CHUNK_BYTES),
          Date.now(),
        ]);
      }
    });
    return hash;
  }

  async get(hash: string): Promise<Uint8Array> {
    const rows = await this.db.all<{ bytes: ArrayBuffer | Uint8Array }>(
      `SELECT bytes FROM ${this.table} WHERE hash = ? ORDER BY idx`,
      [hash],
    );
    if (!rows.length) throw new Error(`blob: no blob ${hash}`);
    return concatBytes(rows.map((r) => new Uint8Array(r.bytes)));
  }

  async has(hash: string): Promise<boolean> {
    return (await this.db.all(`SELECT 1 FROM ${this.table} WHERE hash = ? AND idx = 0`, [hash])).length > 0;
  }

  async list(): Promise<BlobEntry[]> {
    const rows = await this.db.all<{ hash: string; mtime: number }>(
      `SELECT hash, MAX(mtime) AS mtime FROM ${this.table} GROUP BY hash`,
    );
    return rows.map((r) => ({ name: r.hash, hash: r.hash, mtimeMs: Number(r.mtime) }));
  }

  async delete(entry: BlobEntry): Promise<void> {
    await this.db.run(`DELETE FROM ${this.table} WHERE hash = ?`, [entry.hash ?? entry.name]);
  }
}
