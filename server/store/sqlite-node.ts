// SQLite in Node: better-sqlite3.
import Database from "better-sqlite3";
import { SqliteDriver, type SyncDatabase } from "./sqlite.ts";

export function openSqliteNode(path: string): SqliteDriver {
  const db = new Database(path);
  // better-sqlite3's all() refuses statements that return no rows: route those through run() and
  // return an empty row list, so the shim behaves like node:sqlite.
  const handle: SyncDatabase = {
    prepare(sql) {
      const s = db.prepare(sql);
      return {
        all: (...p) => (s.reader ? s.all(...p) : (s.run(...p), [])),
        run: (...p) => s.run(...p),
      };
    },
    exec: (sql) => db.exec(sql),
    close: () => db.close(),
  };
  return new SqliteDriver(handle);
}
