import assert from "node:assert/strict";
import { createLogger, parseLogFormat } from "../lib/util/agent_log.ts";

Deno.test("createLogger() with format json writes one object a line with time, level, msg, agent, job_id", () => {
  const lines: string[] = [];
  let job: string | undefined;
  const logger = createLogger({
    stdout: false,
    level: "debug",
    format: "json",
    name: () => "agent-7",
    jobId: () => job,
    onLine: (l) => lines.push(l),
  });
  logger.info("Starting Agent");
  job = "job-42";
  logger.warn('quote " and newline\n');
  logger.raw?.('127.0.0.1 - - "GET /is_alive HTTP/1.1" 200 0');
  assert.equal(lines.length, 3);
  assert.ok(lines.every((l) => l.endsWith("}\n") && !l.slice(0, -1).includes("\n")));
  const [first, second, third] = lines.map((l) => JSON.parse(l));
  assert.deepEqual(Object.keys(first), ["time", "level", "msg", "agent"]);
  assert.match(first.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual({ ...first, time: "T" }, {
    time: "T",
    level: "info",
    msg: "Starting Agent",
    agent: "agent-7",
  });
  assert.deepEqual({ ...second, time: "T" }, {
    time: "T",
    level: "warn",
    msg: 'quote " and newline\n',
    agent: "agent-7",
    job_id: "job-42",
  });
  assert.equal(third.msg, '127.0.0.1 - - "GET /is_alive HTTP/1.1" 200 0');
});

Deno.test("createLogger() keeps the original's text lines by default", () => {
  const lines: string[] = [];
  const logger = createLogger({ stdout: false, name: () => "a1", onLine: (l) => lines.push(l) });
  logger.info("hello");
  assert.match(lines[0], /^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\.\d{3} a1 : hello\n$/);
});

Deno.test("parseLogFormat() takes text and json in any case and names anything else", () => {
  assert.equal(parseLogFormat("JSON"), "json");
  assert.equal(parseLogFormat("text"), "text");
  assert.throws(
    () => parseLogFormat("logfmt"),
    (error: Error) =>
      error instanceof RangeError &&
      error.message === "Log format logfmt not supported (text, json)",
  );
});
