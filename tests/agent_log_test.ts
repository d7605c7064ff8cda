import assert from "node:assert/strict";
import { createLogger, parseLogFormat } from "../lib/util/agent_log.ts";

Deno.test("createLogger() with format json writes one object a line with time, level, msg, agent, job_id", () => {
  const lines: string[] = [];
  const running: { job?: string } = {};
  const logger = createLogger({
    stdout: false,
    level: "debug",
    format: "json",
    name: () => "agent-7",
    jobId: () => running.job,
    onLine: (l) => lines.push(l),
  });
  logger.info("Starting Agent");
  running.job = "job-42";
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

/** Runs `code` (with `agentLogFromEnv` in scope) in a fresh process with `env`. */
async function withAgentLogFromEnv(code: string, env: Record<string, string>) {
  const module = new URL("../lib/util/agent_log.ts", import.meta.url).href;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `import { agentLogFromEnv } from "${module}";\n${code}`],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

const TEXT_LINE = /^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\.\d{3} : hello\n$/;

Deno.test("agentLogFromEnv() writes to $SEMAPHORE_AGENT_LOG_FILE_PATH, making its directory, and stdout", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent_log_test_" });
  try {
    const path = `${dir}/deep/er/agent.log`;
    const { stdout, stderr } = await withAgentLogFromEnv(
      'const log = agentLogFromEnv(); log.debug("not at info"); log.info("hello");',
      { SEMAPHORE_AGENT_LOG_FILE_PATH: path },
    );
    assert.equal(stderr, "");
    assert.match(stdout, TEXT_LINE);
    assert.equal(await Deno.readTextFile(path), stdout);
    assert.equal((await Deno.stat(`${dir}/deep/er`)).mode! & 0o777, 0o755);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("agentLogFromEnv() with destination stderr writes nothing else, from warn by default", async () => {
  const code = 'const log = agentLogFromEnv({ defaultLevel: "warn", destination: "stderr" });\n' +
    'log.info("quiet"); log.warn("hello");';
  const quiet = await withAgentLogFromEnv(code, { TMPDIR: "/nonexistent" });
  assert.equal(quiet.stdout, "");
  assert.match(quiet.stderr, TEXT_LINE);
  const json = await withAgentLogFromEnv(code, {
    SEMAPHORE_AGENT_LOG_LEVEL: "info",
    SEMAPHORE_AGENT_LOG_FORMAT: "json",
  });
  assert.deepEqual(json.stderr.trim().split("\n").map((l) => JSON.parse(l).msg), [
    "quiet",
    "hello",
  ]);
});

Deno.test("agentLogFromEnv() refuses a bad level, format or log directory with exit code 1", async (t) => {
  const code =
    "try { agentLogFromEnv(); } catch (e) { console.log(`${e.name} ${e.exitCode}: ${e.message}`); }";
  await t.step("level", async () => {
    const { stdout } = await withAgentLogFromEnv(code, { SEMAPHORE_AGENT_LOG_LEVEL: "loud" });
    assert.equal(stdout, "UsageError 1: Log level loud not supported\n");
  });
  await t.step("format", async () => {
    const { stdout } = await withAgentLogFromEnv(code, { SEMAPHORE_AGENT_LOG_FORMAT: "xml" });
    assert.equal(stdout, "UsageError 1: Log format xml not supported (text, json)\n");
  });
  await t.step("directory", async () => {
    const { stdout } = await withAgentLogFromEnv(code, {
      SEMAPHORE_AGENT_LOG_FILE_PATH: "/proc/self/nope/agent.log",
    });
    assert.match(
      stdout,
      /^UsageError 1: Cannot create the agent log directory \/proc\/self\/nope: /,
    );
  });
});
