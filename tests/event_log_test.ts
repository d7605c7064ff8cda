/**
 * Tests of lib/event_log.ts (the JSONL job log file, SEMAPHORE_COMPAT.md §6.4/§6.5) and
 * lib/plain_text_log.ts (plain-text conversion and gzip, §6.6/§6.7), on real files.
 *
 * @module
 */

import assert from "node:assert/strict";
import { EventLog, type EventLogFile } from "../lib/engine/event_log.ts";
import { osTempDir } from "../lib/util/temp_dir.ts";
import { decodeUtf8PerByte, encodeEvent, type JobEvent } from "../lib/engine/events.ts";
import { Job } from "../lib/engine/job.ts";
import { parseJobRequestJson } from "../lib/engine/job_request.ts";
import { silentLogger } from "../lib/util/agent_log.ts";
import { createExecutor } from "../executors/for_job.ts";
import { gzipFile, writePlainTextLog } from "../lib/reporting/plain_text_log.ts";
import { makeHome, testShellEnv } from "./support/job_harness.ts";

const T = 1700000000;

const EVENTS: readonly JobEvent[] = [
  { event: "job_started", timestamp: T },
  { event: "cmd_started", timestamp: T, directive: "echo hello" },
  { event: "cmd_output", timestamp: T, output: "hello\n" },
  {
    event: "cmd_finished",
    timestamp: T,
    directive: "echo hello",
    exit_code: 0,
    started_at: T,
    finished_at: T,
  },
  { event: "job_finished", timestamp: T + 1, result: "passed" },
];

const LINES: readonly string[] = [
  '{"event":"job_started","timestamp":1700000000}\n',
  '{"event":"cmd_started","timestamp":1700000000,"directive":"echo hello"}\n',
  '{"event":"cmd_output","timestamp":1700000000,"output":"hello\\n"}\n',
  '{"event":"cmd_finished","timestamp":1700000000,"directive":"echo hello","exit_code":0,' +
  '"started_at":1700000000,"finished_at":1700000000}\n',
  '{"event":"job_finished","timestamp":1700000001,"result":"passed"}\n',
];

function numbered(i: number): JobEvent {
  return { event: "cmd_output", timestamp: T, output: `line ${i}\n` };
}

function numberedLine(i: number): string {
  return `{"event":"cmd_output","timestamp":1700000000,"output":"line ${i}\\n"}\n`;
}

