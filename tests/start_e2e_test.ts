/**
 * End-to-end tests of the built binary `dist/agent start` against the fake hub
 * (tests/support/fake_hub.ts, SEMAPHORE_COMPAT.md §8.3 and §14.4), as issue 4 is judged: register,
 * several jobs, stop-job, idle shutdown, single-job shutdown, interruption with and without a
 * grace period (and the second signal of DECISIONS.md 11), token refresh, 422, and the faults
 * (hub down 30 s mid-job or as the job ends, 500 to every third request, 2 s per answer,
 * SIGTERM mid-job, a job id that does not exist). Also: configuration by flags, environment and
 * config file, hooks, a §4.6-shaped request, 2000-line batches, the flush timeout, register
 * giving up, and a hub that answers `finished-job` with the next `run-job`.
 *
 * For every job the hub's copy of the log is checked against the job's expected events (§5.7,
 * §6.1 shapes: exact keys in order, compact JSON, integer timestamps, commands paired), in order,
 * exactly once; every push request is checked against the protocol of §8.7 (`start_from` is
 * the number of events accepted so far, batches agree with the stored log, nothing after a
 * 422); the sync sequence (states, `job_result`, `interrupted_at`) is checked against §8.3; and
 * each shutdown against §8.8 (disconnect, `SEMAPHORE_AGENT_SHUTDOWN_REASON`, exit code, last
 * log line). No job process outlives the agent and no job log is left in TMPDIR.
 *
 * The agent runs with its real timings (syncs every `next_sync_after` = 200 ms, log pushes every
 * 1.5–3 s), so the scenarios, each with its own hub and agent, run in parallel as steps of one
 * test. The binary is built once by `bash compile.sh`, or reused when it is newer than every
 * source file (as tests/compile_test.ts does). HOME is an empty temporary directory.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { USER_AGENT, VERSION } from "../lib/util/version.ts";
import { FakeHub } from "./support/fake_hub.ts";
import { simplifyLogLines } from "./support/log_notation.ts";
import { AGENT, CACHE_HOME, ensureBuilt } from "./support/compiled_agent.ts";

const API = "/api/v1/self_hosted_agents";
/** Time the agent may take to shut down once the hub asked it to. */
const EXIT_TIMEOUT_MS = 60_000;
/** How long to wait for something the hub should see (generous: other tests share the CPUs). */
const WAIT_MS = 60_000;

// --- The agent process -------------------------------------------------------------------------

/** Options of {@linkcode AgentProcess.start}. */
interface AgentStartOptions {
  /** Extra command-line flags after `start`. */
  readonly flags?: readonly string[];
  /** Extra environment variables. */
  readonly env?: Readonly<Record<string, string>>;
  /** Pass `--endpoint`, `--token` and `--no-https` for the hub. @default true */
  readonly hubFlags?: boolean;
  /** Files to create in the work dir before starting (name → content). */
  readonly files?: Readonly<Record<string, string>>;
  /**
   * Written to `<work>/agent.yaml` (as JSON, which is YAML) and passed as `--config-file`;
   * `{work}` in string values becomes the work dir.
   */
  readonly config?: Readonly<Record<string, unknown>>;
  /** How the shutdown hook is configured. @default "flag" */
  readonly hook?: "flag" | "env" | "config";
}

/** How the agent ended. */
interface AgentExit {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** The agent log file (`SEMAPHORE_AGENT_LOG_FILE_PATH`). */
  readonly log: string;
  /** What the shutdown hook wrote: one reason per run. */
  readonly hookRuns: string;
}

/** `dist/agent start` as a child process with an empty HOME and its own TMPDIR. */
class AgentProcess implements AsyncDisposable {
  /** The directory holding the hook, its output, the agent log and TMPDIR. */
  readonly work: string;
  readonly home: string;
  readonly pid: number;
  readonly hookPath: string;
  readonly #child: Deno.ChildProcess;
  readonly #output: Promise<{ code: number; stderr: string }>;
  /** What the agent printed so far (its log lines go to stdout too). */
  #stdout = "";
  /** Called whenever stdout grows or the agent exits. */
  readonly #listeners = new Set<() => void>();
  #exited = false;

