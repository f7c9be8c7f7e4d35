// The coordinator on Node (SQLite through better-sqlite3): `npm run serve:node`. Flags: server/serve.ts.
import { serveMain } from "./serve.ts";
import { openSqliteNode } from "./store/sqlite-node.ts";

await serveMain(openSqliteNode);
