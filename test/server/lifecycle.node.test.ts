// The lifecycle suite in Node: better-sqlite3 and PostgreSQL, node:http through server/http.ts.
import { lifecycleSuite } from "./lifecycle-suite.ts";

lifecycleSuite(["sqlite", "pg"]);
