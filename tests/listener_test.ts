import assert from "node:assert/strict";
import { createLogger } from "../lib/util/agent_log.ts";
import { loadConfig } from "../lib/start/config.ts";
import { Listener, type ListenerTimings } from "../lib/start/listener.ts";
import { USER_AGENT, VERSION } from "../lib/util/version.ts";
import { FakeHub } from "./support/fake_hub.ts";
import { simplifyLogLines } from "./support/log_notation.ts";
import { testShellEnv } from "./support/job_harness.ts";
import { AgentMetrics } from "../lib/telemetry/agent_metrics.ts";

const FAST: ListenerTimings = {
  syncRetryMs: [50, 100],
  hubRetries: {
    registerIntervalMs: 20,
    getJobIntervalMs: 20,
    disconnectIntervalMs: 20,
  },
  pushDelays: { runningMs: [20, 50], flushingMs: [5, 15] },
};

interface Agent {
  readonly listener: Listener;
  readonly lines: string[];
  readonly dir: string;
  /** Resolves with the exit code and checks nothing leaked. */
  done(): Promise<number>;
}

async function startAgent(
  hub: FakeHub,
  flags: Record<string, unknown> = {},
  timings: ListenerTimings = {},
  metrics?: AgentMetrics,
  agentEnv: Readonly<Record<string, string>> = {},
): Promise<Agent> {
  const dir = await Deno.makeTempDir({ prefix: "listener_test_" });
  const home = await Deno.makeTempDir({ prefix: "listener_test_home_" });
  const config = await loadConfig({
    endpoint: hub.endpoint,
    token: hub.registrationToken,
    "no-https": true,
    name: "test-agent-name",
    ...flags,
  }, { getEnv: () => undefined });
  const lines: string[] = [];
  const logger = createLogger({ stdout: false, level: "debug", onLine: (l) => lines.push(l) });
  const listener = Listener.start({
    config,
    logger,
    timings: { ...FAST, ...timings, hubRetries: { ...FAST.hubRetries, ...timings.hubRetries } },
    eventLogDir: dir,
    // Job shells get an empty HOME: the machine's login profile is not part of these tests.
    shellEnv: { ...agentEnv, ...testShellEnv(home) },
    metrics,
  });
  return {
    listener,
    lines,
    dir,
    async done() {
      const code = await listener.done;
      const left = [...Deno.readDirSync(dir)].map((e) => e.name);
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(home, { recursive: true });
      assert.deepEqual(left, [], "job logs left behind");
      return code;
    },
  };
}

function logged(agent: Agent, text: string): boolean {
  return agent.lines.some((line) => line.includes(text));
}

