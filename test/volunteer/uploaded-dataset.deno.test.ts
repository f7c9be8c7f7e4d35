// Deno only: a job on a dataset an admin uploads. The coordinator (in this process, on loopback) takes an
// .npz by POST /v1/datasets, validates it and names it by its sha-256; a trak job names it instead of the
// bundled CIFAR-10; an in-process volunteer downloads it, checks the hash and runs every shard; the report
// comes back. A dataset whose bytes do not hash to its name is refused by the volunteer.
import { describe, expect, it } from "vitest";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ServeFlags, startCoordinator } from "../../server/serve.ts";
import { openSqliteDeno } from "../../server/store/sqlite-deno.ts";
import { DEFAULT_DATA, loadCifar10 } from "../../src/data/cifar.ts";
import { seededSubset } from "../../src/data/dataset.ts";
import { writeData } from "../../src/data/formats.ts";
import { readBytes, sha256Hex } from "../../src/data/io.ts";
import { CoordinatorClient } from "../../src/protocol/client.ts";
import { datasetLoaders, downloadDataset, downloadTrainSplit } from "../../src/volunteer/dataset.ts";
import { trakExecutors } from "../../src/volunteer/executors.ts";
import { runWorker } from "../../src/volunteer/loop.ts";
import { testRuntime } from "../support/gpu.ts";
import { freePort, tempDir } from "../support/host.ts";
import { testSeed } from "../support/rng.ts";
import { TINY } from "./fixtures.ts";

const ADMIN = "uploaded-dataset-test-admin";

describe("a job on an uploaded dataset", () => {
  it("uploads, validates, runs through a volunteer and reports; a wrong hash is refused", async () => {
    const rt = await testRuntime();
    rt.poisonOutputs = false;
    const seed = testSeed("uploaded dataset") % 1000;
    const dir = tempDir("uploaded");
    const npz = join(dir, "mine");
    await writeData(
      npz,
      "npz",
      seededSubset(await loadCifar10(DEFAULT_DATA, { split: "train", limit: 2000 }), 400, seed),
      await loadCifar10(DEFAULT_DATA, { split: "test", limit: 300 }),
    );
    const bytes = await readBytes(join(npz, "data.npz"));
    const coord = await startCoordinator(
      ServeFlags.parse({
        port: await freePort(),
        host: "127.0.0.1",
        db: join(dir, "db.sqlite"),
        blobs: join(dir, "blobs"),
        datasets: join(dir, "datasets"),
        adminToken: ADMIN,
      }),
      openSqliteDeno,
      () => {},
    );
    const url = `http://127.0.0.1:${coord.port}`;
    try {
      const post = (body: Uint8Array, token = ADMIN) =>
        fetch(`${url}/v1/datasets`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}` },
          body: body as BodyInit,
        });
      expect((await post(bytes, "not-the-admin-token-at-all")).status).toBe(403);
      const junk = await post(new TextEncoder().encode("PK but not a zip"));
      expect(junk.status).toBe(422);
      expect((await junk.json()).error).toMatch(/^not a dataset: /);
      const res = await post(bytes);
      const info = await res.json();
      expect(res.status).toBe(201);
      const hash = await sha256Hex(bytes);
      expect([info.name, info.train, info.test, info.shape]).toEqual([`${hash}.npz`, 400, 300, [3, 32, 32]]);

      const misfit = { ...TINY, data: info.name, model: { ...TINY.model, input: [1, 28, 28] } };
      const refusedJob = await new CoordinatorClient(url, ADMIN).createJob("trak", misfit).then(
        () => "created",
        (e: Error) => e.message,
      );
      expect(refusedJob).toMatch(/model takes 1x28x28 images of 10 classes; dataset \w+\.npz has 3x32x32 images/);
      const job = await new CoordinatorClient(url, ADMIN).createJob("trak", {
        ...TINY,
        train: 320,
        data: info.name,
        seed,
      });
      const executors = trakExecutors({ rt, ...datasetLoaders((name) => downloadDataset(url, name)) });
      // Deterministic shards need two volunteers' agreement: two registrations take turns until it is done.
      const client = new CoordinatorClient(url, ADMIN);
      const tokens: (string | undefined)[] = [undefined, undefined];
      let accepted = 0;
      for (let turn = 0; turn < 8 && (await client.jobStatus(job)).state !== "done"; turn++) {
        const w = await runWorker({ server: url, executors, token: tokens[turn % 2], maxIdlePolls: 4, idleMs: 250 });
        tokens[turn % 2] = w.token;
        expect(w.errors).toBe(0);
        accepted += w.accepted;
      }
      expect((await client.jobStatus(job)).state).toBe("done");
      const summary = JSON.parse(new TextDecoder().decode(await client.reportFile(job, "summary.json")));
      console.log(`uploaded-dataset job: ${accepted} shards accepted, auroc ${summary.auroc}`);
      expect(summary.n).toBe(320);
      expect(summary.poisoned.length).toBe(16); // BadNets at 5% of 320

      // The same bytes under another hash's name: the volunteer refuses them before decoding.
      const other = "0".repeat(64) + ".npz";
      mkdirSync(join(dir, "datasets"), { recursive: true });
      writeFileSync(join(dir, "datasets", other), bytes);
      const refused = await downloadTrainSplit(url, other).then(() => "accepted", (e: Error) => e.message);
      expect(refused).toMatch(/hash to .*, not the name's sha-256; refusing it/);
    } finally {
      await coord.close();
    }
  });
});
