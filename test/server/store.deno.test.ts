// The storage suite on node:sqlite (the driver the Deno coordinator uses).
import { storeSuite } from "./store-suite.ts";

storeSuite("sqlite");