async function hookScript(dir: string): Promise<{ path: string; out: string }> {
  const path = `${dir}/shutdown_hook.sh`;
  const out = `${dir}/hook_out.txt`;
  await Deno.writeTextFile(path, `echo "reason=$SEMAPHORE_AGENT_SHUTDOWN_REASON" > ${out}\n`);
  return { path, out };
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "listener_hook_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The events of a job as the hub got them, with cmd_output merged per command. */
function simplified(hub: FakeHub, jobId: string): string[] {
  return simplifyLogLines(hub.jobLog(jobId).events);
}

function assertCompleteLog(hub: FakeHub, jobId: string, result: string): void {
  const log = hub.jobLog(jobId);
  assert.deepEqual(log.anomalies, [], "events resent or skipped");
  const names = hub.eventNames(jobId);
  assert.equal(names[0], "job_started");
  assert.equal(names.at(-1), "job_finished");
  assert.equal(names.filter((n) => n === "job_started").length, 1);
  assert.equal(names.filter((n) => n === "job_finished").length, 1);
  assert.equal(JSON.parse(log.events.at(-1)!).result, result);
}

Deno.test("Listener registers with the exact body and headers", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  const agent = await startAgent(hub, {
    "disconnect-after-idle-timeout": 120,
    "interruption-grace-period": 30,
  });
  await hub.waitFor("two syncs", () => hub.syncs.length >= 2);
  hub.scheduleShutdown();
  assert.equal(await agent.done(), 0);
  const body = hub.registrations[0];
  assert.deepEqual(Object.keys(body), [
    "name",
    "version",
    "pid",
    "os",
    "arch",
    "hostname",
    "single_job",
    "idle_timeout",
    "interruption_grace_period",
    "job_id",
  ]);
  assert.equal(body.name, "test-agent-name");
  assert.equal(body.version, VERSION);
  assert.equal(body.pid, Deno.pid);
  assert.equal(body.hostname, Deno.hostname());
  assert.ok(["x86_64", "arm64"].includes(String(body.arch)));
  assert.equal(typeof body.os, "string");
  assert.equal(body.single_job, false);
  assert.equal(body.idle_timeout, 120);
  assert.equal(body.interruption_grace_period, 30);
  assert.equal(body.job_id, "");
  const register = hub.requests.find((r) => r.path.endsWith("/register"))!;
  assert.equal(register.path, "/api/v1/self_hosted_agents/register");
  assert.equal(register.headers["authorization"], "Token reg-token");
  assert.equal(register.headers["user-agent"], USER_AGENT);
  assert.equal(register.headers["content-type"], undefined);
  const sync = hub.requests.find((r) => r.path.endsWith("/sync"))!;
  assert.equal(sync.headers["authorization"], "Token token");
  assert.equal(
    sync.body,
    `{"state":"waiting-for-jobs","job_id":"","job_result":"","interrupted_at":0}`,
  );
  assert.ok(logged(agent, "SYNC request (state: waiting-for-jobs)"));
  assert.ok(logged(agent, "SYNC response (action: continue)"));
  assert.ok(logged(agent, "Waiting 50ms for next sync..."));
  assert.ok(logged(agent, "SYNC response (action: shutdown, reason: requested)"));
  assert.ok(logged(agent, "Agent shutdown requested by Semaphore due to: requested"));
  assert.ok(logged(agent, "Disconnecting the Agent from Semaphore"));
  assert.ok(logged(agent, "Disconnected."));
  assert.ok(logged(agent, "Agent shutting down due to: REQUESTED"));
  assert.ok(hub.disconnected);
});

Deno.test("Listener retries the register request", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  hub.rejectRegisterAttempts(3);
  const agent = await startAgent(hub);
  await hub.waitUntilRegistered();
  hub.scheduleShutdown();
  assert.equal(await agent.done(), 0);
  assert.equal(hub.registrations.length, 4);
});

Deno.test("Listener exits 1 when registration fails after all attempts", async () => {
  await using hub = await FakeHub.start();
  hub.rejectRegisterAttempts(100);
  const agent = await startAgent(hub, {}, { hubRetries: { registerAttempts: 5 } });
  assert.equal(await agent.done(), 1);
  assert.equal(hub.registrations.length, 5);
  assert.ok(logged(
    agent,
    `Could not start agent: failed to register agent: register request to ` +
      `http://${hub.endpoint}/api/v1/self_hosted_agents/register got HTTP 500: rejected on purpose`,
  ));
  assert.equal(hub.syncs.length, 0);
});

Deno.test("Listener runs the shutdown hook with the shutdown reason", async () => {
  await withTempDir(async (dir) => {
    await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
    const hook = await hookScript(dir);
    const agent = await startAgent(hub, { "shutdown-hook-path": hook.path });
    await hub.waitUntilRegistered();
    hub.scheduleShutdown();
    assert.equal(await agent.done(), 0);
    assert.equal(await Deno.readTextFile(hook.out), "reason=REQUESTED\n");
    assert.ok(logged(agent, `Executing shutdown hook from ${hook.path}`));
    // The hook runs after disconnecting.
    const disconnected = agent.lines.findIndex((l) => l.includes("Disconnected."));
    const hookLine = agent.lines.findIndex((l) => l.includes("Executing shutdown hook"));
    assert.ok(disconnected >= 0 && disconnected < hookLine);
  });
});

Deno.test("Listener logs a failing or missing shutdown hook and still exits 0", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  const agent = await startAgent(hub, { "shutdown-hook-path": "/nonexistent/hook.sh" });
  await hub.waitUntilRegistered();
  hub.scheduleShutdown();
  assert.equal(await agent.done(), 0);
  assert.ok(logged(agent, "Error executing shutdown hook: exit status 127"));
});

