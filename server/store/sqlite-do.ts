// SQLite in a Durable Object (the edge coordinator, server/main.worker.ts): `ctx.storage.sql`. It refuses
// BEGIN and SAVEPOINT; `ctx.storage.transaction(fn)` is the transaction instead, rolled back when fn throws,
// across its awaits too. Blobs bind as ArrayBuffers and come back as ArrayBuffers.
import type { SqlParam } from "./driver.ts";
import { SqliteDriver } from "./sqlite.ts";

type DoValue = string | number | null | ArrayBuffer;

/** The part of a Durable Object's `ctx.storage` the store uses. */
export interface DoStorage {
  sql: { exec(query: string, ...bindings: DoValue[]): { toArray(): Record<string, DoValue>[] } };
  transaction<T>(fn: () => Promise<T>): Promise<T>;
}

const bind = (params: SqlParam[]): DoValue[] => params.map((p) => (p instanceof Uint8Array ? p.slice().buffer : p));

export function openSqliteDo(storage: DoStorage): SqliteDriver {
  const { sql } = storage;
  return new SqliteDriver({
    prepare: (query) => ({
      all: (...p) => sql.exec(query, ...bind(p)).toArray(),
      run: (...p) => {
        sql.exec(query, ...bind(p)).toArray();
        return { changes: Number(sql.exec("SELECT changes() AS n").toArray()[0].n) };
      },
    }),
    exec: (query) => sql.exec(query).toArray(),
    close: () => undefined,
    transaction: (fn) => storage.transaction(fn),
  });
}
