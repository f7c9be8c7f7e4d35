// The storage suite on better-sqlite3 and on a real PostgreSQL server (PG_TEST_URL).
import { storeSuite } from "./store-suite.ts";

storeSuite("sqlite");
storeSuite("pg");