Deno.test("Listener shuts down after the job when disconnect-after-job is set", async () => {
  await withTempDir(async (dir) => {
    await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
    const hook = await hookScript(dir);
    const jobId = hub.assignJob({ commands: ["echo hello"] });
    const agent = await startAgent(hub, {
      "disconnect-after-job": true,
      "shutdown-hook-path": hook.path,
    });
    assert.equal(await agent.done(), 0);
    assert.equal(hub.jobResult(jobId), "passed");
    assert.deepEqual(hub.shutdowns, ["job-finished"]);
    assert.equal(await Deno.readTextFile(hook.out), "reason=JOB_FINISHED\n");
    assert.equal(hub.registrations[0].single_job, true);
    assertCompleteLog(hub, jobId, "passed");
    assert.deepEqual(simplified(hub, jobId), [
      "job_started",
      "directive: Exporting environment variables",
      "exit: 0",
      "directive: Injecting Files",
      "exit: 0",
      "directive: echo hello",
      "output: hello\n",
      "exit: 0",
      "directive: Exporting environment variables",
      "output: Exporting SEMAPHORE_JOB_RESULT\n",
      "exit: 0",
      "job_finished: passed",
    ]);
    // States in order: waiting, starting/running, finished (with the job), then shutdown.
    const states = hub.syncs.map((s) => s.state);
    assert.equal(states[0], "waiting-for-jobs");
    assert.ok(states.includes("finished-job"));
    const finished = hub.syncs.find((s) => s.state === "finished-job")!;
    assert.deepEqual(finished, {
      state: "finished-job",
      job_id: jobId,
      job_result: "passed",
      interrupted_at: 0,
    });
    assert.ok(logged(agent, `SYNC response (action: run-job, job: ${jobId})`));
    assert.ok(logged(agent, `SYNC request (state: finished-job, job: ${jobId}, result: passed)`));
  });
});

Deno.test("Listener runs the job given with --job-id", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  const jobId = hub.assignJob({ id: "the-only-job", commands: ["true"] });
  const agent = await startAgent(hub, { "disconnect-after-job": true, "job-id": jobId });
  assert.equal(await agent.done(), 0);
  assert.equal(hub.registrations[0].job_id, "the-only-job");
  assert.equal(hub.jobResult(jobId), "passed");
});

Deno.test("Listener shuts down after the idle timeout", async () => {
  await withTempDir(async (dir) => {
    await using hub = await FakeHub.start({ nextSyncAfterMs: 100 });
    const hook = await hookScript(dir);
    const agent = await startAgent(hub, {
      "disconnect-after-idle-timeout": 1,
      "shutdown-hook-path": hook.path,
    });
    assert.equal(await agent.done(), 0);
    assert.deepEqual(hub.shutdowns, ["idle"]);
    assert.equal(await Deno.readTextFile(hook.out), "reason=IDLE\n");
  });
});

Deno.test("Listener shuts down after an interruption while idle", async () => {
  await withTempDir(async (dir) => {
    await using hub = await FakeHub.start({ nextSyncAfterMs: 10_000 });
    const hook = await hookScript(dir);
    const agent = await startAgent(hub, { "shutdown-hook-path": hook.path });
    await hub.waitFor("first sync", () => hub.syncs.length === 1);
    const before = Math.floor(Date.now() / 1000);
    agent.listener.interrupt(); // forces a sync at once despite next_sync_after
    assert.equal(await agent.done(), 0);
    assert.ok(Number(hub.syncs.at(-1)!.interrupted_at) >= before);
    assert.deepEqual(hub.shutdowns, ["interrupted"]);
    assert.equal(await Deno.readTextFile(hook.out), "reason=INTERRUPTED\n");
    assert.ok(logged(agent, "Termination signal received"));
  });
});

Deno.test("Listener job is stopped after an interruption with no grace period", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 100 });
  const jobId = hub.assignJob({ commands: ["sleep 60"] });
  const agent = await startAgent(hub);
  await hub.waitUntilRunningJob(jobId);
  agent.listener.interrupt();
  assert.equal(await agent.done(), 0);
  assert.equal(hub.jobResult(jobId), "stopped");
  assert.deepEqual(hub.shutdowns, ["interrupted"]);
  assertCompleteLog(hub, jobId, "stopped");
});