/** A temp dir removed (with everything in it) at dispose. */
async function tempDir(): Promise<AsyncDisposable & { readonly path: string }> {
  const path = await Deno.makeTempDir({ prefix: "event_log_test_" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

async function text(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

Deno.test("EventLog.create() makes an empty job_log_<ns>.json file", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  const name = log.path.slice(dir.path.length + 1);
  assert.match(name, /^job_log_\d{19}\.json$/);
  assert.ok(log.path.startsWith(`${dir.path}/`));
  assert.equal((await Deno.stat(log.path)).size, 0);
  assert.equal(log.lineCount, 0);
  assert.equal(log.byteSize, 0);
  const ns = BigInt(name.slice("job_log_".length, -".json".length));
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  assert.ok(nowNs - ns < 60_000_000_000n && ns - nowNs < 60_000_000_000n);
});

Deno.test("EventLog.create() makes the file readable by the agent's user alone (0600)", async () => {
  await using dir = await tempDir();
  const previous = Deno.umask(0o000); // whatever the umask, the log is never world-readable
  try {
    await using log = await EventLog.create({ dir: dir.path });
    assert.equal((await Deno.stat(log.path)).mode! & 0o777, 0o600);
  } finally {
    Deno.umask(previous);
  }
});

Deno.test("EventLog.create() picks distinct names for logs created at once", async () => {
  await using dir = await tempDir();
  const logs = await Promise.all(
    Array.from({ length: 20 }, () => EventLog.create({ dir: dir.path })),
  );
  assert.equal(new Set(logs.map((log) => log.path)).size, 20);
  for (const log of logs) await log.remove();
});

Deno.test("EventLog.create() uses the OS temp dir by default", async () => {
  const log = await EventLog.create();
  try {
    assert.equal(log.path.slice(0, log.path.lastIndexOf("/")), osTempDir());
    assert.equal(osTempDir(), Deno.env.get("TMPDIR") || "/tmp");
  } finally {
    await log.remove();
  }
});

Deno.test("EventLog.write() puts each event type on disk byte-exact", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  for (const event of EVENTS) log.write(event);
  assert.equal(log.lineCount, 5);
  assert.equal(log.byteSize, LINES.join("").length);
  await log.flush();
  assert.equal(await Deno.readTextFile(log.path), LINES.join(""));
});

Deno.test("EventLog.write() encodes escapes, invalid bytes and non-ASCII output", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  log.write({
    event: "cmd_output",
    timestamp: T,
    output: decodeUtf8PerByte(new Uint8Array([0x96, 0x96, 0x96, 0x96, 0x96])),
  });
  log.write({ event: "cmd_output", timestamp: T, output: "<é&😀>\u2028\x1b" });
  const expected = '{"event":"cmd_output","timestamp":1700000000,' +
    '"output":"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd"}\n' +
    '{"event":"cmd_output","timestamp":1700000000,' +
    '"output":"\\u003cé\\u0026😀\\u003e\\u2028\\u001b"}\n';
  assert.equal(log.byteSize, new TextEncoder().encode(expected).length);
  await log.flush();
  assert.equal(await Deno.readTextFile(log.path), expected);
  assert.deepEqual(await log.readLines(1), [expected.slice(expected.indexOf("\n") + 1)]);
});

Deno.test("EventLog.write() reaches the disk without flush() being called", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  log.write(EVENTS[0]);
  // The write loop starts by itself; poll the file (no flush) until the line shows up.
  const deadline = performance.now() + 5000;
  while ((await Deno.stat(log.path)).size < LINES[0].length) {
    assert.ok(performance.now() < deadline, "the line never reached the disk");
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  assert.equal(await Deno.readTextFile(log.path), LINES[0]);
});

Deno.test("EventLog.write() keeps a line longer than the batch buffer whole", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  const big = "x".repeat(1_000_000);
  log.write(EVENTS[0]);
  log.write({ event: "cmd_output", timestamp: T, output: big });
  log.write(EVENTS[4]);
  const lines = await log.readLines(0);
  assert.deepEqual(lines, [
    LINES[0],
    `{"event":"cmd_output","timestamp":1700000000,"output":"${big}"}\n`,
    LINES[4],
  ]);
});

Deno.test("EventLog.readLines() stops at maxBytes but returns one line at least", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  for (const event of EVENTS) log.write(event);
  const size = (lines: string[]) => lines.join("").length;
  assert.deepEqual(
    await log.readLines(0, 10, { maxBytes: size(LINES.slice(0, 3)) }),
    LINES.slice(0, 3),
  );
  assert.deepEqual(
    await log.readLines(0, 10, { maxBytes: size(LINES.slice(0, 3)) - 1 }),
    LINES.slice(0, 2),
  );
  assert.deepEqual(await log.readLines(1, 10, { maxBytes: 1 }), LINES.slice(1, 2));
  assert.deepEqual(await log.readLines(1, 2, { maxBytes: 1e9 }), LINES.slice(1, 3));
});

