// The lifecycle suite in Deno: node:sqlite and Deno.serve, the coordinator's own runtime.
import { lifecycleSuite } from "./lifecycle-suite.ts";

lifecycleSuite(["sqlite"]);
