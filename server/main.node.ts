// The coordinator on Node: better-sqlite3, and node:http through server/http.ts. Flags in server/serve.ts.
import { parseFlags, startCoordinator } from "./serve.ts";
import { openSqliteNode } from "./store/sqlite-node.ts";

try {
  const running = await startCoordinator(parseFlags(process.argv.slice(2), (k) => process.env[k]), openSqliteNode);
  const stop = () => void running.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
} catch (e) {
  console.error(`serve: ${(e as Error).message}`);
  process.exit(2);
}
