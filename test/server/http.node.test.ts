// The coordinator's HTTP server as an attacker meets it, on both runtimes: a real `deno run
// server/main.deno.ts` and a real `node server/main.node.ts` process, probed over raw sockets.
// Interrupted downloads, HEAD requests and byte ranges of a served dataset; slow-loris headers and
// bodies; connections per client address (127.0.0.2 is another address on loopback).
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readlinkSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN, killed, spawnCoordinator, tempDir } from "./support.ts";

const LIMITS = { headersTimeoutMs: 1000, requestTimeoutMs: 2500, perAddress: 24 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Descriptors of `pid` open on `path`. */
function openOn(pid: number, path: string): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === path) n++;
    } catch {
      // closed while we looked
    }
  }
  return n;
}

/** Poll until `f()` holds or `ms` pass; returns the last value. */
async function settle<T>(f: () => T, ok: (v: T) => boolean, ms = 3000): Promise<T> {
  const t0 = Date.now();
  let v = f();
  while (!ok(v) && Date.now() - t0 < ms) {
    await sleep(50);
    v = f();
  }
  return v;
}

/** A raw socket from `localAddress` with its close time recorded. */
function rawSocket(
  port: number,
  localAddress = "127.0.0.1",
): Promise<Socket & { closedAt?: number; received: Buffer[] }> {
  return new Promise((res, rej) => {
    const s = connect({ port, host: "127.0.0.1", localAddress }) as Socket & { closedAt?: number; received: Buffer[] };
    s.received = [];
    s.on("data", (d) => s.received.push(d));
    s.on("close", () => (s.closedAt = Date.now()));
    s.on("error", () => undefined);
    s.once("connect", () => res(s));
    s.once("error", rej);
  });
}

/** GET `path` over a raw socket and drop the connection once `bytes` of the answer arrived (0: at once). */
function abortedDownload(port: number, path: string, bytes: number): Promise<number> {
  return new Promise((res) => {
    const s = connect(port, "127.0.0.1", () => {
      s.write(`GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`);
      if (bytes === 0) setTimeout(() => s.destroy(), 1);
    });
    let got = 0;
    s.on("data", (d) => {
      got += d.length;
      if (got >= bytes) s.destroy();
    });
    s.on("close", () => res(got));
    s.on("error", () => undefined);
  });
}

function get(
  port: number,
  path: string,
  headers: Record<string, string> = {},
  method = "GET",
  localAddress?: string,
): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((res, rej) => {
    const req = request({
      port,
      host: "127.0.0.1",
      path,
      method,
      headers: { connection: "close", ...headers },
      localAddress,
    }, (r) => {
      const parts: Buffer[] = [];
      r.on("data", (d) => parts.push(d));
      r.on("end", () => res({ status: r.statusCode!, headers: r.headers, body: Buffer.concat(parts) }));
    });
    req.on("error", rej);
    req.end();
  });
}

