// The hardening suite in Node: better-sqlite3 and PostgreSQL.
import { hardeningSuite } from "./hardening-suite.ts";

hardeningSuite(["sqlite", "pg"]);
