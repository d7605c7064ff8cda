import assert from "node:assert/strict";
import { runBlocks, type SchedulerBlock } from "../lib/run/pipeline/scheduler.ts";
import type { PlannedJob } from "../lib/run/pipeline/expand.ts";

let nn = 0;
function job(name: string, timeLimit = 60): PlannedJob {
  return { nn: ++nn, name, blockName: "", blockIndex: 0, timeLimit } as unknown as PlannedJob;
}

function block(
  index: number,
  name: string,
  deps: number[],
  jobs: PlannedJob[],
  extra: Partial<SchedulerBlock> = {},
): SchedulerBlock {
  return {
    index,
    name,
    dependencies: deps,
    jobs,
    skipped: false,
    failFast: { stop: false, cancel: false },
    ...extra,
  };
}

/** Jobs that end when the test says; records starts and stops. */
function controller() {
  const started: string[] = [];
  const stopped: string[] = [];
  const ends = new Map<string, (r: "passed" | "failed" | "stopped") => void>();
  const waiters: (() => void)[] = [];
  return {
    started,
    stopped,
    startJob(j: PlannedJob) {
      started.push(j.name);
      const result = new Promise<"passed" | "failed" | "stopped">((r) => ends.set(j.name, r));
      waiters.splice(0).forEach((w) => w());
      return {
        result,
        stop() {
          stopped.push(j.name);
          ends.get(j.name)!("stopped");
          return Promise.resolve();
        },
      };
    },
    end(name: string, result: "passed" | "failed") {
      ends.get(name)!(result);
    },
    /** Resolves once `count` jobs have started. */
    async startedCount(count: number) {
      while (started.length < count) await new Promise<void>((r) => waiters.push(r));
    },
  };
}

Deno.test("runBlocks() runs a block after its dependencies pass and caps running jobs at concurrency", async () => {
  const c = controller();
  const done = runBlocks({
    blocks: [block(0, "A", [], [job("a1"), job("a2"), job("a3")]), block(1, "B", [0], [job("b1")])],
    concurrency: 2,
    failFast: { stop: false, cancel: false },
    startJob: c.startJob,
  });
  await c.startedCount(2);
  assert.deepEqual(c.started, ["a1", "a2"]);
  c.end("a1", "passed");
  await c.startedCount(3);
  assert.deepEqual(c.started, ["a1", "a2", "a3"]);
  c.end("a2", "passed");
  c.end("a3", "passed");
  await c.startedCount(4);
  c.end("b1", "passed");
  const r = await done;
  assert.equal(r.result, "passed");
  assert.deepEqual([...r.blocks.entries()], [[0, "passed"], [1, "passed"]]);
});

Deno.test("runBlocks() cancels a block whose dependency failed and counts skipped as passed", async () => {
  const c = controller();
  const done = runBlocks({
    blocks: [
      block(0, "A", [], [job("a")]),
      block(1, "S", [], [job("s")], { skipped: true }),
      block(2, "B", [0], [job("b")]),
      block(3, "C", [1], [job("c")]),
    ],
    concurrency: 4,
    failFast: { stop: false, cancel: false },
    startJob: c.startJob,
  });
  await c.startedCount(2);
  assert.deepEqual(c.started, ["a", "c"]);
  c.end("c", "passed");
  c.end("a", "failed");
  const r = await done;
  assert.deepEqual([...r.blocks.entries()].sort(), [
    [0, "failed"],
    [1, "skipped"],
    [2, "canceled"],
    [3, "passed"],
  ]);
  assert.equal(r.result, "failed");
  assert.equal(r.reason, "test");
});

Deno.test("runBlocks() with fail_fast stop stops running jobs and cancels the rest", async () => {
  const c = controller();
  const done = runBlocks({
    blocks: [block(0, "A", [], [job("a1"), job("a2"), job("a3")]), block(1, "B", [0], [job("b")])],
    concurrency: 2,
    failFast: { stop: true, cancel: false },
    startJob: c.startJob,
  });
  await c.startedCount(2);
  c.end("a1", "failed");
  const r = await done;
  assert.deepEqual(c.stopped, ["a2"]);
  assert.deepEqual(c.started, ["a1", "a2"]);
  assert.deepEqual([...r.jobs.values()].map((j) => j.outcome).sort(), [
    "canceled",
    "canceled",
    "failed",
    "stopped",
  ]);
  assert.equal(r.result, "failed");
});

Deno.test("runBlocks() with fail_fast cancel lets running jobs finish", async () => {
  const c = controller();
  const done = runBlocks({
    blocks: [block(0, "A", [], [job("a1"), job("a2"), job("a3")])],
    concurrency: 2,
    failFast: { stop: false, cancel: true },
    startJob: c.startJob,
  });
  await c.startedCount(2);
  c.end("a1", "failed");
  c.end("a2", "passed");
  const r = await done;
  assert.deepEqual(c.stopped, []);
  assert.deepEqual(c.started, ["a1", "a2"]);
  assert.equal(r.result, "failed");
});

Deno.test("runBlocks() stops every job when the signal aborts and the pipeline ends stopped", async () => {
  const c = controller();
  const abort = new AbortController();
  const done = runBlocks({
    blocks: [block(0, "A", [], [job("a1"), job("a2")]), block(1, "B", [0], [job("b")])],
    concurrency: 2,
    failFast: { stop: false, cancel: false },
    startJob: c.startJob,
    signal: abort.signal,
  });
  await c.startedCount(2);
  abort.abort();
  const r = await done;
  assert.deepEqual(c.stopped.sort(), ["a1", "a2"]);
  assert.equal(r.result, "stopped");
  assert.equal(r.reason, "user");
  assert.equal(r.blocks.get(1), "canceled");
});

Deno.test("runBlocks() stops a job at its time limit and the pipeline ends stopped by timeout", async () => {
  const c = controller();
  const done = runBlocks({
    blocks: [block(0, "A", [], [job("slow", 1), job("quick", 1)])],
    concurrency: 2,
    failFast: { stop: false, cancel: false },
    startJob: c.startJob,
    msPerMinute: 20,
  });
  await c.startedCount(2);
  c.end("quick", "passed");
  const r = await done;
  assert.deepEqual(c.stopped, ["slow"]);
  assert.equal(
    r.jobs.get([...r.jobs.keys()].find((k) => r.jobs.get(k)!.outcome === "stopped")!)!.outcome,
    "stopped",
  );
  assert.equal(r.result, "stopped");
  assert.equal(r.reason, "timeout");
});
