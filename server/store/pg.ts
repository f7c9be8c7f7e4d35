// PostgreSQL driver (pg): for several coordinator instances behind one address. Transactions run at
// READ COMMITTED; the store takes row locks (SELECT ... FOR UPDATE [SKIP LOCKED]) where it needs them.
import pg from "pg";
import type { SqlDriver, SqlParam, SqlQueryer } from "./driver.ts";

// int8 (BIGINT, COUNT(*)) as JS numbers: our values (ms timestamps, counters) stay far below 2^53.
pg.types.setTypeParser(20, (v: string) => Number(v));

function numbered(sql: string): string {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
}

const RETRYABLE = new Set(["40001", "40P01"]); // serialization failure, deadlock detected

class PgQueryer implements SqlQueryer {
  constructor(private readonly c: pg.Pool | pg.PoolClient) {}
  async all<T>(sql: string, params: SqlParam[] = []): Promise<T[]> {
    return (await this.c.query(numbered(sql), params)).rows as T[];
  }
  async run(sql: string, params: SqlParam[] = []): Promise<number> {
    return (await this.c.query(numbered(sql), params)).rowCount ?? 0;
  }
}

export class PgDriver extends PgQueryer implements SqlDriver {
  readonly dialect = "pg" as const;
  constructor(private readonly pool: pg.Pool) {
    super(pool);
  }

  async tx<T>(fn: (q: SqlQueryer) => Promise<T>): Promise<T> {
    for (let attempt = 0;; attempt++) {
      const client = await this.pool.connect();
      try {
        await client.query("BEGIN");
        const out = await fn(new PgQueryer(client));
        await client.query("COMMIT");
        return out;
      } catch (e) {
        await client.query("ROLLBACK").catch(() => undefined);
        const code = (e as { code?: string }).code;
        if (code && RETRYABLE.has(code) && attempt < 8) continue;
        throw e;
      } finally {
        client.release();
      }
    }
  }

  async migrate(statements: string[]): Promise<void> {
    // An advisory lock keeps instances that start together from racing on CREATE ... IF NOT EXISTS.
    await this.tx(async (q) => {
      await q.all("SELECT pg_advisory_xact_lock(7007007)");
      for (const s of statements) await q.run(s);
    });
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** `schema`: use (and create) this schema instead of public, e.g. one per test. */
export async function openPg(url: string, opts: { max?: number; schema?: string } = {}): Promise<PgDriver> {
  if (opts.schema !== undefined && !/^[a-z_][a-z0-9_]*$/.test(opts.schema)) {
    throw new Error(`bad schema name ${opts.schema}`);
  }
  if (opts.schema) {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${opts.schema}`);
    } finally {
      await c.end();
    }
  }
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 20,
    ...(opts.schema ? { options: `-c search_path=${opts.schema}` } : {}),
  });
  pool.on("error", () => undefined); // an idle client's connection dropped: the pool replaces it
  return new PgDriver(pool);
}
