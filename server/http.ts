// The coordinator's HTTP server, the same on Node and Deno: node:http, whose header and request
// timeouts Deno's compatibility layer enforces too (Deno.serve has none, and exposes no connections to
// cap). Request and response bodies are bridged to web streams by hand, so a client that goes away
// cancels the response body (closing a file being served) instead of writing into a closed stream.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { addressKey } from "./rate-limit.ts";

export interface HttpLimits {
  /** A request's headers must arrive within this (slow-loris sockets are closed with 408). */
  headersTimeoutMs: number;
  /** A whole request, body included, must arrive within this. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** Open connections from one client address (IPv6: one /64); more are closed at once. */
  maxConnectionsPerAddress: number;
  /** Open connections in all. */
  maxConnections: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 120_000,
  keepAliveTimeoutMs: 5_000,
  maxConnectionsPerAddress: 64,
  maxConnections: 1024,
};

/** What the app learns of the connection (Hono's `c.env`). */
export interface ConnInfo {
  remoteAddr: string;
}

export type FetchHandler = (req: Request, conn: ConnInfo) => Response | Promise<Response>;

export interface HttpServer {
  port: number;
  server: Server;
  close(): Promise<void>;
}

/** The request body as a web stream that pauses the socket when unread and never enqueues after it ends. */
function requestBody(req: IncomingMessage): ReadableStream<Uint8Array> {
  let ended = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      const end = (f: () => void) => {
        if (ended) return;
        ended = true;
        f();
      };
      req.on("data", (chunk: Buffer) => {
        if (ended) return;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 1) <= 0) req.pause();
      });
      req.on("end", () => end(() => controller.close()));
      req.on("error", (e) => end(() => controller.error(e)));
      req.on("close", () => end(() => controller.error(new Error("the client closed the connection mid-request"))));
      req.pause();
    },
    pull() {
      req.resume();
    },
    cancel() {
      ended = true;
      req.resume(); // discard the rest; the connection closes after the response (see below)
    },
  });
}

async function writeResponse(response: Response, res: ServerResponse, req: IncomingMessage): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((v, k) => {
    headers[k] = k === "set-cookie" ? [...((headers[k] as string[]) ?? []), v] : v;
  });
  // A body the app did not read (a refused upload) is not worth draining over a keep-alive connection.
  if (!req.complete) headers.connection = "close";
  res.writeHead(response.status, headers);
  if (!response.body || res.destroyed) {
    await response.body?.cancel().catch(() => undefined);
    res.end();
    return;
  }
  const reader = response.body.getReader();
  const gone = () => void reader.cancel().catch(() => undefined);
  res.once("close", gone);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || res.destroyed) break;
      if (!res.write(value)) {
        await new Promise<void>((resolve) => {
          res.once("drain", resolve);
          res.once("close", resolve);
        });
      }
    }
    res.end();
  } catch {
    res.destroy();
  } finally {
    res.off("close", gone);
  }
}

function toRequest(req: IncomingMessage, port: number): Request {
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (Array.isArray(v)) { for (const x of v) headers.append(k, x); }
    else if (v !== undefined) headers.set(k, v);
  }
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  return new Request(`http://${req.headers.host ?? `127.0.0.1:${port}`}${req.url ?? "/"}`, {
    method: req.method,
    headers,
    body: hasBody ? requestBody(req) : undefined,
    ...(hasBody ? { duplex: "half" } : {}),
  } as RequestInit);
}

/** Serve `handler` on host:port (0: any free port) under `limits`. */
export function serveHttp(
  handler: FetchHandler,
  port: number,
  host = "0.0.0.0",
  limits: Partial<HttpLimits> = {},
): Promise<HttpServer> {
  const l = { ...DEFAULT_HTTP_LIMITS, ...limits };
  const server = createServer({
    headersTimeout: l.headersTimeoutMs,
    requestTimeout: l.requestTimeoutMs,
    keepAliveTimeout: l.keepAliveTimeoutMs,
    // How often the timeouts above are checked (Node's default, 30 s, would let them overrun by that much).
    connectionsCheckingInterval: Math.max(100, Math.min(1000, l.headersTimeoutMs / 4)),
  });
  server.maxConnections = l.maxConnections;
  const perAddress = new Map<string, number>();
  server.on("connection", (socket) => {
    const key = addressKey(socket.remoteAddress);
    const open = (perAddress.get(key) ?? 0) + 1;
    if (open > l.maxConnectionsPerAddress) {
      socket.destroy();
      return;
    }
    perAddress.set(key, open);
    socket.once("close", () => {
      const left = (perAddress.get(key) ?? 1) - 1;
      if (left > 0) perAddress.set(key, left);
      else perAddress.delete(key);
    });
  });
  let boundPort = port;
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const response = await handler(toRequest(req, boundPort), { remoteAddr: req.socket.remoteAddress ?? "" });
      await writeResponse(response, res, req);
    })().catch((e) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "application/json", connection: "close" });
      res.end(JSON.stringify({ error: `internal error: ${(e as Error).message}` }));
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const addr = server.address();
      boundPort = typeof addr === "object" && addr ? addr.port : port;
      resolve({
        port: boundPort,
        server,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
