// The coordinator on Deno: node:sqlite, and node:http through server/http.ts. `npm run serve` starts it
// on SQLite with no setup; flags in server/serve.ts.
import { parseFlags, startCoordinator } from "./serve.ts";
import { openSqliteDeno } from "./store/sqlite-deno.ts";

declare const Deno: {
  args: string[];
  env: { get(k: string): string | undefined };
  exit(code: number): never;
  addSignalListener(s: string, f: () => void): void;
};

try {
  const running = await startCoordinator(parseFlags(Deno.args, (k) => Deno.env.get(k)), openSqliteDeno);
  const stop = () => void running.close().then(() => Deno.exit(0));
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
} catch (e) {
  console.error(`serve: ${(e as Error).message}`);
  Deno.exit(2);
}
