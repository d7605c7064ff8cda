import assert from "node:assert/strict";
import {
  MAX_BYTES_PER_REQUEST,
  PushLogger,
  type PushLoggerOptions,
} from "../lib/start/push_logger.ts";
import { EventLog } from "../lib/engine/event_log.ts";
import type { JobEvent } from "../lib/engine/events.ts";
import { USER_AGENT } from "../lib/util/version.ts";
import { FakeHub } from "./support/fake_hub.ts";

const FAST = { runningMs: [5, 15], flushingMs: [2, 5] } as const;

function outputEvent(i: number): JobEvent {
  return { event: "cmd_output", timestamp: 1700000000, output: `line ${i}\n` };
}

async function withSetup(
  fn: (hub: FakeHub, log: EventLog, jobId: string) => Promise<void>,
  jobOptions: { logToken?: string } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const hub = await FakeHub.start();
  const log = await EventLog.create({ dir });
  const jobId = hub.assignJob(jobOptions);
  try {
    await fn(hub, log, jobId);
  } finally {
    await log.remove();
    await hub.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function pusher(
  hub: FakeHub,
  log: EventLog,
  jobId: string,
  options: Partial<PushLoggerOptions> = {},
): PushLogger {
  return new PushLogger({
    source: log,
    url: hub.logUrl(jobId),
    token: hub.jobs.get(jobId)!.logToken,
    refreshToken: async () => {
      const res = await fetch(`http://${hub.endpoint}/api/v1/self_hosted_agents/refresh`, {
        method: "POST",
        headers: { "Authorization": "Token token", "User-Agent": USER_AGENT },
      });
      return (await res.json()).token;
    },
    delays: FAST,
    ...options,
  });
}

Deno.test("PushLogger() refuses lines per request and flush timeouts out of range", async (t) => {
  const base = {
    source: { lineCount: 0, readLines: () => Promise.resolve([]) },
    url: "http://127.0.0.1:1/logs",
    token: "t",
    refreshToken: () => Promise.resolve("t"),
  };
  for (const linesPerRequest of [0, -1, 2001]) {
    await t.step(`linesPerRequest ${linesPerRequest}`, () => {
      assert.throws(() => new PushLogger({ ...base, linesPerRequest }), (error: Error) => {
        assert.ok(error instanceof RangeError);
        assert.match(error.message, /must be between 1 and 2000/);
        return true;
      });
    });
  }
  for (const flushTimeoutSeconds of [0, -5, 901]) {
    await t.step(`flushTimeoutSeconds ${flushTimeoutSeconds}`, () => {
      assert.throws(() => new PushLogger({ ...base, flushTimeoutSeconds }), (error: Error) => {
        assert.ok(error instanceof RangeError);
        assert.match(error.message, /must be between 1 and 900/);
        return true;
      });
    });
  }
  await t.step("limits are accepted", () => {
    new PushLogger({ ...base, linesPerRequest: 1, flushTimeoutSeconds: 1 });
    new PushLogger({ ...base, linesPerRequest: 2000, flushTimeoutSeconds: 900 });
  });
});

Deno.test("PushLogger pushes every event once, in order, with the right headers", async () => {
  await withSetup(async (hub, log, jobId) => {
    const logger = pusher(hub, log, jobId);
    logger.start();
    log.write({ event: "job_started", timestamp: 1700000000 });
    for (let i = 0; i < 50; i++) log.write(outputEvent(i));
    await hub.waitUntilLogEvents(jobId, 51);
    log.write({ event: "job_finished", timestamp: 1700000001, result: "passed" });
    const result = await logger.close();
    assert.deepEqual(result, { trimmed: false, complete: true, pushedLines: 52 });
    const received = hub.jobLog(jobId);
    assert.deepEqual(received.anomalies, []);
    assert.deepEqual(
      received.events.map((line) => line + "\n"),
      await log.readLines(0),
    );
    const push = hub.requests.find((r) => r.path.startsWith(`/api/v1/logs/${jobId}`))!;
    assert.equal(push.path, `/api/v1/logs/${jobId}?start_from=0`);
    assert.equal(push.headers["content-type"], "text/plain");
    assert.equal(push.headers["authorization"], "Bearer log-token");
    assert.match(push.headers["user-agent"], /^SemaphoreAgent\/v/);
  });
});

Deno.test("PushLogger caps each request at linesPerRequest lines", async () => {
  await withSetup(async (hub, log, jobId) => {
    for (let i = 0; i < 25; i++) log.write(outputEvent(i));
    const logger = pusher(hub, log, jobId, { linesPerRequest: 10 });
    logger.start();
    await logger.close();
    assert.deepEqual(hub.jobLog(jobId).batches, [10, 10, 5]);
    const starts = hub.requests.filter((r) => r.path.includes("/logs/")).map((r) => r.path);
    assert.deepEqual(starts.map((p) => p.split("?")[1]), [
      "start_from=0",
      "start_from=10",
      "start_from=20",
    ]);
  });
});

Deno.test("PushLogger caps each request at 4 MiB of long lines, one line at least", async () => {
  await withSetup(async (hub, log, jobId) => {
    // 2000 lines of 64 KiB would make one 128 MB request.
    const long = "x".repeat(64 * 1024);
    for (let i = 0; i < 200; i++) log.write({ event: "cmd_output", timestamp: 1, output: long });
    // A line longer than the cap goes alone.
    log.write({ event: "cmd_output", timestamp: 1, output: "y".repeat(5 * 1024 * 1024) });
    log.write(outputEvent(0));
    const logger = pusher(hub, log, jobId);
    logger.start();
    const result = await logger.close();
    assert.equal(result.complete, true);
    const pushes = hub.requests.filter((r) => r.path.includes("/logs/"));
    const sizes = pushes.map((r) => new TextEncoder().encode(r.body).length);
    const lineSize = `{"event":"cmd_output","timestamp":1,"output":"${long}"}\n`.length;
    const perBatch = Math.floor(MAX_BYTES_PER_REQUEST / lineSize);
    assert.equal(MAX_BYTES_PER_REQUEST, 4 * 1024 * 1024);
    assert.deepEqual(hub.jobLog(jobId).batches, [
      perBatch,
      perBatch,
      perBatch,
      200 - 3 * perBatch,
      1,
      1,
    ]);
    for (const size of sizes.slice(0, 4)) assert.ok(size <= MAX_BYTES_PER_REQUEST, `${size} bytes`);
    assert.equal(hub.jobLog(jobId).events.length, 202);
    assert.deepEqual(hub.jobLog(jobId).anomalies, []);
  });
});

Deno.test("PushLogger.close() gives up after the flush timeout when the hub is down", async () => {
  await withSetup(async (hub, log, jobId) => {
    log.write({ event: "job_started", timestamp: 1700000000 });
    const logger = pusher(hub, log, jobId, { flushTimeoutSeconds: 1 });
    logger.start();
    await hub.waitUntilLogEvents(jobId, 1);
    await hub.goDown();
    log.write({ event: "job_finished", timestamp: 1700000001, result: "passed" });
    const started = performance.now();
    const result = await logger.close();
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 950 && elapsed < 3000, `close took ${elapsed} ms`);
    assert.deepEqual(result, { trimmed: false, complete: false, pushedLines: 1 });
    assert.deepEqual(hub.eventNames(jobId), ["job_started"]);
  });
});

Deno.test("PushLogger retries with the same index while the hub is down and misses nothing", async () => {
  await withSetup(async (hub, log, jobId) => {
    // Counts the reads, one per push attempt, to know when pushes failed while down.
    let reads = 0;
    let onRead = () => {};
    const source = {
      get lineCount() {
        return log.lineCount;
      },
      readLines(start: number, max: number, options?: { maxBytes?: number }) {
        reads++;
        onRead();
        return log.readLines(start, max, options);
      },
    };
    const logger = pusher(hub, log, jobId, { source });
    logger.start();
    for (let i = 0; i < 10; i++) log.write(outputEvent(i));
    await hub.waitUntilLogEvents(jobId, 10);
    await hub.goDown();
    for (let i = 10; i < 20; i++) log.write(outputEvent(i));
    const target = reads + 5;
    await new Promise<void>((resolve) => onRead = () => reads >= target && resolve());
    await hub.comeUp();
    hub.setFailEvery(3);
    for (let i = 20; i < 30; i++) log.write(outputEvent(i));
    const result = await logger.close();
    assert.equal(result.complete, true);
    assert.deepEqual(hub.jobLog(jobId).anomalies, []);
    assert.deepEqual(
      hub.jobLog(jobId).events.map((e) => JSON.parse(e).output),
      Array.from({ length: 30 }, (_, i) => `line ${i}\n`),
    );
  });
});

Deno.test("PushLogger stops and reports trimmed when the hub answers 422", async () => {
  await withSetup(async (hub, log, jobId) => {
    hub.setMaxLogEvents(5);
    const logger = pusher(hub, log, jobId, { linesPerRequest: 5 });
    logger.start();
    for (let i = 0; i < 12; i++) log.write(outputEvent(i));
    await hub.waitUntilLogEvents(jobId, 5);
    const result = await logger.close();
    assert.deepEqual(result, { trimmed: true, complete: false, pushedLines: 5 });
    assert.equal(logger.trimmed, true);
    assert.equal(hub.jobLog(jobId).events.length, 5);
    const pushes = hub.requests.filter((r) => r.path.includes("/logs/"));
    assert.equal(pushes.at(-1)!.status, 422);
    assert.equal(pushes.filter((r) => r.status === 422).length, 1);
  });
});

Deno.test("PushLogger refreshes the token after a 401 and goes on", async () => {
  await withSetup(async (hub, log, jobId) => {
    const logger = pusher(hub, log, jobId);
    logger.start();
    for (let i = 0; i < 5; i++) log.write(outputEvent(i));
    const result = await logger.close();
    assert.equal(result.complete, true);
    assert.equal(hub.jobLog(jobId).events.length, 5);
    const pushes = hub.requests.filter((r) => r.path.includes("/logs/"));
    assert.equal(pushes[0].status, 401);
    assert.equal(pushes[0].headers["authorization"], "Bearer expired-token");
    assert.ok(hub.requests.some((r) => r.path.endsWith("/refresh")));
    assert.equal(pushes.at(-1)!.headers["authorization"], "Bearer new-token");
    assert.equal(pushes.at(-1)!.status, 200);
  }, { logToken: "expired-token" });
});

Deno.test("PushLogger.backlog() counts the unsent events, their bytes and the oldest one's age", async () => {
  await withSetup(async (hub, log, jobId) => {
    const statuses: (number | undefined)[] = [];
    const logger = pusher(hub, log, jobId, {
      onResponse: (status) => statuses.push(status),
    });
    assert.deepEqual(await logger.backlog(), { events: 0, bytes: 0, oldestAgeSeconds: 0 });
    log.write({ event: "job_started", timestamp: 1700000000 });
    log.write(outputEvent(1));
    const lines = [
      '{"event":"job_started","timestamp":1700000000}\n',
      '{"event":"cmd_output","timestamp":1700000000,"output":"line 1\\n"}\n',
    ];
    const bytes = lines.join("").length;
    assert.deepEqual(await logger.backlog(1700000090_000), {
      events: 2,
      bytes,
      oldestAgeSeconds: 90,
    });
    logger.start();
    await hub.waitUntilLogEvents(jobId, 2);
    await logger.close();
    assert.deepEqual(await logger.backlog(), { events: 0, bytes: 0, oldestAgeSeconds: 0 });
    assert.ok(statuses.length >= 1 && statuses.every((s) => s === 200), `${statuses}`);
  });
});