for (const runtime of ["deno", "node"] as const) {
  describe(`coordinator HTTP server (${runtime})`, () => {
    const dir = tempDir(`coord-http-${runtime}`);
    const data = join(dir, "cifar-10-binary.tar.gz");
    // Large enough that a download dropped early leaves most of the file unread (the old crash needed that).
    const bytes = randomBytes(64_000_000 + 17);
    const DATASET = "/v1/datasets/cifar-10-binary.tar.gz";
    let child: ChildProcess;
    let port = 0;

    beforeAll(async () => {
      writeFileSync(data, bytes);
      const limits = [
        ["--headers-timeout-ms", LIMITS.headersTimeoutMs],
        ["--request-timeout-ms", LIMITS.requestTimeoutMs],
        ["--max-connections-per-address", LIMITS.perAddress],
      ].flatMap(([flag, v]) => [String(flag), String(v)]);
      const args = [
        "--port",
        "0",
        "--db",
        join(dir, "db.sqlite"),
        "--blobs",
        join(dir, "blobs"),
        "--volunteer-dir",
        dir,
      ];
      ({ child, port } = await spawnCoordinator(runtime, [...args, "--admin-token", ADMIN, ...limits], {
        CIFAR10_PATH: data,
      }));
    }, 120_000);

    afterAll(async () => {
      if (child) await killed(child, "SIGKILL");
    });

    it("survives 60 downloads dropped part way, and closes the file each time", async () => {
      const dropAfter = [0, 1, 65_536, 300_000, 1_000_000, 3_000_000];
      for (let i = 0; i < 60; i++) {
        expect(await abortedDownload(port, DATASET, dropAfter[i % dropAfter.length])).toBeGreaterThanOrEqual(
          dropAfter[i % dropAfter.length],
        );
        expect(`after ${i + 1} drops: ${(await get(port, "/v1/jobs/nope")).status}`).toBe(`after ${i + 1} drops: 404`);
      }
      expect(child.exitCode).toBe(null);
      expect(await settle(() => openOn(child.pid!, data), (n) => n === 0)).toBe(0);
    });

    it("answers HEAD without opening the file, and serves byte ranges", async () => {
      for (let i = 0; i < 50; i++) {
        const h = await get(port, DATASET, {}, "HEAD");
        expect(h.status).toBe(200);
        expect(h.headers["content-length"]).toBe(String(bytes.length));
        expect(h.body.length).toBe(0);
      }
      expect(openOn(child.pid!, data)).toBe(0);
      await sleep(500);
      expect(openOn(child.pid!, data)).toBe(0);

      const mid = await get(port, DATASET, { range: "bytes=1000-1999" });
      expect(mid.status).toBe(206);
      expect(mid.headers["content-range"]).toBe(`bytes 1000-1999/${bytes.length}`);
      expect(mid.body.equals(bytes.subarray(1000, 2000))).toBe(true);
      const tail = await get(port, DATASET, { range: "bytes=-10" });
      expect(tail.status).toBe(206);
      expect(tail.body.equals(bytes.subarray(bytes.length - 10))).toBe(true);
      expect((await get(port, DATASET, { range: `bytes=${bytes.length}-` })).status).toBe(416);
      const whole = await get(port, DATASET);
      expect(whole.status).toBe(200);
      expect(whole.body.equals(bytes)).toBe(true);
      expect(await settle(() => openOn(child.pid!, data), (n) => n === 0)).toBe(0);
    });

    it("closes slow-loris sockets: unfinished headers and trickled bodies", async () => {
      const t0 = Date.now();
      const headers = await Promise.all(Array.from({ length: 10 }, () => rawSocket(port)));
      for (const s of headers) s.write("GET /v1/jobs/x HTTP/1.1\r\nhost: x\r\n");
      const bodies = await Promise.all(Array.from({ length: 5 }, () => rawSocket(port)));
      for (const s of bodies) {
        s.write(
          "POST /v1/volunteers HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
        );
      }
      // Keep every one of them busy: a header line or a body byte every 200 ms.
      const drip = setInterval(() => {
        for (const s of headers) if (!s.closedAt) s.write("x-a: b\r\n");
        for (const s of bodies) if (!s.closedAt) s.write(" ");
      }, 200);
      try {
        const all = [...headers, ...bodies];
        await settle(() => all.filter((s) => !s.closedAt).length, (n) => n === 0, LIMITS.requestTimeoutMs + 3000);
        const late = (ss: typeof all) => Math.max(...ss.map((s) => (s.closedAt ?? Infinity) - t0));
        console.log(
          `[${runtime}] slow loris: headers closed after ${late(headers)} ms, bodies after ${late(bodies)} ms`,
        );
        expect(late(headers)).toBeLessThan(LIMITS.headersTimeoutMs + 1500);
        expect(late(bodies)).toBeLessThan(LIMITS.requestTimeoutMs + 1500);
        expect(String(Buffer.concat(bodies[0].received))).toMatch(/^HTTP\/1.1 408/);
      } finally {
        clearInterval(drip);
      }
    });

    it("caps connections per client address; another address is still served", async () => {
      const mine = await Promise.all(Array.from({ length: LIMITS.perAddress + 8 }, () => rawSocket(port)));
      await sleep(300);
      const refused = mine.filter((s) => s.closedAt).length;
      expect(refused).toBeGreaterThanOrEqual(8);
      expect(refused).toBeLessThan(mine.length);
      const other = await get(port, "/v1/jobs/nope", {}, "GET", "127.0.0.2");
      expect(other.status).toBe(404);
      for (const s of mine) s.destroy();
      await sleep(100);
      expect((await get(port, "/v1/jobs/nope")).status).toBe(404);
    });
  });
}