Deno.test("Listener job finishes within the interruption grace period", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 100 });
  const jobId = hub.assignJob({ commands: ["sleep 2", "echo done"] });
  const agent = await startAgent(hub, { "interruption-grace-period": 30 });
  await hub.waitUntilRunningJob(jobId);
  agent.listener.interrupt();
  assert.equal(await agent.done(), 0);
  assert.equal(hub.jobResult(jobId), "passed");
  assert.deepEqual(hub.shutdowns, ["interrupted"]);
  assertCompleteLog(hub, jobId, "passed");
});

Deno.test("Listener shuts down when asked while waiting", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  const agent = await startAgent(hub);
  await hub.waitFor("two syncs", () => hub.syncs.length >= 2);
  hub.scheduleShutdown();
  assert.equal(await agent.done(), 0);
  assert.deepEqual(hub.shutdowns, ["requested"]);
});

Deno.test("Listener takes a wrong-typed job_id as a sync error and clamps next_sync_after", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  const syncRequests = () => hub.requests.filter((r) => r.path.endsWith("/sync")).length;
  hub.setRawAnswer("/sync", () => new Response(JSON.stringify({ action: "run-job", job_id: 42 })));
  const agent = await startAgent(hub);
  await hub.waitFor("three syncs", () => syncRequests() >= 3);
  const url = `http://${hub.endpoint}/api/v1/self_hosted_agents/sync`;
  assert.ok(logged(
    agent,
    `[SYNC ERR] Failed to sync with API: Cannot parse sync response from ${url}: ` +
      "'job_id' must be a string, got number",
  ));
  assert.equal(hub.requests.some((r) => r.path.includes("/jobs/")), false, "no job was fetched");

  // 2^31 ms overflows a timer to 1 ms: without the clamp the agent would sync at once again.
  hub.setRawAnswer(
    "/sync",
    () => new Response(JSON.stringify({ action: "continue", next_sync_after: 2 ** 31 })),
  );
  const waiting = "Waiting 596h31m23.647s for next sync...";
  // The line follows the answer; the hub sees no request after it, so look for it here.
  for (let i = 0; i < 100 && !logged(agent, waiting); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(logged(agent, waiting), agent.lines.slice(-3).join("\n"));
  const syncs = syncRequests();
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(syncRequests(), syncs, "no sync during the wait");
  hub.setRawAnswer("/sync", undefined);
  agent.listener.interrupt(); // forces a sync: the hub's reference logic shuts the agent down
  assert.equal(await agent.done(), 0);
});

Deno.test("Listener stops the job and shuts down when asked while running a job", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 100 });
  const jobId = hub.assignJob({ commands: ["sleep 60"] });
  const agent = await startAgent(hub);
  await hub.waitUntilRunningJob(jobId);
  hub.scheduleShutdown();
  assert.equal(await agent.done(), 0);
  assert.equal(hub.jobResult(jobId), "stopped");
  assert.deepEqual(hub.shutdowns, ["requested"]);
  assertCompleteLog(hub, jobId, "stopped");
});

Deno.test("Listener stops a job on stop-job and takes the next job", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 100 });
  const first = hub.assignJob({ commands: ["sleep 60"] });
  const agent = await startAgent(hub);
  await hub.waitUntilRunningJob(first);
  hub.stopJob(first);
  assert.equal(await hub.waitUntilFinishedJob(first), "stopped");
  const second = hub.assignJob({ commands: ["echo second"] });
  assert.equal(await hub.waitUntilFinishedJob(second), "passed");
  hub.scheduleShutdown();
  assert.equal(await agent.done(), 0);
  assertCompleteLog(hub, first, "stopped");
  assertCompleteLog(hub, second, "passed");
});

