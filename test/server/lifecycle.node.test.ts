// The lifecycle suite in Node: better-sqlite3 and PostgreSQL, Node's http through server/node-adapter.ts.
import { lifecycleSuite } from "./lifecycle-suite.ts";

lifecycleSuite(["sqlite", "pg"]);