Deno.test("EventLog.readLines() returns lines from an index", async (t) => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  for (const event of EVENTS) log.write(event);
  await t.step("from 0", async () => {
    assert.deepEqual(await log.readLines(0), LINES);
  });
  await t.step("from the middle", async () => {
    assert.deepEqual(await log.readLines(2), LINES.slice(2));
  });
  await t.step("from the last line", async () => {
    assert.deepEqual(await log.readLines(4), LINES.slice(4));
  });
  await t.step("at the end and past it", async () => {
    assert.deepEqual(await log.readLines(5), []);
    assert.deepEqual(await log.readLines(500), []);
  });
  await t.step("with max", async () => {
    assert.deepEqual(await log.readLines(1, 2), LINES.slice(1, 3));
    assert.deepEqual(await log.readLines(3, 10), LINES.slice(3));
    assert.deepEqual(await log.readLines(0, 0), []);
  });
  await t.step("rejects a negative or fractional index", async () => {
    await assert.rejects(() => log.readLines(-1), {
      name: "RangeError",
      message: "Cannot read job log: start must be a non-negative integer, got -1",
    });
    await assert.rejects(() => log.readLines(0, 1.5), {
      name: "RangeError",
      message: "Cannot read job log: max must be a non-negative integer, got 1.5",
    });
  });
});

Deno.test("EventLog.stream() returns the bytes of lines from an index", async (t) => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  for (const event of EVENTS) log.write(event);
  await t.step("from 0", async () => {
    assert.equal(await text(log.stream(0)), LINES.join(""));
  });
  await t.step("from the middle", async () => {
    assert.equal(await text(log.stream(3)), LINES.slice(3).join(""));
  });
  await t.step("past the end", async () => {
    assert.equal(await text(log.stream(5)), "");
    assert.equal(await text(log.stream(99)), "");
  });
  await t.step("only the lines that exist when called", async () => {
    const stream = log.stream(4);
    log.write(EVENTS[0]);
    assert.equal(await text(stream), LINES[4]);
    assert.equal(await text(log.stream(5)), LINES[0]);
  });
  await t.step("rejects a negative index", () => {
    assert.throws(() => log.stream(-2), {
      name: "RangeError",
      message: "Cannot read job log: start must be a non-negative integer, got -2",
    });
  });
});

Deno.test("EventLog.stream() can be cancelled before and while reading", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  for (let i = 0; i < 100_000; i++) log.write(numbered(i));
  await log.stream(0).cancel();
  const reader = log.stream(10).getReader();
  const first = await reader.read();
  assert.ok(!first.done && first.value.length > 0);
  assert.ok(new TextDecoder().decode(first.value).startsWith(numberedLine(10)));
  await reader.cancel();
});

Deno.test("EventLog.stream() reads a large log in large chunks", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  const output = "y".repeat(990) + "\n";
  for (let i = 0; i < 20_000; i++) log.write({ event: "cmd_output", timestamp: T, output });
  const size = log.byteSize;
  assert.ok(size > 20_000_000);
  let total = 0;
  let chunks = 0;
  for await (const chunk of log.stream(0)) {
    total += chunk.length;
    chunks++;
  }
  assert.equal(total, size);
  assert.ok(chunks <= Math.ceil(size / (64 * 1024)), `${chunks} chunks for ${size} bytes`);
});

Deno.test("EventLog readers see consistent prefixes while writes go on", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  const total = 30_000;
  let writing = true;
  const writer = (async () => {
    for (let i = 0; i < total; i++) {
      log.write(numbered(i));
      if (i % 500 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
    }
    writing = false;
  })();
  let reads = 0;
  let from = 0;
  while (writing || from < total) {
    // Streams from where the previous read stopped, like a client keeping its own count.
    const body = await text(log.stream(from));
    const lines = body.split("\n");
    assert.equal(lines.pop(), "");
    lines.forEach((line, k) => assert.equal(line + "\n", numberedLine(from + k)));
    from += lines.length;
    const page = await log.readLines(Math.max(0, from - 100), 50);
    page.forEach((line, k) => assert.equal(line, numberedLine(Math.max(0, from - 100) + k)));
    reads++;
  }
  await writer;
  assert.equal(from, total);
  assert.ok(reads > 1);
});