Deno.test("Listener exposes host env vars to the job, over the job's own", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  const jobId = hub.assignJob({
    commands: ["echo $A $B $C"],
    envVars: { A: "from-job", C: "job-only" },
  });
  const agent = await startAgent(hub, {
    "disconnect-after-job": true,
    "env-vars": ["A=from-host", "B=host-only"],
  });
  assert.equal(await agent.done(), 0);
  assert.equal(hub.jobResult(jobId), "passed");
  const log = simplified(hub, jobId);
  assert.deepEqual(log.slice(1, 4), [
    "directive: Exporting environment variables",
    "output: Exporting A\nExporting B\nExporting C\n",
    "exit: 0",
  ]);
  assert.ok(log.includes("output: from-host host-only job-only\n"), log.join("\n"));
});

Deno.test("Listener redacts secrets from the pushed job log and from its own log", async () => {
  await withTempDir(async (dir) => {
    await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
    const hook = `${dir}/hook.sh`;
    await Deno.writeTextFile(hook, "echo 'hook sees host-secret-1'\n");
    const jobId = hub.assignJob({
      commands: ['echo "$DB_PASSWORD $DEPLOY_TOKEN $MY_VAR"', "echo job-secret-1 | base64"],
      envVars: { DB_PASSWORD: "job-secret-1", MY_VAR: "custom-secret" },
    });
    const agent = await startAgent(hub, {
      "disconnect-after-job": true,
      "env-vars": ["DEPLOY_TOKEN=host-secret-1"],
      "redacted-vars": ["MY_*"],
      "shutdown-hook-path": hook,
    });
    assert.equal(await agent.done(), 0);
    const log = simplified(hub, jobId);
    assert.ok(log.includes("output: [REDACTED] [REDACTED] [REDACTED]\n"), log.join("\n"));
    const pushed = hub.jobLog(jobId).events.join("\n");
    for (const secret of ["job-secret-1", "host-secret-1", "custom-secret", "am9iLXNlY3JldC0x"]) {
      assert.ok(!pushed.includes(secret), `${secret} in the pushed log`);
    }
    assert.ok(logged(agent, "Output: hook sees [REDACTED]"), agent.lines.join(""));
    assert.ok(!agent.lines.some((l) => l.includes("host-secret-1")));
  });
});

Deno.test("Listener job does not see the agent's own SEMAPHORE_AGENT_* variables", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  const jobId = hub.assignJob({
    commands: ["echo token=$SEMAPHORE_AGENT_TOKEN other=$OTHER_VARIABLE"],
  });
  // The environment the job shell starts from, as the agent's own would be: the executor
  // drops the agent's variables from it (DECISIONS.md 14).
  const agent = await startAgent(hub, { "disconnect-after-job": true }, {}, undefined, {
    SEMAPHORE_AGENT_TOKEN: "very-secret",
    OTHER_VARIABLE: "kept",
  });
  assert.equal(await agent.done(), 0);
  assert.ok(simplified(hub, jobId).includes("output: token= other=kept\n"));
});

Deno.test("Listener refreshes the job log token", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  const jobId = hub.assignJob({ commands: ["echo hello"], logToken: "expired-token" });
  const agent = await startAgent(hub, { "disconnect-after-job": true });
  assert.equal(await agent.done(), 0);
  assertCompleteLog(hub, jobId, "passed");
  const refresh = hub.requests.find((r) => r.path.endsWith("/refresh"))!;
  assert.equal(refresh.headers["authorization"], "Token token");
  assert.ok(logged(agent, "Refreshing token for current job logs..."));
  assert.ok(logged(agent, "Successfully refreshed token for current job logs."));
});

Deno.test("Listener stops pushing on 422 and still reports the job", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  hub.setMaxLogEvents(3);
  const jobId = hub.assignJob({ commands: ["echo one", "sleep 1", "echo two"] });
  const agent = await startAgent(hub, {
    "disconnect-after-job": true,
    "upload-job-logs": "when-trimmed",
  });
  assert.equal(await agent.done(), 0);
  assert.equal(hub.jobResult(jobId), "passed");
  const names = hub.eventNames(jobId);
  assert.ok(names.length >= 3 && !names.includes("job_finished"), names.join(","));
  assert.equal(hub.requests.filter((r) => r.status === 422).length, 1);
  assert.ok(logged(agent, "no more space available for logs - stopping"));
  // Trimmed, so the upload is attempted; without an artifact token it is skipped with an error.
  assert.ok(logged(agent, "SEMAPHORE_ARTIFACT_TOKEN is not set"));
});

