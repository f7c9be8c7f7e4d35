// The coordinator on Deno: node:sqlite and Deno.serve. `npm run serve` starts it on SQLite with no
// setup; flags in server/serve.ts.
import { parseFlags, startCoordinator } from "./serve.ts";
import { openSqliteDeno } from "./store/sqlite-deno.ts";

declare const Deno: {
  args: string[];
  env: { get(k: string): string | undefined };
  exit(code: number): never;
  addSignalListener(s: string, f: () => void): void;
  serve(o: { port: number; hostname: string; onListen?: (a: { port: number }) => void }, h: (r: Request) => Response | Promise<Response>): { finished: Promise<void>; shutdown(): Promise<void>; addr: { port: number } };
};

try {
  const flags = parseFlags(Deno.args, (k) => Deno.env.get(k));
  const running = await startCoordinator(flags, {
    openSqlite: openSqliteDeno,
    async serve(fetch, port, host) {
      const server = Deno.serve({ port, hostname: host, onListen: () => undefined }, fetch);
      return { port: server.addr.port, close: () => server.shutdown() };
    },
  });
  const stop = () => void running.close().then(() => Deno.exit(0));
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
} catch (e) {
  console.error(`serve: ${(e as Error).message}`);
  Deno.exit(2);
}
