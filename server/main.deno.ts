// The coordinator on Deno (SQLite through node:sqlite): `npm run serve`, no setup. Flags: server/serve.ts.
import { serveMain } from "./serve.ts";
import { openSqliteDeno } from "./store/sqlite-deno.ts";

await serveMain(openSqliteDeno);