Deno.test("EventLog keeps the order of 200k events", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  const count = 200_000;
  for (let i = 0; i < count; i++) {
    log.write(numbered(i));
    if (i % 20_000 === 0) await Promise.resolve(); // let the write loop start mid-way
  }
  assert.equal(log.lineCount, count);
  await log.flush();
  const content = await Deno.readTextFile(log.path);
  assert.equal(content.length, log.byteSize);
  const lines = content.split("\n");
  assert.equal(lines.pop(), "");
  assert.equal(lines.length, count);
  for (let i = 0; i < count; i++) {
    if (lines[i] + "\n" !== numberedLine(i)) assert.fail(`line ${i} is ${lines[i]}`);
  }
  assert.deepEqual(await log.readLines(199_998), [numberedLine(199_998), numberedLine(199_999)]);
  assert.deepEqual(await log.readLines(123_456, 1), [numberedLine(123_456)]);
  assert.equal(
    await text(log.stream(199_999)),
    numberedLine(199_999),
  );
});

Deno.test("EventLog.subscribe() calls listeners in write() until unsubscribed", async () => {
  await using dir = await tempDir();
  const errors: Error[] = [];
  await using log = await EventLog.create({ dir: dir.path, onError: (e) => errors.push(e) });
  const seen: JobEvent[] = [];
  const unsubscribe = log.subscribe((event) => seen.push(event));
  log.subscribe(() => {
    throw new Error("listener failed");
  });
  log.write(EVENTS[0]);
  assert.deepEqual(seen, [EVENTS[0]]);
  unsubscribe();
  log.write(EVENTS[1]);
  assert.deepEqual(seen, [EVENTS[0]]);
  assert.equal(log.lineCount, 2);
  assert.deepEqual(errors.map((e) => e.message), ["listener failed", "listener failed"]);
});

Deno.test("EventLog.close() flushes, is idempotent and ignores later writes", async () => {
  await using dir = await tempDir();
  const errors: Error[] = [];
  const log = await EventLog.create({ dir: dir.path, onError: (e) => errors.push(e) });
  for (const event of EVENTS) log.write(event);
  await Promise.all([log.close(), log.close()]);
  await log.close();
  assert.equal(await Deno.readTextFile(log.path), LINES.join(""));
  log.write(EVENTS[0]);
  log.write(EVENTS[0]);
  assert.equal(log.lineCount, 5);
  assert.deepEqual(errors.map((e) => e.message), [
    `Cannot write event to job log "${log.path}": the log is closed`,
  ]);
  assert.equal(log.error, undefined);
  // A closed log can still be read.
  assert.deepEqual(await log.readLines(3), LINES.slice(3));
  assert.equal(await text(log.stream(4)), LINES[4]);
  await log.flush();
});

Deno.test("EventLog.remove() deletes the file, is idempotent and reads then fail", async () => {
  await using dir = await tempDir();
  const log = await EventLog.create({ dir: dir.path });
  for (const event of EVENTS) log.write(event);
  await Promise.all([log.remove(), log.remove()]);
  await log.remove();
  await log.close();
  assert.equal(await exists(log.path), false);
  await assert.rejects(() => log.readLines(0), (error: Error) => {
    assert.ok(error.message.startsWith(`Cannot read job log "${log.path}": `), error.message);
    assert.ok(error.cause instanceof Deno.errors.NotFound);
    return true;
  });
  await assert.rejects(() => text(log.stream(0)), /^Error: Cannot read job log/);
  await assert.rejects(() => text(log.stream(5)), /^Error: Cannot read job log/);
});

Deno.test("EventLog.remove() is fine when the file is already gone", async () => {
  await using dir = await tempDir();
  const log = await EventLog.create({ dir: dir.path });
  log.write(EVENTS[0]);
  await log.close();
  await Deno.remove(log.path);
  await log.remove();
});

Deno.test("EventLog.stream() of a file removed before the first read errors", async () => {
  await using dir = await tempDir();
  const log = await EventLog.create({ dir: dir.path });
  log.write(EVENTS[0]);
  const stream = log.stream(0);
  await log.remove();
  await assert.rejects(() => text(stream), /^Error: Cannot read job log ".*": /);
});

