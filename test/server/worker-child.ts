// A volunteer in its own process (for the kill -9 test): runs the loop with the test executors and
// prints each event as a JSON line. Usage: tsx test/server/worker-child.ts SERVER_URL
import { testExecutors } from "../../server/jobs/test-kinds.ts";
import { runWorker } from "../../src/volunteer/loop.ts";

const server = process.argv[2];
await runWorker({
  server,
  executors: testExecutors,
  name: "child",
  idleMs: 50,
  onProgress: (e) =>
    console.log(
      JSON.stringify(
        e.type === "leased"
          ? { type: e.type, key: e.shard.key, jobId: e.shard.jobId, leaseId: e.leaseId, fence: e.fence }
          : e.type === "registered"
          ? e
          : { type: e.type },
      ),
    ),
});
