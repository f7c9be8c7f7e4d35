// The volunteer page's main thread: starts the Web Worker (./worker.ts, through comlink), shows its
// progress, and stops it when the tab goes away (pagehide / beforeunload): the loop is aborted, which
// releases its lease when it can; otherwise the lease simply expires and the shard is reassigned.
import * as Comlink from "comlink";
import { CoordinatorClient } from "../../protocol/client.ts";
import type { VolunteerStatus, VolunteerWorkerApi } from "./worker.ts";

const READY = "volunteer-worker-ready"; // worker.ts's READY (not imported: that would bundle the worker here)

const $ = (id: string) => document.getElementById(id)!;
const params = new URLSearchParams(location.search);
const server = params.get("server") ?? location.origin;
const maxShards = params.has("maxShards") ? Number(params.get("maxShards")) : undefined;

let worker: Worker | undefined;
let api: Comlink.Remote<VolunteerWorkerApi> | undefined;
let latest: VolunteerStatus | undefined; // the worker's last status: its lease, for pagehide

function log(line: string): void {
  const el = $("log");
  el.textContent += `${new Date().toISOString().slice(11, 19)} ${line}\n`;
  el.scrollTop = el.scrollHeight;
}

function show(s: VolunteerStatus): void {
  latest = s;
  $("state").textContent = s.state;
  if (s.adapter) $("adapter").textContent = s.adapter;
  $("done").textContent = String(s.shardsDone);
  $("current").textContent = s.current ? `${s.current.kind} ${s.current.key}` : "—";
  ($("progress") as HTMLProgressElement).value = s.current?.fraction ?? 0;
  $("rate").textContent = s.shardsPerMinute ? `${s.shardsPerMinute.toFixed(2)} shards/min` : "—";
  if (s.message) log(s.message);
  (window as unknown as { volunteerStatus: VolunteerStatus }).volunteerStatus = s; // for tests and the curious
}

async function start(): Promise<void> {
  ($("start") as HTMLButtonElement).disabled = true;
  ($("stop") as HTMLButtonElement).disabled = false;
  worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  // A worker that fails to load (or throws outside a call) would leave start() pending forever.
  const failed = new Promise<never>((_, reject) =>
    worker!.addEventListener("error", (e) => reject(new Error(e.message || "the worker failed to load")))
  );
  const ready = new Promise<void>((resolve) =>
    worker!.addEventListener("message", (e) => e.data === READY && resolve())
  );
  api = Comlink.wrap<VolunteerWorkerApi>(worker);
  try {
    log("loading the kernels");
    await Promise.race([failed, ready]);
    const final = await Promise.race([
      failed,
      api.start({
        server,
        maxShards,
        kinds: params.get("kinds")?.split(","),
        name: params.get("name") ?? "browser tab",
        agent: navigator.userAgent,
        invite: params.get("invite") ?? undefined,
        dataset: params.get("dataset") ?? undefined,
      }, Comlink.proxy(show)),
    ]);
    show(final);
  } catch (e) {
    log(`stopped with an error: ${(e as Error).message}`);
    show({ state: "error", shardsDone: Number($("done").textContent), message: (e as Error).message });
  } finally {
    ($("start") as HTMLButtonElement).disabled = false;
    ($("stop") as HTMLButtonElement).disabled = true;
    worker?.terminate();
    worker = undefined;
  }
}

async function stop(): Promise<void> {
  ($("stop") as HTMLButtonElement).disabled = true;
  await api?.stop();
}

$("start").addEventListener("click", () => void start());
$("stop").addEventListener("click", () => void stop());
// The tab is going away: abort the worker, and hand its lease back from here with a keepalive request
// (the worker dies with the tab, mid-kernel). If even that is lost, the lease expires on the coordinator.
const leaving = () => {
  void api?.stop();
  const l = latest?.lease;
  if (l) void new CoordinatorClient(l.server, l.token).release(l.leaseId, l.fence);
};
addEventListener("pagehide", leaving);
addEventListener("beforeunload", leaving);
if (params.get("autostart") === "1") void start();