Deno.test("EventLog records the first disk error without throwing from write()", async () => {
  await using dir = await tempDir();
  // A child process whose file-size limit is 4 KiB gets EFBIG (SIGXFSZ ignored) from the disk.
  const code = `
    import { EventLog } from ${JSON.stringify(import.meta.resolve("../lib/engine/event_log.ts"))};
    const errors = [];
    const log = await EventLog.create({ dir: Deno.args[0], onError: (e) => errors.push(e.message) });
    for (let i = 0; i < 100; i++) log.write({ event: "cmd_output", timestamp: 1, output: "x".repeat(100) });
    const flush = await log.flush().then(() => "resolved", (e) => e.message);
    const read = await log.readLines(0).then(() => "resolved", (e) => e.message);
    let heard = 0;
    log.subscribe(() => heard++);
    log.write({ event: "job_started", timestamp: 1 });
    await log.close();
    console.log(JSON.stringify({ errors, flush, read, heard, error: log.error?.message,
      lineCount: log.lineCount, size: (await Deno.stat(log.path)).size }));
    await log.remove();
  `;
  const { code: exitCode, stdout, stderr } = await new Deno.Command("bash", {
    args: [
      "-c",
      `trap '' XFSZ; ulimit -f 4; exec "$0" eval "$1" "$2"`,
      Deno.execPath(),
      code,
      dir.path,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(exitCode, 0, new TextDecoder().decode(stderr));
  const result = JSON.parse(new TextDecoder().decode(stdout));
  const message = result.error as string;
  assert.match(message, /^Cannot write job log ".*\/job_log_\d+\.json": File too large/);
  assert.deepEqual(result, {
    errors: [message],
    flush: message,
    read: `Cannot read job log "${message.split('"')[1]}": ${message}`,
    heard: 1,
    error: message,
    lineCount: 100,
    size: 4096,
  });
});

/** Opens the log file as the default does, and writes it through `write`. */
function openWith(
  write: (file: Deno.FsFile, bytes: Uint8Array) => Promise<number>,
): (path: string) => Promise<EventLogFile> {
  return async (path) => {
    const file = await Deno.open(path, { write: true, createNew: true });
    return { write: (bytes) => write(file, bytes), close: () => file.close() };
  };
}

Deno.test("EventLog.ready() waits while more than maxPendingBytes wait for the disk", async () => {
  await using dir = await tempDir();
  // A disk that stands still until the test opens the gate.
  let entered!: () => void;
  const writing = new Promise<void>((resolve) => entered = resolve);
  let openGate!: () => void;
  const gate = new Promise<void>((resolve) => openGate = resolve);
  await using log = await EventLog.create({
    dir: dir.path,
    maxPendingBytes: 1000,
    open: openWith(async (file, bytes) => {
      entered();
      await gate;
      return await file.write(bytes);
    }),
  });
  assert.equal(log.ready(), undefined);
  const lines: string[] = [];
  for (let i = 0; lines.join("").length <= 1000; i++) {
    log.write(numbered(i));
    lines.push(numberedLine(i));
  }
  await writing;
  const bytes = new TextEncoder().encode(lines.join("")).length;
  assert.equal(log.pendingBytes, bytes);
  const ready = log.ready();
  assert.ok(ready instanceof Promise);
  const state = await Promise.race([ready.then(() => "resolved"), Promise.resolve("waiting")]);
  assert.equal(state, "waiting");
  openGate();
  await ready;
  assert.ok(log.pendingBytes <= 1000, `${log.pendingBytes} bytes still wait`);
  await log.flush();
  assert.equal(log.ready(), undefined);
  assert.equal(await Deno.readTextFile(log.path), lines.join(""));
});

Deno.test("EventLog.ready() resolves when the disk fails instead of waiting forever", async () => {
  await using dir = await tempDir();
  let fail!: () => void;
  const failed = new Promise<void>((resolve) => fail = resolve);
  await using log = await EventLog.create({
    dir: dir.path,
    maxPendingBytes: 10,
    onError: () => {},
    open: openWith(async () => {
      await failed;
      throw new Error("disk gone");
    }),
  });
  log.write(EVENTS[0]);
  const ready = log.ready();
  assert.ok(ready instanceof Promise);
  fail();
  await ready;
  assert.match(log.error?.message ?? "", /disk gone/);
});

Deno.test("EventLog slows a job's output down to a slow disk: pending bytes stay under the bound, the file holds every line", async () => {
  await using dir = await tempDir();
  const home = await makeHome();
  const size = 2_000_000;
  const maxPendingBytes = 128 * 1024;
  let mostPending = 0;
  // A slow disk: at most 4 KiB per write, one timer tick each (a few MB/s), far below what
  // `yes` prints through a PTY. (Its writes start after `log` is assigned.)
  const log: EventLog = await EventLog.create({
    dir: dir.path,
    maxPendingBytes,
    open: openWith(async (file, bytes) => {
      mostPending = Math.max(mostPending, log.pendingBytes);
      await new Promise((resolve) => setTimeout(resolve, 1));
      return await file.write(bytes.subarray(0, 4096));
    }),
  });
  const accepted: string[] = [];
  log.subscribe((event) => accepted.push(encodeEvent(event)));
  const producer = `yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c ${size}`;
  try {
    const job = Job.create({
      createExecutor,
      request: parseJobRequestJson(JSON.stringify({
        job_id: "slow-disk",
        commands: [{ directive: producer }],
      })),
      sink: log,
      logger: silentLogger,
      shellEnv: testShellEnv(home),
      selfHosted: true,
    });
    assert.equal(await job.run(), "passed");
    await log.close();
    assert.equal(await Deno.readTextFile(log.path), accepted.join(""));
  } finally {
    await log.remove();
    await Deno.remove(home, { recursive: true });
  }
  // One terminal read (64 KiB) may land on top of the bound before the reader waits.
  assert.ok(
    mostPending <= maxPendingBytes + 80 * 1024,
    `${mostPending} bytes waited for the disk (bound ${maxPendingBytes})`,
  );
  const events = accepted.map((line) => JSON.parse(line));
  let inside = false;
  let output = "";
  for (const event of events) {
    if (event.event === "cmd_started") inside = event.directive === producer;
    if (event.event === "cmd_output" && inside) output += event.output;
  }
  const line = "0123456789abcdefghijklmnopqrstuvwxyz\n";
  assert.equal(output, line.repeat(Math.ceil(size / line.length)).slice(0, size));
  assert.equal(events.at(-1).event, "job_finished");
});

Deno.test("writePlainTextLog() writes directives and output only (§6.6 example)", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  log.write({ event: "job_started", timestamp: T });
  log.write({ event: "cmd_started", timestamp: T, directive: "echo hello" });
  for (let i = 0; i < 10; i++) log.write({ event: "cmd_output", timestamp: T, output: "hello\n" });
  log.write({
    event: "cmd_finished",
    timestamp: T,
    directive: "echo hello",
    exit_code: 0,
    started_at: T,
    finished_at: T,
  });
  log.write({ event: "job_finished", timestamp: T, result: "passed" });
  const path = await writePlainTextLog(log, { dir: dir.path });
  assert.ok(path.startsWith(`${dir.path}/`) && path.endsWith(".txt"), path);
  assert.equal(await Deno.readTextFile(path), "echo hello\n" + "hello\n".repeat(10));
});

Deno.test("writePlainTextLog() writes output verbatim, invalid bytes as U+FFFD", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  log.write({ event: "cmd_started", timestamp: T, directive: 'echo "<a & b>"' });
  log.write({ event: "cmd_output", timestamp: T, output: "<a & b>\r\n\x1b[0m" });
  log.write({
    event: "cmd_output",
    timestamp: T,
    output: decodeUtf8PerByte(new Uint8Array([0x41, 0x96, 0x96, 0xef, 0xbf, 0xbd, 0x0a])),
  });
  log.write({ event: "cmd_output", timestamp: T, output: "no newline" });
  log.write({ event: "cmd_started", timestamp: T, directive: "😀\u2028" });
  const path = await writePlainTextLog(log, { dir: dir.path });
  const expected = 'echo "<a & b>"\n<a & b>\r\n\x1b[0mA\ufffd\ufffd\ufffd\nno newline😀\u2028\n';
  assert.deepEqual(await Deno.readFile(path), new TextEncoder().encode(expected));
});

Deno.test("writePlainTextLog() converts a large log across chunk boundaries", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  let expected = "";
  for (let i = 0; i < 50_000; i++) {
    if (i % 1000 === 0) {
      log.write({ event: "cmd_started", timestamp: T, directive: `step ${i}` });
      expected += `step ${i}\n`;
    }
    const output = `ü ${i} ${"z".repeat(i % 97)}\n`;
    log.write({ event: "cmd_output", timestamp: T, output });
    expected += output;
  }
  const path = await writePlainTextLog(log, { dir: dir.path });
  assert.equal(await Deno.readTextFile(path), expected);
});

