// The lifecycle suite in Node: better-sqlite3 and PostgreSQL through server/http.ts, and the edge
// coordinator in workerd.
import { lifecycleSuite } from "./lifecycle-suite.ts";

lifecycleSuite(["sqlite", "pg", "workerd"]);