  private constructor(work: string, home: string, child: Deno.ChildProcess) {
    this.work = work;
    this.home = home;
    this.#child = child;
    this.pid = child.pid;
    this.hookPath = join(work, "shutdown_hook.sh");
    this.#output = this.#collect(child);
    this.#output.finally(() => {
      this.#exited = true;
      for (const listener of this.#listeners) listener();
    }).catch(() => {});
  }

  async #collect(child: Deno.ChildProcess): Promise<{ code: number; stderr: string }> {
    const readStdout = async () => {
      for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
        this.#stdout += text;
        for (const listener of this.#listeners) listener();
      }
    };
    const [status, stderr] = await Promise.all([
      child.status,
      new Response(child.stderr).text(),
      readStdout(),
    ]);
    return { code: status.code, stderr };
  }

  /** Resolves once the agent printed `text`; throws if it exits first or after `timeoutMs`. */
  async waitForOutput(text: string, timeoutMs = WAIT_MS): Promise<void> {
    let timedOut = false;
    let wake = () => {};
    const timer = setTimeout(() => {
      timedOut = true;
      wake();
    }, timeoutMs);
    const listener = () => wake();
    this.#listeners.add(listener);
    try {
      while (!this.#stdout.includes(text)) {
        if (this.#exited) throw new Error(`The agent exited without printing '${text}'`);
        if (timedOut) throw new Error(`The agent did not print '${text}' within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => wake = resolve);
      }
    } finally {
      clearTimeout(timer);
      this.#listeners.delete(listener);
    }
  }

  /** Starts `dist/agent start` with the shutdown hook and the hub's flags. */
  static async start(hub: FakeHub, options: AgentStartOptions = {}): Promise<AgentProcess> {
    await ensureBuilt();
    const home = await Deno.makeTempDir({ prefix: "start-e2e-home-" });
    const work = await Deno.makeTempDir({ prefix: "start-e2e-work-" });
    await Deno.mkdir(join(work, "tmp"));
    await Deno.writeTextFile(
      join(work, "shutdown_hook.sh"),
      `printf '%s\\n' "$SEMAPHORE_AGENT_SHUTDOWN_REASON" >> ${join(work, "hook_runs.txt")}\n`,
    );
    for (const [name, content] of Object.entries(options.files ?? {})) {
      await Deno.writeTextFile(join(work, name), content);
    }
    const hookPath = join(work, "shutdown_hook.sh");
    const hook = options.hook ?? "flag";
    const args = ["start"];
    if (options.hubFlags ?? true) {
      args.push("--endpoint", hub.endpoint, "--token", hub.registrationToken, "--no-https");
    }
    if (hook === "flag") args.push("--shutdown-hook-path", hookPath);
    if (options.config) {
      const config = JSON.parse(
        JSON.stringify(options.config),
        (_key, value) => typeof value === "string" ? value.replaceAll("{work}", work) : value,
      );
      if (hook === "config") config["shutdown-hook-path"] = hookPath;
      await Deno.writeTextFile(join(work, "agent.yaml"), JSON.stringify(config, null, 2));
      args.push("--config-file", join(work, "agent.yaml"));
    }
    args.push(...(options.flags ?? []));
    const child = new Deno.Command(AGENT, {
      args,
      cwd: work,
      clearEnv: true,
      env: {
        HOME: home,
        XDG_CACHE_HOME: CACHE_HOME,
        PATH: Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
        TMPDIR: join(work, "tmp"),
        SEMAPHORE_AGENT_LOG_FILE_PATH: join(work, "agent.log"),
        ...(hook === "env" ? { SEMAPHORE_AGENT_SHUTDOWN_HOOK_PATH: hookPath } : {}),
        ...options.env,
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new AgentProcess(work, home, child);
  }

  /** Sends a signal to the agent. */
  kill(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  /** Resolves once the agent exited; kills it and throws after `timeoutMs`. */
  async exit(timeoutMs = EXIT_TIMEOUT_MS): Promise<AgentExit> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      this.#output.then(() => false),
      new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), timeoutMs)),
    ]);
    clearTimeout(timer);
    if (timedOut) this.#child.kill("SIGKILL");
    const output = await this.#output;
    const exit: AgentExit = {
      code: output.code,
      stdout: this.#stdout,
      stderr: output.stderr,
      log: await Deno.readTextFile(join(this.work, "agent.log")).catch(() => ""),
      hookRuns: await Deno.readTextFile(join(this.work, "hook_runs.txt")).catch(() => ""),
    };
    if (timedOut) {
      throw new Error(`The agent did not exit within ${timeoutMs} ms\n${show(exit)}`);
    }
    return exit;
  }

  /** Job event logs left in TMPDIR. */
  async leftovers(): Promise<string[]> {
    const names: string[] = [];
    for await (const entry of Deno.readDir(join(this.work, "tmp"))) names.push(entry.name);
    return names;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (!this.#exited) {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    await this.#output.catch(() => undefined);
    await Deno.remove(this.work, { recursive: true });
    await Deno.remove(this.home, { recursive: true });
  }
}

function show(exit: AgentExit): string {
  const tail = exit.stdout.split("\n").slice(-80).join("\n");
  return `exit ${exit.code}\n--- stdout (tail)\n${tail}\n--- stderr\n${exit.stderr}`;
}

// --- Expected job logs (§5.7 notation) -------------------------------------------------------

/** The first events of a shell job: `job_started`, env export, file injection. */
function prologue(exported: readonly string[] = []): string[] {
  const names = [...exported].sort();
  return [
    "job_started",
    "directive: Exporting environment variables",
    ...(names.length ? [`output: ${names.map((n) => `Exporting ${n}\n`).join("")}`] : []),
    "exit: 0",
    "directive: Injecting Files",
    "exit: 0",
  ];
}

/** One command: `cmd_started`, its output (merged), `cmd_finished`. */
function command(directive: string, output = "", exitCode = 0): string[] {
  return [`directive: ${directive}`, ...(output ? [`output: ${output}`] : []), `exit: ${exitCode}`];
}

/** The second env export, before the epilogues. */
const EXPORT_RESULT = command(
  "Exporting environment variables",
  "Exporting SEMAPHORE_JOB_RESULT\n",
);

/** The key order of each event type (§6.1). */
const EVENT_KEYS: Readonly<Record<string, readonly string[]>> = {
  job_started: ["event", "timestamp"],
  cmd_started: ["event", "timestamp", "directive"],
  cmd_output: ["event", "timestamp", "output"],
  cmd_finished: ["event", "timestamp", "directive", "exit_code", "started_at", "finished_at"],
  job_finished: ["event", "timestamp", "result"],
};

type JobEventJson = Record<string, string | number>;

/**
 * Checks the shape of every event line (§6.1) and the grammar of the log: `job_started`, then
 * commands (`cmd_started`, `cmd_output`*, `cmd_finished` with the same directive), then
 * `job_finished` (unless `complete` is false: a log cut by a 422).
 */
function assertEventShapes(lines: readonly string[], since: number, complete: boolean): void {
  const now = Math.ceil(Date.now() / 1000);
  let open: string | undefined;
  let lastTimestamp = 0;
  lines.forEach((line, index) => {
    const where = `event ${index}: ${line}`;
    const event = JSON.parse(line) as JobEventJson;
    assert.equal(JSON.stringify(event), line, `not compact JSON: ${where}`);
    const keys = EVENT_KEYS[String(event.event)];
    assert.ok(keys, `unknown event: ${where}`);
    assert.deepEqual(Object.keys(event), keys, `keys of ${where}`);
    for (const key of ["timestamp", "exit_code", "started_at", "finished_at"]) {
      if (key in event) assert.ok(Number.isInteger(event[key]), `${key} of ${where}`);
    }
    const timestamp = Number(event.timestamp);
    assert.ok(timestamp >= since && timestamp <= now, `timestamp out of the test's time: ${where}`);
    assert.ok(timestamp >= lastTimestamp, `timestamp goes back: ${where}`);
    lastTimestamp = timestamp;
    switch (event.event) {
      case "job_started":
        assert.equal(index, 0, `job_started not first: ${where}`);
        break;
      case "cmd_started":
        assert.equal(open, undefined, `command started inside ${open}: ${where}`);
        open = String(event.directive);
        break;
      case "cmd_output":
        assert.notEqual(open, undefined, `output outside a command: ${where}`);
        assert.notEqual(event.output, "", `empty output: ${where}`);
        break;
      case "cmd_finished":
        assert.equal(event.directive, open, `cmd_finished of another command: ${where}`);
        assert.ok(Number(event.started_at) <= Number(event.finished_at), where);
        open = undefined;
        break;
      case "job_finished":
        assert.equal(index, lines.length - 1, `job_finished not last: ${where}`);
        assert.equal(open, undefined, `job finished inside ${open}: ${where}`);
        assert.ok(["passed", "failed", "stopped"].includes(String(event.result)), where);
        break;
    }
  });
  if (complete) {
    assert.ok(lines.length >= 2, "the log has no job_started/job_finished");
    assert.equal(JSON.parse(lines.at(-1)!).event, "job_finished", "the log does not end");
  }
}

/**
 * Checks every push request of a job against §8.7: `POST <url>?start_from=<accepted so far>`,
 * headers, 1–2000 `\n`-terminated lines that agree with the hub's final log, nothing after a
 * 422, and the accepted lines add up to the stored log (so no event twice, none skipped).
 */
function assertPushes(hub: FakeHub, jobId: string): void {
  const prefix = `/api/v1/logs/${jobId}`;
  const pushes = hub.requests.filter((r) => r.path.split("?")[0] === prefix);
  const stored = hub.jobLog(jobId).events;
  assert.deepEqual(hub.jobLog(jobId).anomalies, [], `job ${jobId}: events resent or skipped`);
  let accepted = 0;
  let rejected = false;
  for (const push of pushes) {
    const what = `job ${jobId}: push ${push.path} (HTTP ${push.status})`;
    assert.ok(!rejected, `${what} after the 422`);
    assert.equal(push.method, "POST", what);
    assert.equal(push.path, `${prefix}?start_from=${accepted}`, what);
    assert.equal(push.headers["content-type"], "text/plain", what);
    assert.equal(push.headers["user-agent"], USER_AGENT, what);
    assert.match(push.headers["authorization"] ?? "", /^Bearer \S+$/, what);
    assert.ok(push.body.endsWith("\n"), `${what}: body does not end with \\n`);
    const lines = push.body.slice(0, -1).split("\n");
    assert.ok(lines.length >= 1 && lines.length <= 2000, `${what}: ${lines.length} lines`);
    const overlap = Math.min(lines.length, stored.length - accepted);
    assert.deepEqual(
      lines.slice(0, overlap),
      stored.slice(accepted, accepted + overlap),
      `${what}: the batch disagrees with the stored log`,
    );
    if (push.status === 200) accepted += lines.length;
    else if (push.status === 422) rejected = true;
    else assert.ok([401, 500].includes(push.status), what);
  }
  assert.equal(accepted, stored.length, `job ${jobId}: accepted lines`);
}

/** The expectations of one job. */
interface ExpectedJob {
  readonly id: string;
  readonly result: "passed" | "failed" | "stopped";
  /** The whole log in §5.7 notation; `undefined` for a job that never started (no log). */
  readonly log?: readonly string[];
  /** Cut short (422, or the flush gave up): the log is a prefix of `log`, no `job_finished`. */
  readonly trimmed?: boolean;
}

/**
 * Checks a job end to end: one `finished-job` report with the result, after the last push; the
 * log exactly as expected, in order, exactly once; the pushes.
 */
function assertJob(hub: FakeHub, job: ExpectedJob, since: number): void {
  const hubJob = hub.jobs.get(job.id);
  if (hubJob) {
    assert.equal(hubJob.result, job.result, `result of job ${job.id}`);
    assert.equal(hubJob.finishedReports, 1, `finished-job reports of job ${job.id}`);
  }
  assertPushes(hub, job.id);
  const events = hub.jobLog(job.id).events;
  if (job.log === undefined) {
    assert.deepEqual(events, [], `job ${job.id} has a log`);
    return;
  }
  assertEventShapes(events, since, !job.trimmed);
  const got = simplifyLogLines(events);
  if (job.trimmed) {
    assert.ok(events.length > 0, `job ${job.id}: nothing was pushed before the 422`);
    assert.ok(!got.some((e) => e.startsWith("job_finished")), `job ${job.id}: log not trimmed`);
    // The last merged output may be cut short by the 422.
    const prefix = job.log.slice(0, got.length);
    assert.deepEqual(got.slice(0, -1), prefix.slice(0, -1), `log of job ${job.id}`);
  } else {
    assert.deepEqual(got, job.log, `log of job ${job.id}`);
  }
  // The job is reported only after its log was flushed (§5.2 teardown, §8.7 close).
  const finishedSync = hub.requests.findIndex((r) =>
    r.path === `${API}/sync` && r.status === 200 &&
    JSON.parse(r.body).state === "finished-job" && JSON.parse(r.body).job_id === job.id
  );
  const lastPush = hub.requests.findLastIndex((r) => r.path.startsWith(`/api/v1/logs/${job.id}?`));
  assert.ok(finishedSync > lastPush, `job ${job.id} was reported before its log was flushed`);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Checks the syncs against §8.3: exact bodies (four keys, in order), `job_result` only in
 * `finished-job`, and the states in order: for each job, `waiting-for-jobs`, then
 * `starting-job`, `running-job`, `stopping-job` (each optional, in this order), then
 * `finished-job` with the result; `waiting-for-jobs` again at the end at most.
 */
function assertSyncStory(
  hub: FakeHub,
  jobs: readonly ExpectedJob[],
  options: { readonly runJobAfterFinished?: boolean } = {},
): void {
  for (const request of hub.requests.filter((r) => r.path === `${API}/sync`)) {
    assert.deepEqual(
      Object.keys(JSON.parse(request.body)),
      ["state", "job_id", "job_result", "interrupted_at"],
      request.body,
    );
  }
  const story: string[] = [];
  for (const sync of hub.syncs) {
    let line: string;
    if (sync.state === "waiting-for-jobs") {
      assert.equal(sync.job_id, "", JSON.stringify(sync));
      line = "waiting-for-jobs";
    } else {
      line = `${sync.state} ${sync.job_id}`;
    }
    if (sync.state === "finished-job") line += ` ${sync.job_result}`;
    else assert.equal(sync.job_result, "", JSON.stringify(sync));
    if (story.at(-1) !== line) story.push(line);
  }
  let pattern = "";
  for (const [index, job] of jobs.entries()) {
    const id = escapeRegExp(job.id);
    // After `finished-job`, a hub may answer `run-job` at once (no `waiting-for-jobs`).
    pattern += index > 0 && options.runJobAfterFinished
      ? "(waiting-for-jobs\n)?"
      : "waiting-for-jobs\n";
    pattern += `(starting-job ${id}\n)?(running-job ${id}\n)?` +
      `(stopping-job ${id}\n)?finished-job ${id} ${job.result}\n`;
  }
  pattern += "(waiting-for-jobs\n)?";
  assert.match(story.join("\n") + "\n", new RegExp(`^${pattern}$`), "sync states");
}

/**
 * Checks `interrupted_at`: 0 in every sync, or (after a signal at `signalSeconds`) 0 until the
 * signal and then one value, the signal's time.
 */
function assertInterruptedAt(hub: FakeHub, signalSeconds?: number): void {
  const values = hub.syncs.map((s) => Number(s.interrupted_at));
  if (signalSeconds === undefined) {
    assert.ok(values.every((v) => v === 0), `interrupted_at: ${values}`);
    return;
  }
  const first = values.findIndex((v) => v !== 0);
  assert.ok(first >= 0, "no sync reported the interruption");
  const at = values[first];
  assert.ok(Math.abs(at - signalSeconds) <= 1, `interrupted_at ${at}, signal at ${signalSeconds}`);
  assert.ok(values.slice(0, first).every((v) => v === 0), `interrupted_at: ${values}`);
  assert.ok(values.slice(first).every((v) => v === at), `interrupted_at: ${values}`);
}

/** Options of {@linkcode assertShutdown}. */
interface ShutdownExpectations {
  /** `SEMAPHORE_AGENT_SHUTDOWN_REASON`. */
  readonly reason: string;
  /** The hub's `shutdown_reason`, or `undefined` when the agent shut down by itself. */
  readonly hubReason?: string;
  /** @default 0 */
  readonly code?: number;
  /** HTTP statuses the hub may have answered. @default [200] */
  readonly statuses?: readonly number[];
}

/**
 * Checks a shutdown (§8.8): exit code, one disconnect, the hook ran once with the reason, the
 * last log line; plus the agent's manners: User-Agent and tokens on every request, no job log
 * left behind, nothing on stderr.
 */
async function assertShutdown(
  hub: FakeHub,
  agent: AgentProcess,
  exit: AgentExit,
  expected: ShutdownExpectations,
): Promise<void> {
  assert.equal(exit.code, expected.code ?? 0, show(exit));
  assert.equal(exit.stderr, "", show(exit));
  assert.equal(exit.hookRuns, `${expected.reason}\n`, show(exit));
  const lastLine = `: Agent shutting down due to: ${expected.reason}\n`;
  assert.ok(
    exit.log.endsWith(lastLine),
    `agent log does not end with '${lastLine}'\n${show(exit)}`,
  );
  assert.ok(exit.stdout.endsWith(lastLine), show(exit));
  if (expected.hubReason !== undefined) {
    assert.deepEqual(hub.shutdowns, [expected.hubReason]);
    assert.ok(
      exit.log.includes(`: Agent shutdown requested by Semaphore due to: ${expected.hubReason}\n`),
      show(exit),
    );
  }
  assert.ok(hub.disconnected, "the agent did not disconnect");
  const disconnects = hub.requests.filter((r) => r.path === `${API}/disconnect`);
  assert.equal(disconnects.filter((r) => r.status === 200).length, 1, "successful disconnects");
  assert.equal(disconnects.at(-1)!.body, "", "disconnect body");
  const statuses = expected.statuses ?? [200];
  for (const request of hub.requests) {
    const what = `${request.method} ${request.path} (HTTP ${request.status})`;
    assert.ok(statuses.includes(request.status), `unexpected ${what}`);
    assert.equal(request.headers["user-agent"], USER_AGENT, what);
    if (request.path.startsWith(API)) {
      const token = request.path === `${API}/register` ? hub.registrationToken : "token";
      assert.equal(request.headers["authorization"], `Token ${token}`, what);
      assert.equal(request.headers["content-type"], undefined, what);
    }
  }
  assert.deepEqual(await agent.leftovers(), [], "files left in TMPDIR");
}

/** A `sleep` only this scenario runs, so that a leftover process can be found. */
function uniqueSleep(): string {
  return `sleep 60.${String(Math.floor(Math.random() * 1e6)).padStart(6, "0")}`;
}

/** Fails if a process runs `sleepCommand` (DECISIONS.md 4, 18). */
async function assertNoProcess(sleepCommand: string): Promise<void> {
  const wanted = sleepCommand.replace(" ", "\0");
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    assert.ok(!cmdline.startsWith(`${wanted}\0`), `'${sleepCommand}' still runs (${entry.name})`);
  }
}

/** Resolves once the hub has the job's `cmd_started` for `directive` (so it surely runs). */
function waitForCommand(
  hub: FakeHub,
  jobId: string,
  directive: string,
  timeoutMs = WAIT_MS,
): Promise<void> {
  const needle = `"directive":${JSON.stringify(directive)}`;
  return hub.waitFor(
    `job ${jobId} running '${directive}'`,
    () => hub.jobLog(jobId).events.some((l) => l.includes('"cmd_started"') && l.includes(needle)),
    timeoutMs,
  );
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** A command printing `line 1` .. `line <count>`, `pause` seconds apart. */
function counting(count: number, pause: number): string {
  return `for i in $(seq 1 ${count}); do echo "line $i"; sleep ${pause}; done`;
}

function countingOutput(count: number): string {
  return Array.from({ length: count }, (_, i) => `line ${i + 1}\n`).join("");
}

// --- Scenarios -------------------------------------------------------------------------------

/**
 * Register (exact body), six jobs in a row (a §4.6-shaped request with files, an alias and
 * epilogues; passed with job and host env vars; failed with epilogues; stopped by stop-job;
 * exit 130 marked passed; stopped by a shutdown request).
 */
async function severalJobsThenShutdownWhileRunning(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  const sleepOne = uniqueSleep();
  const sleepTwo = uniqueSleep();
  const full = `full-${crypto.randomUUID()}`;
  const b64 = (text: string) => btoa(text);
  hub.assignJob({ // shaped like the §4.6 example, for the shell executor
    id: full,
    commands: [],
    envVars: { SEMAPHORE_JOB_ID: full, A: "hello\n" },
    extra: {
      files: [
        { path: "test.txt", content: b64("hello\n"), mode: "0644" },
        { path: "~/deep/b.txt", content: b64("secret\n"), mode: "0600" },
      ],
      commands: [
        { directive: "echo Hello World", alias: "Display Hello World" },
        { directive: "cat $HOME/test.txt $HOME/deep/b.txt" },
        { directive: "stat -c %a $HOME/deep/b.txt" },
      ],
      epilogue_always_commands: [{ directive: "echo Hello Epilogue $SEMAPHORE_JOB_RESULT" }],
      epilogue_on_pass_commands: [{ directive: "echo passed" }],
      epilogue_on_fail_commands: [{ directive: "echo failed" }],
    },
  });
  const passed = hub.assignJob({
    commands: ["echo -n $A", "echo -n $B", "echo -n $C", "echo $HOST_VAR"],
    envVars: { B: "VALUE_B", A: "VALUE_A" },
  });
  const failed = hub.assignJob({
    commands: ["echo before", "false", "echo never"],
    epilogueAlways: ["echo always $SEMAPHORE_JOB_RESULT"],
    extra: {
      epilogue_on_pass_commands: [{ directive: "echo on-pass" }],
      epilogue_on_fail_commands: [{ directive: "echo on-fail" }],
    },
  });
  const stopped = hub.assignJob({
    commands: ["echo started", sleepOne, "echo never"],
    epilogueAlways: ["echo never-epilogue"],
  });
  const exit130 = hub.assignJob({
    commands: ["export SEMAPHORE_JOB_RESULT=passed", "echo 'exit 130' | sh", "echo never"],
    epilogueAlways: ["echo never-epilogue"],
  });
  const lastJob = hub.assignJob({ commands: ["echo started", sleepTwo] });
  await using agent = await AgentProcess.start(hub, {
    flags: ["--name", "e2e-several-jobs", "--env-vars", "HOST_VAR=from-host"],
  });

  assert.equal(await hub.waitUntilFinishedJob(failed, WAIT_MS), "failed");
  await waitForCommand(hub, stopped, sleepOne);
  hub.stopJob(stopped);
  await waitForCommand(hub, lastJob, sleepTwo);
  hub.scheduleShutdown();
  const exit = await agent.exit();

  await assertShutdown(hub, agent, exit, { reason: "REQUESTED", hubReason: "requested" });
  assert.deepEqual(hub.registrations, [{
    name: "e2e-several-jobs",
    version: VERSION,
    pid: agent.pid,
    os: hub.registrations[0].os,
    arch: Deno.build.arch === "x86_64" ? "x86_64" : Deno.build.arch,
    hostname: Deno.hostname(),
    single_job: false,
    idle_timeout: 0,
    interruption_grace_period: 0,
    job_id: "",
  }]);
  assert.equal(
    hub.requests[0].body,
    JSON.stringify(hub.registrations[0]),
    "register body: keys in §8.2 order",
  );
  const jobs: ExpectedJob[] = [
    {
      id: full,
      result: "passed",
      log: [
        "job_started",
        ...command(
          "Exporting environment variables",
          "Exporting A\nExporting HOST_VAR\nExporting SEMAPHORE_JOB_ID\n",
        ),
        ...command(
          "Injecting Files",
          `Injecting ${agent.home}/test.txt with file mode 0644\n` +
            `Injecting ${agent.home}/deep/b.txt with file mode 0600\n`,
        ),
        ...command("Display Hello World", "Running: echo Hello World\nHello World\n"),
        ...command("cat $HOME/test.txt $HOME/deep/b.txt", "hello\nsecret\n"),
        ...command("stat -c %a $HOME/deep/b.txt", "600\n"),
        ...EXPORT_RESULT,
        ...command("echo Hello Epilogue $SEMAPHORE_JOB_RESULT", "Hello Epilogue passed\n"),
        ...command("echo passed", "passed\n"),
        "job_finished: passed",
      ],
    },
    {
      id: passed,
      result: "passed",
      log: [
        ...prologue(["A", "B", "HOST_VAR"]),
        ...command("echo -n $A", "VALUE_A"),
        ...command("echo -n $B", "VALUE_B"),
        ...command("echo -n $C"),
        ...command("echo $HOST_VAR", "from-host\n"),
        ...EXPORT_RESULT,
        "job_finished: passed",
      ],
    },
    {
      id: failed,
      result: "failed",
      log: [
        ...prologue(["HOST_VAR"]),
        ...command("echo before", "before\n"),
        ...command("false", "", 1),
        ...EXPORT_RESULT,
        ...command("echo always $SEMAPHORE_JOB_RESULT", "always failed\n"),
        ...command("echo on-fail", "on-fail\n"),
        "job_finished: failed",
      ],
    },
    {
      id: stopped,
      result: "stopped",
      log: [
        ...prologue(["HOST_VAR"]),
        ...command("echo started", "started\n"),
        ...command(sleepOne, "", 1),
        "job_finished: stopped",
      ],
    },
    {
      id: exit130,
      result: "passed",
      log: [
        ...prologue(["HOST_VAR"]),
        ...command("export SEMAPHORE_JOB_RESULT=passed"),
        ...command("echo 'exit 130' | sh", "", 130),
        ...command(
          "Checking job result",
          "SEMAPHORE_JOB_RESULT=passed - stopping job and marking it as passed",
        ),
        "job_finished: passed",
      ],
    },
    {
      id: lastJob,
      result: "stopped",
      log: [
        ...prologue(["HOST_VAR"]),
        ...command("echo started", "started\n"),
        ...command(sleepTwo, "", 1),
        "job_finished: stopped",
      ],
    },
  ];
  for (const job of jobs) assertJob(hub, job, since);
  assertSyncStory(hub, jobs);
  assertInterruptedAt(hub);
  for (const id of [stopped, lastJob]) {
    assert.ok(
      hub.syncAnswers.some((a) => a.action === "stop-job" && a.job_id === id),
      `no stop-job for ${id}`,
    );
  }
  assert.ok(exit.log.includes(`: SYNC response (action: run-job, job: ${passed})\n`), show(exit));
  assert.ok(
    exit.log.includes(`: SYNC request (state: finished-job, job: ${failed}, result: failed)\n`),
    show(exit),
  );
  await assertNoProcess(sleepOne);
  await assertNoProcess(sleepTwo);
}

/**
 * Configuration from `SEMAPHORE_AGENT_*` variables (random name, whitespace-separated env vars,
 * the shutdown hook), register retried, one job (which does not see the agent's token), then
 * the idle shutdown.
 */
async function idleShutdownConfiguredByEnv(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  hub.rejectRegisterAttempts(2);
  const directive = 'echo "$HOST_A-$HOST_B token=[$SEMAPHORE_AGENT_TOKEN]"';
  const jobId = hub.assignJob({ commands: [directive] });
  await using agent = await AgentProcess.start(hub, {
    hubFlags: false,
    hook: "env",
    env: {
      SEMAPHORE_AGENT_ENDPOINT: hub.endpoint,
      SEMAPHORE_AGENT_TOKEN: hub.registrationToken,
      SEMAPHORE_AGENT_NO_HTTPS: "true",
      SEMAPHORE_AGENT_DISCONNECT_AFTER_IDLE_TIMEOUT: "2",
      SEMAPHORE_AGENT_ENV_VARS: "HOST_A=1 HOST_B=2",
    },
  });
  await hub.waitUntilFinishedJob(jobId, WAIT_MS);
  const finishedAt = performance.now();
  const exit = await agent.exit();
  const idleSeconds = (performance.now() - finishedAt) / 1000;

  await assertShutdown(hub, agent, exit, {
    reason: "IDLE",
    hubReason: "idle",
    statuses: [200, 500],
  });
  assert.ok(idleSeconds >= 1.9, `shut down after ${idleSeconds.toFixed(1)} s idle`);
  assert.deepEqual(
    hub.requests.filter((r) => r.status === 500).map((r) => r.path),
    [`${API}/register`, `${API}/register`],
  );
  assert.equal(hub.registrations.length, 3, "register attempts");
  const name = String(hub.registrations[2].name);
  assert.match(name, /^[A-Za-z0-9_-]{20}$/, "random agent name");
  assert.equal(hub.registrations[2].idle_timeout, 2);
  assert.ok(exit.log.includes(": Agent name was not assigned - using a random one.\n"));
  assert.ok(exit.log.includes(`: Successfully registered agent. Name: ${name}\n`), show(exit));
  const job: ExpectedJob = {
    id: jobId,
    result: "passed",
    log: [
      ...prologue(["HOST_A", "HOST_B"]),
      ...command(directive, "1-2 token=[]\n"),
      ...EXPORT_RESULT,
      "job_finished: passed",
    ],
  };
  assertJob(hub, job, since);
  assertSyncStory(hub, [job]);
  assertInterruptedAt(hub);
}

/**
 * `--config-file` (YAML) with `disconnect-after-job`, `job-id`, pre- and post-job hooks and the
 * shutdown hook; a flag wins over the file; the agent runs that one job, the hub shuts it down
 * (`JOB_FINISHED`) and the next queued job is never fetched.
 */
async function singleJobFromConfigFile(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  const jobId = hub.assignJob({ id: `single-${crypto.randomUUID()}`, commands: ["echo single"] });
  const other = hub.assignJob({ commands: ["echo other"] });
  await using agent = await AgentProcess.start(hub, {
    hubFlags: false,
    hook: "config",
    files: {
      "pre_job_hook.sh": "echo -n 'hello from pre-job hook'\n",
      "post_job_hook.sh": "echo post-job-hook\n",
    },
    config: {
      "endpoint": hub.endpoint,
      "token": hub.registrationToken,
      "no-https": true,
      "name": "e2e-name-from-the-file",
      "disconnect-after-job": true,
      "job-id": jobId,
      "pre-job-hook-path": "{work}/pre_job_hook.sh",
      "post-job-hook-path": "{work}/post_job_hook.sh",
      "env-vars": [],
    },
    flags: ["--name", "e2e-name-from-the-flag"],
  });
  const exit = await agent.exit();

  await assertShutdown(hub, agent, exit, { reason: "JOB_FINISHED", hubReason: "job-finished" });
  assert.equal(hub.registrations.length, 1);
  assert.equal(hub.registrations[0].name, "e2e-name-from-the-flag");
  assert.equal(hub.registrations[0].single_job, true);
  assert.equal(hub.registrations[0].job_id, jobId);
  assert.ok(!hub.requests.some((r) => r.path.includes(other)), "the other job was fetched");
  const job: ExpectedJob = {
    id: jobId,
    result: "passed",
    log: [
      ...prologue(),
      ...command(
        "Running the pre-job hook configured in the agent",
        `Running: bash ${agent.work}/pre_job_hook.sh\n` +
          "Warning: The agent is configured to proceed with the job even if the pre-job hook fails.\n" +
          "hello from pre-job hook",
      ),
      ...command("echo single", "single\n"),
      ...EXPORT_RESULT,
      ...command(
        "Running the post-job hook configured in the agent",
        `Running: bash ${agent.work}/post_job_hook.sh\npost-job-hook\n`,
      ),
      "job_finished: passed",
    ],
  };
  assertJob(hub, job, since);
  assertSyncStory(hub, [job]);
  assertInterruptedAt(hub);
}

/** A job printing `started`, then sleeping until it is stopped. */
function sleepingJob(hub: FakeHub): { readonly id: string; readonly sleep: string } {
  const sleep = uniqueSleep();
  const id = hub.assignJob({
    commands: ["echo started", sleep, "echo never"],
    epilogueAlways: ["echo never-epilogue"],
  });
  return { id, sleep };
}

/** The log of {@linkcode sleepingJob} stopped during the sleep. */
function stoppedSleepLog(sleep: string): string[] {
  return [
    ...prologue(),
    ...command("echo started", "started\n"),
    ...command(sleep, "", 1),
    "job_finished: stopped",
  ];
}

/**
 * SIGTERM mid-job, no grace period (§8.9): `interrupted_at` reported at once, the hub answers
 * stop-job, the job is stopped and reported, then shutdown `interrupted` (`INTERRUPTED`, exit 0).
 */
async function sigtermWithoutGracePeriod(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  const { id, sleep } = sleepingJob(hub);
  await using agent = await AgentProcess.start(hub);
  await waitForCommand(hub, id, sleep);
  const signalAt = nowSeconds();
  agent.kill("SIGTERM");
  const exit = await agent.exit();

  await assertShutdown(hub, agent, exit, { reason: "INTERRUPTED", hubReason: "interrupted" });
  assert.ok(exit.log.includes(": Termination signal received\n"), show(exit));
  const job: ExpectedJob = { id, result: "stopped", log: stoppedSleepLog(sleep) };
  assertJob(hub, job, since);
  assertSyncStory(hub, [job]);
  assertInterruptedAt(hub, signalAt);
  assert.ok(hub.syncAnswers.some((a) => a.action === "stop-job" && a.job_id === id));
  await assertNoProcess(sleep);
}

/**
 * SIGTERM mid-job with a 30 s grace period: the job runs to its end (no stop-job), is reported
 * `passed`, then shutdown `interrupted`.
 */
async function sigtermWithinGracePeriod(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  const id = hub.assignJob({ commands: ["echo started", "sleep 5", "echo after-the-signal"] });
  await using agent = await AgentProcess.start(hub, {
    flags: ["--interruption-grace-period", "30"],
  });
  await waitForCommand(hub, id, "sleep 5");
  const signalAt = nowSeconds();
  agent.kill("SIGTERM");
  const exit = await agent.exit();

  await assertShutdown(hub, agent, exit, { reason: "INTERRUPTED", hubReason: "interrupted" });
  assert.equal(hub.registrations[0].interruption_grace_period, 30);
  const job: ExpectedJob = {
    id,
    result: "passed",
    log: [
      ...prologue(),
      ...command("echo started", "started\n"),
      ...command("sleep 5"),
      ...command("echo after-the-signal", "after-the-signal\n"),
      ...EXPORT_RESULT,
      "job_finished: passed",
    ],
  };
  assertJob(hub, job, since);
  assertSyncStory(hub, [job]);
  assertInterruptedAt(hub, signalAt);
  assert.ok(!hub.syncAnswers.some((a) => a.action === "stop-job"), "stop-job within grace");
}

/**
 * SIGINT mid-job with a 2 s grace period and a job that would take a minute: the hub answers
 * stop-job once the grace period is over, the job is `stopped`, then shutdown `interrupted`.
 */
async function sigtermGracePeriodRunsOut(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  const { id, sleep } = sleepingJob(hub);
  await using agent = await AgentProcess.start(hub, {
    flags: ["--interruption-grace-period", "2"],
  });
  await waitForCommand(hub, id, sleep);
  const signalAt = nowSeconds();
  const signalled = performance.now();
  agent.kill("SIGINT");
  await hub.waitFor("stop-job", () => hub.syncAnswers.some((a) => a.action === "stop-job"));
  const graceSeconds = (performance.now() - signalled) / 1000;
  const exit = await agent.exit();

  await assertShutdown(hub, agent, exit, { reason: "INTERRUPTED", hubReason: "interrupted" });
  assert.ok(graceSeconds >= 1.9, `stopped ${graceSeconds.toFixed(1)} s after the signal`);
  const job: ExpectedJob = { id, result: "stopped", log: stoppedSleepLog(sleep) };
  assertJob(hub, job, since);
  assertSyncStory(hub, [job]);
  assertInterruptedAt(hub, signalAt);
  await assertNoProcess(sleep);
}

/**
 * DECISIONS.md 11: a second SIGTERM (grace period 600 s) stops the job at once, reports
 * `finished-job`/`stopped`, disconnects, runs the hook with `INTERRUPTED` and exits 0.
 */
async function secondSigterm(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  const { id, sleep } = sleepingJob(hub);
  await using agent = await AgentProcess.start(hub, {
    flags: ["--interruption-grace-period", "600"],
  });
  await waitForCommand(hub, id, sleep);
  const signalAt = nowSeconds();
  agent.kill("SIGTERM");
  await hub.waitFor("interrupted sync", () => hub.interruptedAt > 0);
  agent.kill("SIGTERM");
  const exit = await agent.exit(20_000);

  await assertShutdown(hub, agent, exit, { reason: "INTERRUPTED" });
  assert.ok(!hub.syncAnswers.some((a) => a.action === "stop-job"), "the hub stopped the job");
  const job: ExpectedJob = { id, result: "stopped", log: stoppedSleepLog(sleep) };
  assertJob(hub, job, since);
  assertSyncStory(hub, [job]);
  assertInterruptedAt(hub, signalAt);
  await assertNoProcess(sleep);
}

/**
 * The log sink answers 401 to the job's token: the agent refreshes it (`POST /refresh`, access
 * token) and pushes with the new one, losing nothing. Then SIGTERM while idle: shutdown
 * `interrupted` without a job.
 */
async function tokenRefreshThenSigtermWhileIdle(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  const id = hub.assignJob({ commands: [counting(8, 1)], logToken: "expired-token" });
  await using agent = await AgentProcess.start(hub);
  await hub.waitUntilFinishedJob(id, WAIT_MS);
  await hub.waitFor("idle sync", () => hub.syncs.at(-1)?.state === "waiting-for-jobs");
  const signalAt = nowSeconds();
  agent.kill("SIGTERM");
  const exit = await agent.exit();

  await assertShutdown(hub, agent, exit, {
    reason: "INTERRUPTED",
    hubReason: "interrupted",
    statuses: [200, 401],
  });
  const job: ExpectedJob = {
    id,
    result: "passed",
    log: [
      ...prologue(),
      ...command(counting(8, 1), countingOutput(8)),
      ...EXPORT_RESULT,
      "job_finished: passed",
    ],
  };
  assertJob(hub, job, since);
  assertSyncStory(hub, [job]);
  assertInterruptedAt(hub, signalAt);
  const pushes = hub.requests.filter((r) => r.path.startsWith(`/api/v1/logs/${id}?`));
  assert.equal(pushes[0].status, 401);
  assert.equal(pushes[0].headers["authorization"], "Bearer expired-token");
  assert.ok(pushes.length >= 3, "pushes before and after the refresh");
  assert.ok(
    pushes.slice(1).every((r) =>
      r.status === 200 && r.headers.authorization === "Bearer new-token"
    ),
    pushes.map((r) => `${r.status} ${r.headers.authorization}`).join(", "),
  );
  const refreshes = hub.requests.filter((r) => r.path === `${API}/refresh`);
  assert.equal(refreshes.length, 1);
  assert.equal(refreshes[0].method, "POST");
  assert.equal(refreshes[0].body, "");
  assert.ok(exit.log.includes(": Refreshing token for current job logs...\n"), show(exit));
  assert.ok(exit.log.includes(": Successfully refreshed token for current job logs.\n"));
}

/**
 * The log sink answers 422 once it holds 3 events: the agent stops pushing for good (one 422,
 * nothing after it), the stored log is the job's log cut short, the job is still reported
 * `passed`, and with `--upload-job-logs when-trimmed` the upload is attempted.
 */
async function logSink422(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  hub.setMaxLogEvents(3);
  const id = hub.assignJob({ commands: ["echo one", "sleep 4", "echo two"] });
  await using agent = await AgentProcess.start(hub, {
    flags: ["--disconnect-after-job", "--upload-job-logs", "when-trimmed"],
  });
  const exit = await agent.exit();

  await assertShutdown(hub, agent, exit, {
    reason: "JOB_FINISHED",
    hubReason: "job-finished",
    statuses: [200, 422],
  });
  const job: ExpectedJob = {
    id,
    result: "passed",
    trimmed: true,
    log: [
      ...prologue(),
      ...command("echo one", "one\n"),
      ...command("sleep 4"),
      ...command("echo two", "two\n"),
      ...EXPORT_RESULT,
      "job_finished: passed",
    ],
  };
  assertJob(hub, job, since);
  assertSyncStory(hub, [job]);
  assert.equal(hub.requests.filter((r) => r.status === 422).length, 1);
  assert.ok(exit.log.includes(": no more space available for logs - stopping\n"), show(exit));
  assert.ok(exit.log.includes("SEMAPHORE_ARTIFACT_TOKEN is not set"), show(exit));
}

/** The log of a job running `counting(count, pause)` then `echo end`. */
function countingLog(count: number, pause: number): string[] {
  return [
    ...prologue(),
    ...command(counting(count, pause), countingOutput(count)),
    ...command("echo end", "end\n"),
    ...EXPORT_RESULT,
    "job_finished: passed",
  ];
}

/**
 * Fault: the hub goes down for 30 s in the middle of a 35 s job (connections refused). Syncs
 * and pushes fail and are retried; once it is back, the whole log arrives, exactly once, and
 * the job is reported.
 */
async function hubDownMidJob(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  const id = hub.assignJob({ commands: [counting(70, 0.5), "echo end"] });
  await using agent = await AgentProcess.start(hub, { flags: ["--disconnect-after-job"] });
  await hub.waitUntilLogEvents(id, 8, WAIT_MS);
  await hub.goDown();
  await new Promise((resolve) => setTimeout(resolve, 30_000)); // the outage itself
  const stillRunning = hub.jobs.get(id)!.state !== "finished";
  await hub.comeUp();
  const exit = await agent.exit(90_000);

  await assertShutdown(hub, agent, exit, { reason: "JOB_FINISHED", hubReason: "job-finished" });
  assert.ok(stillRunning, "the job had ended before the hub came back");
  const job: ExpectedJob = { id, result: "passed", log: countingLog(70, 0.5) };
  assertJob(hub, job, since);
  assertSyncStory(hub, [job]);
  assert.ok(exit.log.includes(": [SYNC ERR] Failed to sync with API: "), show(exit));
  assert.ok(exit.log.includes(": Error pushing logs: "), show(exit));
}

/**
 * Fault: the hub goes down for 30 s and the job ends meanwhile. The log's flush (default
 * timeout 60 s) outlasts the outage: once the hub is back, the rest of the log arrives, then
 * the job is reported.
 */
async function hubDownAsTheJobEnds(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  const id = hub.assignJob({ commands: ["echo one", "sleep 6", "echo two"] });
  await using agent = await AgentProcess.start(hub, { flags: ["--disconnect-after-job"] });
  await hub.waitUntilLogEvents(id, 1, WAIT_MS);
  await hub.goDown();
  const endedEarly = hub.eventNames(id).includes("job_finished");
  await new Promise((resolve) => setTimeout(resolve, 30_000)); // the outage itself
  await hub.comeUp();
  const exit = await agent.exit(90_000);
  assert.ok(!endedEarly, "the job ended before the hub went down");

  await assertShutdown(hub, agent, exit, { reason: "JOB_FINISHED", hubReason: "job-finished" });
  const job: ExpectedJob = {
    id,
    result: "passed",
    log: [
      ...prologue(),
      ...command("echo one", "one\n"),
      ...command("sleep 6"),
      ...command("echo two", "two\n"),
      ...EXPORT_RESULT,
      "job_finished: passed",
    ],
  };
  assertJob(hub, job, since);
  assertSyncStory(hub, [job]);
  assert.ok(!exit.log.includes("giving up"), show(exit));
}

/**
 * The hub is down longer than the flush timeout (`SEMAPHORE_AGENT_LOGS_FLUSH_TIMEOUT=2`) when
 * the job ends: the agent gives up on the rest of the log (logged), pushes nothing more, and
 * reports the job once the hub is back.
 */
async function hubDownLongerThanTheFlushTimeout(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  const id = hub.assignJob({ commands: ["echo one", "sleep 6", "echo two"] });
  await using agent = await AgentProcess.start(hub, {
    flags: ["--disconnect-after-job"],
    env: { SEMAPHORE_AGENT_LOGS_FLUSH_TIMEOUT: "2" },
  });
  await hub.waitUntilLogEvents(id, 1, WAIT_MS);
  await hub.goDown();
  const endedEarly = hub.eventNames(id).includes("job_finished");
  // The job ends while the hub is down, and the flush gives up after 2 s.
  await agent.waitForOutput(`: Could not push all logs to ${hub.logUrl(id)} - giving up\n`);
  await hub.comeUp();
  const exit = await agent.exit();

  await assertShutdown(hub, agent, exit, { reason: "JOB_FINISHED", hubReason: "job-finished" });
  assert.ok(!endedEarly, "the job ended before the hub went down");
  const job: ExpectedJob = {
    id,
    result: "passed",
    trimmed: true, // cut short: the flush gave up
    log: [
      ...prologue(),
      ...command("echo one", "one\n"),
      ...command("sleep 6"),
      ...command("echo two", "two\n"),
      ...EXPORT_RESULT,
      "job_finished: passed",
    ],
  };
  assertJob(hub, job, since);
  assertSyncStory(hub, [job]);
  assert.ok(
    exit.log.includes(`: Could not push all logs to ${hub.logUrl(id)} - giving up`),
    show(exit),
  );
}

/**
 * A hub that answers `finished-job` with `run-job` for the next job (allowed by the action
 * table of §8.3): the agent takes the job at once; each job is reported once.
 */
async function runJobRightAfterFinishedJob(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200, runJobAfterFinished: true });
  const ids = [1, 2, 3].map((n) => hub.assignJob({ commands: [`echo job ${n}`] }));
  await using agent = await AgentProcess.start(hub);
  await hub.waitUntilFinishedJob(ids[2], WAIT_MS);
  hub.scheduleShutdown();
  const exit = await agent.exit();

  await assertShutdown(hub, agent, exit, { reason: "REQUESTED", hubReason: "requested" });
  const jobs: ExpectedJob[] = ids.map((id, i) => ({
    id,
    result: "passed",
    log: [
      ...prologue(),
      ...command(`echo job ${i + 1}`, `job ${i + 1}\n`),
      ...EXPORT_RESULT,
      "job_finished: passed",
    ],
  }));
  for (const job of jobs) assertJob(hub, job, since);
  assertSyncStory(hub, jobs, { runJobAfterFinished: true });
  for (const [index, id] of ids.slice(0, 2).entries()) {
    const at = hub.syncs.findIndex((s) => s.state === "finished-job" && s.job_id === id);
    assert.deepEqual(hub.syncAnswers[at], {
      action: "run-job",
      job_id: ids[index + 1],
      next_sync_after: 200,
    });
    assert.notEqual(hub.syncs[at + 1].state, "waiting-for-jobs", "the agent waited");
  }
}

/**
 * A job with 6000+ events (3000 commands): pushed in batches of at most 2000 lines, the full
 * ones exactly 2000, `start_from` contiguous. The hub holds the pushes until the last command
 * ran, so the events pile up however fast this machine runs the commands.
 */
async function manyEvents(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  const count = 3000;
  const markerDir = await Deno.makeTempDir({ prefix: "start_e2e_marker_" });
  const marker = `${markerDir}/commands-done`;
  using watcher = Deno.watchFs(markerDir);
  const release = hub.holdLogPushes();
  const commands = [...Array.from({ length: count }, () => ":"), `touch ${marker}`];
  const id = hub.assignJob({ commands });
  await using agent = await AgentProcess.start(hub, { flags: ["--disconnect-after-job"] });
  for await (const event of watcher) {
    if (event.paths.includes(marker)) break;
  }
  release();
  const exit = await agent.exit();
  await Deno.remove(markerDir, { recursive: true });

  await assertShutdown(hub, agent, exit, { reason: "JOB_FINISHED", hubReason: "job-finished" });
  const log = [
    ...prologue(),
    ...Array.from({ length: count }, () => command(":")).flat(),
    ...command(`touch ${marker}`),
    ...EXPORT_RESULT,
    "job_finished: passed",
  ];
  assertJob(hub, { id, result: "passed", log }, since);
  const batches = hub.jobLog(id).batches;
  assert.ok(Math.max(...batches) === 2000, `batches: ${batches}`);
}

/**
 * The hub is unreachable from the start: register is tried 30 times, 1 s apart, then the
 * agent exits 1 (`failed to register agent`) without syncing or running the shutdown hook.
 */
async function registerGivesUp(): Promise<void> {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  await hub.goDown();
  await using agent = await AgentProcess.start(hub);
  const started = performance.now();
  const exit = await agent.exit();
  const seconds = (performance.now() - started) / 1000;

  assert.equal(exit.code, 1, show(exit));
  assert.ok(seconds >= 28 && seconds < 60, `gave up after ${seconds.toFixed(1)} s`);
  assert.equal(exit.hookRuns, "", "the shutdown hook ran");
  assert.match(exit.log, /: Could not start agent: failed to register agent: .+\n$/, show(exit));
  assert.equal(exit.log.match(/\[register\] attempt \d+ failed/g)?.length, 29, show(exit));
  assert.deepEqual(await agent.leftovers(), []);
}

/**
 * Fault: the hub answers 500 to every third request (register, syncs, get job, pushes,
 * disconnect alike). Three jobs (passed, failed, stopped by stop-job) and a shutdown request
 * while idle: every log complete, every job reported once.
 */
async function hubFailsEveryThirdRequest(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  hub.setFailEvery(3);
  const first = hub.assignJob({ commands: [counting(10, 0.2), "echo end"] });
  const second = hub.assignJob({ commands: ["echo before", "false"] });
  const third = sleepingJob(hub);
  await using agent = await AgentProcess.start(hub);
  await waitForCommand(hub, third.id, third.sleep, 2 * WAIT_MS);
  hub.stopJob(third.id);
  await hub.waitUntilFinishedJob(third.id, WAIT_MS);
  hub.scheduleShutdown();
  const exit = await agent.exit();

  await assertShutdown(hub, agent, exit, {
    reason: "REQUESTED",
    hubReason: "requested",
    statuses: [200, 500],
  });
  const jobs: ExpectedJob[] = [
    { id: first, result: "passed", log: countingLog(10, 0.2) },
    {
      id: second,
      result: "failed",
      log: [
        ...prologue(),
        ...command("echo before", "before\n"),
        ...command("false", "", 1),
        ...EXPORT_RESULT,
        "job_finished: failed",
      ],
    },
    { id: third.id, result: "stopped", log: stoppedSleepLog(third.sleep) },
  ];
  for (const job of jobs) assertJob(hub, job, since);
  assertSyncStory(hub, jobs);
  const failed = hub.requests.filter((r) => r.status === 500);
  assert.ok(failed.length >= hub.requests.length / 3 - 1, `${failed.length} answers were 500`);
  // Which requests get the 500s depends on timing; assertPushes() checks any failed push was
  // retried from the same index.
  await assertNoProcess(third.sleep);
}

/** Fault: every answer takes 2 s (register, syncs, get job, pushes, disconnect). */
async function slowHub(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  hub.setSlowness(2000);
  const id = hub.assignJob({ commands: [counting(8, 0.5), "echo end"] });
  await using agent = await AgentProcess.start(hub, { flags: ["--disconnect-after-job"] });
  const exit = await agent.exit();

  await assertShutdown(hub, agent, exit, { reason: "JOB_FINISHED", hubReason: "job-finished" });
  const job: ExpectedJob = { id, result: "passed", log: countingLog(8, 0.5) };
  assertJob(hub, job, since);
  assertSyncStory(hub, [job]);
}

/**
 * Fault: the hub assigns a job id it does not know (GET answers 404: 10 attempts, 3 s apart,
 * then `finished-job`/`failed` with no log), then a job whose request is not JSON (`failed`, no
 * log), then a good job; the agent goes on and shuts down on request while idle.
 */
async function unknownAndBrokenJobs(): Promise<void> {
  const since = nowSeconds();
  await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
  const unknown = `no-such-job-${crypto.randomUUID()}`;
  hub.assignUnknownJob(unknown);
  const broken = hub.assignJob({ rawBody: "{not json" });
  const good = hub.assignJob({ commands: ["echo good"] });
  await using agent = await AgentProcess.start(hub);
  await hub.waitUntilFinishedJob(good, 2 * WAIT_MS);
  hub.scheduleShutdown();
  const exit = await agent.exit();

  await assertShutdown(hub, agent, exit, {
    reason: "REQUESTED",
    hubReason: "requested",
    statuses: [200, 404],
  });
  assert.equal(await hub.waitUntilFinishedJob(unknown), "failed");
  const gets = hub.requests.filter((r) => r.path === `${API}/jobs/${unknown}`);
  assert.equal(gets.length, 10, "get job attempts");
  assert.ok(gets.every((r) => r.method === "GET" && r.status === 404));
  assert.ok(
    exit.log.includes(`: Could not get job ${unknown}: failed to describe job, got HTTP 404\n`),
    show(exit),
  );
  const jobs: ExpectedJob[] = [
    { id: unknown, result: "failed" },
    { id: broken, result: "failed" },
    {
      id: good,
      result: "passed",
      log: [
        ...prologue(),
        ...command("echo good", "good\n"),
        ...EXPORT_RESULT,
        "job_finished: passed",
      ],
    },
  ];
  for (const job of jobs) assertJob(hub, job, since);
  assertSyncStory(hub, jobs);
  assert.equal(
    hub.syncs.filter((s) => s.state === "finished-job" && s.job_id === unknown).length,
    1,
    "finished-job reports of the unknown job",
  );
}

Deno.test("dist/agent start against the fake hub: every scenario of issue 4", async (t) => {
  await ensureBuilt();
  const scenarios: [string, () => Promise<void>][] = [
    ["register, six jobs, stop-job, shutdown on request", severalJobsThenShutdownWhileRunning],
    ["config from the environment, register retried, idle shutdown", idleShutdownConfiguredByEnv],
    ["config file, --job-id, hooks, single-job shutdown", singleJobFromConfigFile],
    ["SIGTERM mid-job without a grace period", sigtermWithoutGracePeriod],
    ["SIGTERM mid-job, the job ends within the grace period", sigtermWithinGracePeriod],
    ["SIGINT mid-job, the grace period runs out", sigtermGracePeriodRunsOut],
    ["a second SIGTERM stops the job and shuts down", secondSigterm],
    ["token refresh after 401, then SIGTERM while idle", tokenRefreshThenSigtermWhileIdle],
    ["422 from the log sink", logSink422],
    ["fault: the hub is down for 30 s mid-job", hubDownMidJob],
    ["fault: the hub is down for 30 s as the job ends", hubDownAsTheJobEnds],
    ["the hub is down for longer than the flush timeout", hubDownLongerThanTheFlushTimeout],
    ["run-job in answer to finished-job", runJobRightAfterFinishedJob],
    ["a job with 6000 events: batches of 2000", manyEvents],
    ["the hub is unreachable at start: register gives up, exit 1", registerGivesUp],
    ["fault: the hub answers 500 to every third request", hubFailsEveryThirdRequest],
    ["fault: the hub takes 2 s per answer", slowHub],
    ["fault: a job id the hub does not know, a job that is not JSON", unknownAndBrokenJobs],
  ];
  // START_E2E_ONLY=<text> runs the scenarios whose name contains the text (when debugging).
  const only = Deno.env.get("START_E2E_ONLY") ?? "";
  const chosen = scenarios.filter(([name]) => name.includes(only));
  assert.ok(chosen.length > 0, `No scenario matches START_E2E_ONLY=${only}`);
  // Scenarios run at once (each has its own hub and agent); the test's sanitizers still check
  // that all of them closed everything.
  const unsafe = { sanitizeOps: false, sanitizeResources: false, sanitizeExit: false };
  await Promise.all(chosen.map(([name, fn]) => t.step({ name, fn, ...unsafe })));
});