Deno.test("writePlainTextLog() writes an empty file for an empty log", async () => {
  await using dir = await tempDir();
  await using log = await EventLog.create({ dir: dir.path });
  const path = await writePlainTextLog(log, { dir: dir.path });
  assert.equal((await Deno.stat(path)).size, 0);
});

Deno.test("writePlainTextLog() fails and leaves no text file when the log is gone", async () => {
  await using dir = await tempDir();
  const log = await EventLog.create({ dir: dir.path });
  log.write(EVENTS[1]);
  await log.remove();
  await assert.rejects(() => writePlainTextLog(log, { dir: dir.path }), /Cannot read job log/);
  assert.deepEqual([...Deno.readDirSync(dir.path)], []);
});

Deno.test("gzipFile() writes <path>.gz, deletes the original and round-trips", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/job_log.txt`;
  const content = new TextEncoder().encode("echo hello\n" + "hello\n".repeat(100_000) + "ü😀");
  await Deno.writeFile(path, content);
  const gz = await gzipFile(path);
  assert.equal(gz, `${path}.gz`);
  assert.equal(await exists(path), false);
  const compressed = await Deno.readFile(gz);
  assert.deepEqual([...compressed.subarray(0, 2)], [0x1f, 0x8b]);
  assert.ok(compressed.length < content.length / 10);
  const file = await Deno.open(gz, { read: true });
  const plain = await new Response(
    file.readable.pipeThrough(new DecompressionStream("gzip")),
  ).bytes();
  assert.deepEqual(plain, content);
});

Deno.test("gzipFile() writes a 0600 file and never into one someone placed at <path>.gz", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/job_log.txt`;
  await Deno.writeTextFile(path, "secret output\n");
  const previous = Deno.umask(0o000);
  try {
    const gz = await gzipFile(path);
    assert.equal((await Deno.stat(gz)).mode! & 0o777, 0o600);
    await Deno.remove(gz);
    // Another user's file (or a symlink) waiting at the name: not written through.
    await Deno.writeTextFile(path, "secret output\n");
    await Deno.writeTextFile(`${dir.path}/planted`, "");
    await Deno.symlink(`${dir.path}/planted`, gz);
    await assert.rejects(() => gzipFile(path), Deno.errors.AlreadyExists);
    assert.equal(await Deno.readTextFile(`${dir.path}/planted`), "");
    assert.equal(await Deno.readTextFile(path), "secret output\n");
  } finally {
    Deno.umask(previous);
  }
});

Deno.test("gzipFile() fails without output when the file is missing", async () => {
  await using dir = await tempDir();
  await assert.rejects(() => gzipFile(`${dir.path}/missing.txt`), Deno.errors.NotFound);
  assert.deepEqual([...Deno.readDirSync(dir.path)], []);
});
