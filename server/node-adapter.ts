// Serve a fetch handler with Node's http module (@hono/node-server is not a dependency): the request
// body streams in, the response body streams out.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { Readable } from "node:stream";

async function handle(fetchHandler: (req: Request) => Response | Promise<Response>, req: IncomingMessage, res: ServerResponse, port: number): Promise<void> {
  const url = `http://${req.headers.host ?? `127.0.0.1:${port}`}${req.url ?? "/"}`;
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (Array.isArray(v)) for (const x of v) headers.append(k, x);
    else if (v !== undefined) headers.set(k, v);
  }
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  const controller = new AbortController();
  res.on("close", () => controller.abort());
  const request = new Request(url, {
    method: req.method,
    headers,
    body: hasBody ? (Readable.toWeb(req) as unknown as ReadableStream<Uint8Array>) : undefined,
    signal: controller.signal,
    ...(hasBody ? { duplex: "half" } : {}),
  } as RequestInit);
  const response = await fetchHandler(request);
  const out: Record<string, string | string[]> = {};
  response.headers.forEach((v, k) => {
    out[k] = k === "set-cookie" ? [...((out[k] as string[]) ?? []), v] : v;
  });
  res.writeHead(response.status, out);
  if (!response.body) {
    res.end();
    return;
  }
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) res.write(chunk);
  res.end();
}

export function serveNode(fetchHandler: (req: Request) => Response | Promise<Response>, port: number, hostname = "0.0.0.0"): Promise<Server> {
  const server = createServer((req, res) => {
    handle(fetchHandler, req, res, port).catch((e) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: `internal error: ${(e as Error).message}` }));
    });
  });
  server.keepAliveTimeout = 30_000;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, hostname, () => resolve(server));
  });
}