Deno.test("Listener retries getting the job", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  hub.rejectGetJobAttempts(3);
  const jobId = hub.assignJob({ commands: ["echo hello"] });
  const agent = await startAgent(hub, { "disconnect-after-job": true });
  assert.equal(await agent.done(), 0);
  assert.equal(hub.jobResult(jobId), "passed");
  assert.equal(hub.requests.filter((r) => r.path.endsWith(`/jobs/${jobId}`)).length, 4);
});

Deno.test("Listener reports a job it cannot fetch as failed", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  hub.rejectGetJobAttempts(100);
  const jobId = hub.assignJob({ commands: ["echo hello"] });
  const agent = await startAgent(hub, { "disconnect-after-job": true }, {
    hubRetries: { getJobAttempts: 3 },
  });
  assert.equal(await agent.done(), 0);
  assert.equal(hub.jobResult(jobId), "failed");
  assert.ok(logged(agent, `Could not get job ${jobId}: failed to describe job, got HTTP 500`));
  assert.deepEqual(hub.jobLog(jobId).events, []);
});

Deno.test("Listener reports a job it cannot construct as failed", async (t) => {
  for (
    const [what, options] of [
      ["unknown executor", { extra: { executor: "bogus" } }],
      ["not JSON", { rawBody: "{not json" }],
    ] as const
  ) {
    await t.step(what, async () => {
      await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
      const jobId = hub.assignJob(options);
      const agent = await startAgent(hub, { "disconnect-after-job": true });
      assert.equal(await agent.done(), 0);
      assert.equal(hub.jobResult(jobId), "failed");
      assert.ok(logged(agent, `Could not`));
    });
  }
});

Deno.test("Listener reports a job whose env var name is not a shell name as failed", async () => {
  await withTempDir(async (dir) => {
    await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
    const marker = `${dir}/injected`;
    const jobId = hub.assignJob({
      commands: ["echo hello"],
      envVars: { OK: "1", [`A;touch ${marker}`]: "2" },
    });
    const agent = await startAgent(hub, { "disconnect-after-job": true });
    assert.equal(await agent.done(), 0);
    assert.equal(hub.jobResult(jobId), "failed");
    assert.ok(
      logged(
        agent,
        `Could not get job ${jobId}: env_vars[1].name: "A;touch ${marker}" is not a variable ` +
          "name ([A-Za-z_][A-Za-z0-9_]*)",
      ),
      agent.lines.join(""),
    );
    assert.deepEqual(hub.jobLog(jobId).events, []);
    await assert.rejects(() => Deno.stat(marker), Deno.errors.NotFound);
  });
});

Deno.test("Listener reports a job id the hub does not know as failed and goes on", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  hub.assignUnknownJob("does-not-exist");
  const agent = await startAgent(hub, {}, { hubRetries: { getJobAttempts: 2 } });
  assert.equal(await hub.waitUntilFinishedJob("does-not-exist"), "failed");
  const next = hub.assignJob({ commands: ["echo next"] });
  assert.equal(await hub.waitUntilFinishedJob(next), "passed");
  hub.scheduleShutdown();
  assert.equal(await agent.done(), 0);
  assertCompleteLog(hub, next, "passed");
});

Deno.test("Listener second interruption stops the job, reports it and exits 0", async () => {
  await withTempDir(async (dir) => {
    await using hub = await FakeHub.start({ nextSyncAfterMs: 100 });
    const hook = await hookScript(dir);
    const jobId = hub.assignJob({ commands: ["sleep 60"] });
    const agent = await startAgent(hub, {
      "interruption-grace-period": 600,
      "shutdown-hook-path": hook.path,
    });
    await hub.waitUntilRunningJob(jobId);
    agent.listener.interrupt();
    await hub.waitFor("interrupted sync", () => hub.interruptedAt > 0);
    agent.listener.interrupt();
    assert.equal(await agent.done(), 0);
    assert.equal(hub.jobResult(jobId), "stopped");
    assert.ok(hub.disconnected);
    assert.equal(await Deno.readTextFile(hook.out), "reason=INTERRUPTED\n");
    assertCompleteLog(hub, jobId, "stopped");
    assert.ok(logged(agent, "Agent shutting down due to: INTERRUPTED"));
  });
});

