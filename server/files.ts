// A file from disk as a Response: HEAD answered from stat alone, one byte range (`Range: bytes=a-b`,
// `a-`, `-n`), and a body that opens the file on its first read and closes it at the end or when the
// reader cancels (a client that went away). Nothing is opened for a response nobody reads.
import { type FileHandle, open, stat } from "node:fs/promises";

const CHUNK = 256 * 1024;

/** The one range a `Range` header asks for; null to serve the whole file (absent, malformed or several
 *  ranges, which RFC 9110 lets a server ignore); "unsatisfiable" when it starts past the end. */
export function parseRange(
  header: string | null,
  size: number,
): { start: number; end: number } | null | "unsatisfiable" {
  const m = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!m || (m[1] === "" && m[2] === "")) return null;
  if (m[1] === "") {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size) return "unsatisfiable";
  return start <= end ? { start, end } : null;
}

function fileStream(path: string, start: number, length: number): ReadableStream<Uint8Array> {
  let file: FileHandle | undefined;
  let pos = start;
  let cancelled = false;
  const stop = pos + length;
  const close = async () => {
    const f = file;
    file = undefined;
    await f?.close().catch(() => undefined);
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          if (!file) {
            const f = await open(path, "r");
            if (cancelled) return void (await f.close());
            file = f;
          }
          const buf = new Uint8Array(Math.min(CHUNK, stop - pos));
          const { bytesRead } = buf.length ? await file.read(buf, 0, buf.length, pos) : { bytesRead: 0 };
          if (cancelled) return void (await close());
          if (bytesRead === 0 && pos < stop) throw new Error(`${path} shrank while it was being served`);
          pos += bytesRead;
          if (bytesRead) controller.enqueue(buf.subarray(0, bytesRead));
          if (pos >= stop) {
            await close();
            controller.close();
          }
        } catch (e) {
          await close();
          controller.error(e);
        }
      },
      async cancel() {
        cancelled = true;
        await close();
      },
    },
    // Pull only when someone reads: a response that is never read never opens the file.
    { highWaterMark: 0 },
  );
}

/** The file at `path` for `req` (GET or HEAD), or null when it is not a regular file. */
export async function fileResponse(
  path: string,
  req: Request,
  headers: Record<string, string> = {},
): Promise<Response | null> {
  let size: number;
  try {
    const s = await stat(path);
    if (!s.isFile()) return null;
    size = s.size;
  } catch {
    return null;
  }
  const h: Record<string, string> = { "accept-ranges": "bytes", ...headers };
  const range = parseRange(req.headers.get("range"), size);
  if (range === "unsatisfiable") {
    return new Response(null, { status: 416, headers: { ...h, "content-range": `bytes */${size}` } });
  }
  const { start, end } = range ?? { start: 0, end: size - 1 };
  if (range) h["content-range"] = `bytes ${start}-${end}/${size}`;
  h["content-length"] = String(end - start + 1);
  const status = range ? 206 : 200;
  if (req.method === "HEAD") return new Response(null, { status, headers: h });
  return new Response(fileStream(path, start, end - start + 1), { status, headers: h });
}
