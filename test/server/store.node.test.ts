// The storage suite on better-sqlite3, on a real PostgreSQL server (PG_TEST_URL) and in workerd's Durable
// Object (the edge coordinator's store, called over loopback).
import { storeSuite } from "./store-suite.ts";

storeSuite("sqlite");
storeSuite("pg");
storeSuite("workerd");
