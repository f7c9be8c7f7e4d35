// The thin driver shim under the one SQL implementation (store/sql.ts): SQLite through a synchronous
// handle (better-sqlite3 in Node, node:sqlite in Deno) or PostgreSQL through pg. SQL is written with `?`
// placeholders; the pg driver numbers them.
export type SqlParam = string | number | null | Uint8Array;

export interface SqlQueryer {
  /** Rows of a SELECT or of a statement with RETURNING. */
  all<T = Record<string, unknown>>(sql: string, params?: SqlParam[]): Promise<T[]>;
  /** Run a statement; resolves to the number of rows changed. */
  run(sql: string, params?: SqlParam[]): Promise<number>;
}

export interface SqlDriver extends SqlQueryer {
  readonly dialect: "sqlite" | "pg";
  /** One transaction. SQLite: BEGIN IMMEDIATE (one writer at a time, across processes too); PostgreSQL:
   *  READ COMMITTED with explicit row locks, retried on deadlock/serialization failures. */
  tx<T>(fn: (q: SqlQueryer) => Promise<T>): Promise<T>;
  /** Create the schema (idempotent; safe with several instances starting at once). */
  migrate(statements: string[]): Promise<void>;
  close(): Promise<void>;
}
