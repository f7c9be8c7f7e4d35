// SQLite driver over a synchronous handle. better-sqlite3 (Node, store/sqlite-node.ts), node:sqlite
// (Deno, store/sqlite-deno.ts) and a Durable Object's database (workerd, store/sqlite-do.ts) share this
// code: all three expose prepare(sql).all/run(...params).
// One connection per process: a promise queue keeps transactions from interleaving at their awaits;
// on a file, BEGIN IMMEDIATE plus busy_timeout serialise writers across processes.
import type { SqlDriver, SqlParam, SqlQueryer } from "./driver.ts";

export interface SyncStatement {
  all(...params: SqlParam[]): unknown[];
  run(...params: SqlParam[]): { changes: number | bigint };
}
export interface SyncDatabase {
  prepare(sql: string): SyncStatement;
  exec(sql: string): unknown;
  close(): unknown;
  /** Run `fn` as one transaction, rolled back if it throws. Default (a file): BEGIN IMMEDIATE ... COMMIT. */
  transaction?<T>(fn: () => Promise<T>): Promise<T>;
}

export class SqliteDriver implements SqlDriver {
  readonly dialect = "sqlite" as const;
  private readonly stmts = new Map<string, SyncStatement>();
  private queue: Promise<unknown> = Promise.resolve();
  private readonly direct: SqlQueryer;

  constructor(private readonly db: SyncDatabase) {
    // A file; a Durable Object keeps its own journal and enforces foreign keys already.
    if (!db.transaction) {
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = NORMAL");
      db.exec("PRAGMA busy_timeout = 10000");
      db.exec("PRAGMA foreign_keys = ON");
    }
    this.direct = {
      all: async <T>(sql: string, params: SqlParam[] = []) => this.stmt(sql).all(...params) as T[],
      run: async (sql: string, params: SqlParam[] = []) => Number(this.stmt(sql).run(...params).changes),
    };
  }

  private stmt(sql: string): SyncStatement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  all<T = Record<string, unknown>>(sql: string, params?: SqlParam[]): Promise<T[]> {
    return this.serial(() => this.direct.all<T>(sql, params));
  }

  run(sql: string, params?: SqlParam[]): Promise<number> {
    return this.serial(() => this.direct.run(sql, params));
  }

  tx<T>(fn: (q: SqlQueryer) => Promise<T>): Promise<T> {
    if (this.db.transaction) return this.serial(() => this.db.transaction!(() => fn(this.direct)));
    return this.serial(async () => {
      this.db.exec("BEGIN IMMEDIATE");
      try {
        const out = await fn(this.direct);
        this.db.exec("COMMIT");
        return out;
      } catch (e) {
        this.db.exec("ROLLBACK");
        throw e;
      }
    });
  }

  async migrate(statements: string[]): Promise<void> {
    await this.tx(async (q) => {
      for (const s of statements) await q.run(s);
    });
  }

  async close(): Promise<void> {
    await this.serial(async () => {
      this.stmts.clear();
      this.db.close();
    });
  }
}
