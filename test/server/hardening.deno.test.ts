// The hardening suite in Deno: node:sqlite, the coordinator's own runtime.
import { hardeningSuite } from "./hardening-suite.ts";

hardeningSuite(["sqlite"]);