Deno.test("Listener exits 1 after being unable to sync for too long", async () => {
  await withTempDir(async (dir) => {
    await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
    const hook = await hookScript(dir);
    const agent = await startAgent(hub, { "shutdown-hook-path": hook.path }, {
      unableToSyncMs: 1000,
      hubRetries: { disconnectAttempts: 3 },
    });
    await hub.waitFor("first sync", () => hub.syncs.length >= 1);
    await hub.goDown();
    assert.equal(await agent.done(), 1);
    assert.ok(logged(agent, "[SYNC ERR] Failed to sync with API: "));
    assert.ok(logged(agent, "Failed to disconnect from Semaphore even after 3 tries: "));
    assert.equal(await Deno.readTextFile(hook.out), "reason=UNABLE_TO_SYNC\n");
    assert.ok(logged(agent, "Agent shutting down due to: UNABLE_TO_SYNC"));
  });
});

/** A job printing `count` numbered lines, `pause` seconds apart. */
function countingJob(count: number, pause: number): string[] {
  return [`for i in $(seq 1 ${count}); do echo "line $i"; sleep ${pause}; done`, "echo end"];
}

function assertCountingOutput(hub: FakeHub, jobId: string, count: number): void {
  const outputs = hub.jobLog(jobId).events.map((l) => JSON.parse(l)).filter((e) =>
    e.event === "cmd_output"
  ).map((e) => e.output).join("");
  const expected = Array.from({ length: count }, (_, i) => `line ${i + 1}\n`).join("") +
    "end\nExporting SEMAPHORE_JOB_RESULT\n";
  assert.equal(outputs, expected);
}

Deno.test("Listener keeps every event when the hub is down mid-job", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 100 });
  const jobId = hub.assignJob({ commands: countingJob(30, 0.2) });
  const agent = await startAgent(hub, { "disconnect-after-job": true });
  await hub.waitUntilLogEvents(jobId, 8);
  await hub.goDown();
  await new Promise((resolve) => setTimeout(resolve, 4000)); // the outage itself
  await hub.comeUp();
  assert.equal(await agent.done(), 0);
  assert.equal(hub.jobResult(jobId), "passed");
  assertCompleteLog(hub, jobId, "passed");
  assertCountingOutput(hub, jobId, 30);
  assert.ok(logged(agent, "[SYNC ERR] Failed to sync with API: "));
  assert.ok(logged(agent, "Error pushing logs: "));
});

Deno.test("Listener copes with a hub answering 500 to every third request", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 100 });
  hub.setFailEvery(3);
  const first = hub.assignJob({ commands: countingJob(10, 0.05) });
  const second = hub.assignJob({ commands: countingJob(5, 0) });
  const agent = await startAgent(hub);
  assert.equal(await hub.waitUntilFinishedJob(first), "passed");
  assert.equal(await hub.waitUntilFinishedJob(second), "passed");
  hub.scheduleShutdown();
  assert.equal(await agent.done(), 0);
  assertCompleteLog(hub, first, "passed");
  assertCompleteLog(hub, second, "passed");
  assertCountingOutput(hub, first, 10);
  assertCountingOutput(hub, second, 5);
  assert.ok(hub.requests.some((r) => r.status === 500));
});

Deno.test("Listener copes with a slow hub (2 s per answer)", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 100 });
  hub.setSlowness(2000);
  const jobId = hub.assignJob({ commands: countingJob(5, 0.1) });
  const agent = await startAgent(hub, { "disconnect-after-job": true });
  assert.equal(await agent.done(), 0);
  assert.equal(hub.jobResult(jobId), "passed");
  assertCompleteLog(hub, jobId, "passed");
  assertCountingOutput(hub, jobId, 5);
});

