// SQLite in Deno: node:sqlite (DatabaseSync).
import { DatabaseSync } from "node:sqlite";
import { SqliteDriver, type SyncDatabase } from "./sqlite.ts";

export function openSqliteDeno(path: string): SqliteDriver {
  const db = new DatabaseSync(path);
  return new SqliteDriver(db as unknown as SyncDatabase);
}
