// The coordinator on Node: better-sqlite3 and Node's http. `npm run serve:node -- --help` for flags (server/serve.ts).
import { serveNode } from "./node-adapter.ts";
import { parseFlags, startCoordinator } from "./serve.ts";
import { openSqliteNode } from "./store/sqlite-node.ts";

try {
  const flags = parseFlags(process.argv.slice(2), (k) => process.env[k]);
  const running = await startCoordinator(flags, {
    openSqlite: openSqliteNode,
    async serve(fetch, port, host) {
      const server = await serveNode(fetch, port, host);
      const addr = server.address();
      return { port: typeof addr === "object" && addr ? addr.port : port, close: () => new Promise((r) => server.close(() => r())) };
    },
  });
  const stop = () => void running.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
} catch (e) {
  console.error(`serve: ${(e as Error).message}`);
  process.exit(2);
}