Deno.test("Listener keeps reporting a job that ended while a sync answered wait-for-jobs", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 100, waitForJobsWhileRunning: true });
  // Each answer takes 1.5 s, the job 0.5 s: the running-job sync is still in flight when the
  // job ends, and its wait-for-jobs answer must not make the agent forget the result.
  hub.setSlowness(1500);
  const jobId = hub.assignJob({ commands: ["sleep 0.5"] });
  const agent = await startAgent(hub, { "disconnect-after-job": true });
  assert.equal(await agent.done(), 0);
  assert.equal(hub.jobResult(jobId), "passed");
  assertCompleteLog(hub, jobId, "passed");
});

Deno.test("agent start stops the job on SIGTERM and exits 0", async () => {
  await withTempDir(async (dir) => {
    await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
    await Deno.mkdir(`${dir}/home`);
    const hook = await hookScript(dir);
    const jobId = hub.assignJob({ commands: ["sleep 60"] });
    const main = new URL("../main.ts", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", main, "start", "--endpoint", hub.endpoint, "--token", "reg-token"],
      env: {
        SEMAPHORE_AGENT_NO_HTTPS: "true",
        SEMAPHORE_AGENT_SHUTDOWN_HOOK_PATH: hook.path,
        SEMAPHORE_AGENT_LOG_FILE_PATH: `${dir}/agent.log`,
        // An empty HOME for the job shell; Deno's cache stays where it is.
        HOME: `${dir}/home`,
        DENO_DIR: Deno.env.get("DENO_DIR") ??
          `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`}/deno`,
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output = child.output();
    await hub.waitUntilRunningJob(jobId);
    child.kill("SIGTERM");
    const { code, stderr } = await output;
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    assert.equal(hub.jobResult(jobId), "stopped");
    assert.deepEqual(hub.shutdowns, ["interrupted"]);
    assert.ok(hub.disconnected);
    assertCompleteLog(hub, jobId, "stopped");
    assert.equal(await Deno.readTextFile(hook.out), "reason=INTERRUPTED\n");
    const agentLog = await Deno.readTextFile(`${dir}/agent.log`);
    assert.match(agentLog, /: Termination signal received\n/);
    assert.match(
      agentLog,
      /^\w{3} [ \d]\d \d\d:\d\d:\d\d\.\d{3} [A-Za-z0-9_-]{20} : Starting Agent$/m,
    );
    assert.match(agentLog, / : Agent shutting down due to: INTERRUPTED\n$/);
  });
});

Deno.test("Listener.readiness() follows registration and syncs; metrics count sync failures in a row", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 50 });
  const metrics = new AgentMetrics();
  const gauge = async (name: string) =>
    Number(new RegExp(`^${name} (\\S+)$`, "m").exec(await metrics.exposition())?.[1]);
  try {
    const agent = await startAgent(hub, {}, {}, metrics);
    assert.deepEqual(agent.listener.readiness(), {
      ready: false,
      reason: "not registered with Semaphore",
    });
    await hub.waitFor("two syncs", () => hub.syncs.length >= 2);
    assert.deepEqual(agent.listener.readiness(), { ready: true });
    const later = performance.now() + 61_000;
    assert.deepEqual(agent.listener.readiness(later), {
      ready: false,
      reason: "the last successful sync was 61 s ago",
    });
    await hub.goDown();
    // No hub request marks a failed sync: the gauge is read until it shows two (bounded).
    const deadline = performance.now() + 10_000;
    while (await gauge("semaphore_agent_sync_failures_in_a_row") < 2) {
      assert.ok(performance.now() < deadline, "two failed syncs within 10 s");
      await new Promise((r) => setTimeout(r, 20));
    }
    const syncsBefore = hub.syncs.length;
    await hub.comeUp();
    await hub.waitFor("two more syncs", () => hub.syncs.length >= syncsBefore + 2);
    assert.equal(await gauge("semaphore_agent_sync_failures_in_a_row"), 0);
    assert.match(
      await metrics.exposition(),
      /^semaphore_agent_state\{state="waiting-for-jobs"\} 1$/m,
    );
    hub.scheduleShutdown();
    assert.equal(await agent.done(), 0);
    assert.match(await metrics.exposition(), /^semaphore_agent_state\{state="shutting-down"\} 1$/m);
  } finally {
    metrics.close();
  }
});
