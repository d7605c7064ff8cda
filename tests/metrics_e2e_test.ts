/**
 * `--metrics-addr` end to end: a real Prometheus server scrapes a running `agent start` (against
 * the fake hub) and a running `agent serve`; its HTTP API must give the job counters with the
 * right results, and `promtool check metrics` must accept the exposition.
 */

import assert from "node:assert/strict";
import { FakeHub } from "./support/fake_hub.ts";
import { agentCommand, AUTH, followAgentLog, startServeAgent } from "./support/serve_agent.ts";
import { prometheusSkipReason, promtool, startPrometheus } from "./support/prometheus.ts";

const skip = await prometheusSkipReason();

/** `agent start` as a child process, its agent log lines collected. */
function startAgentProcess(hub: FakeHub, dir: string, extra: string[] = []) {
  const { cmd, args } = agentCommand();
  const child = new Deno.Command(cmd, {
    args: [
      ...args,
      "start",
      "--endpoint",
      hub.endpoint,
      "--token",
      hub.registrationToken,
      "--no-https",
      "--name",
      "metrics-agent",
      "--metrics-addr",
      "127.0.0.1:0",
      ...extra,
    ],
    env: {
      HOME: `${dir}/home`,
      TMPDIR: dir,
      SEMAPHORE_AGENT_LOG_FILE_PATH: `${dir}/agent_log`,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return { child, ...followAgentLog(child) };
}

function metricsPort(line: string): number {
  return Number(/Serving metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(line)![1]);
}

Deno.test({
  name: "agent start --metrics-addr: Prometheus scrapes one passed and one failed job",
  ignore: skip !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "metrics_e2e_" });
    await Deno.mkdir(`${dir}/home`);
    await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
    const agent = startAgentProcess(hub, dir);
    try {
      const port = metricsPort(await agent.waitForLine(/Serving metrics on/));
      const base = `http://127.0.0.1:${port}`;
      await hub.waitUntilRegistered();
      await using prometheus = await startPrometheus([`127.0.0.1:${port}`]);

      const passed = hub.assignJob({ commands: ["echo one", "true"] });
      assert.equal(await hub.waitUntilFinishedJob(passed), "passed");
      const failed = hub.assignJob({ commands: ["echo two", "false"] });
      assert.equal(await hub.waitUntilFinishedJob(failed), "failed");

      const byResult = (samples: { metric: Record<string, string>; value: number }[]) =>
        Object.fromEntries(samples.map((s) => [s.metric.result, s.value]));
      const finished = await prometheus.waitFor(
        "semaphore_agent_jobs_finished_total",
        (s) => byResult(s).passed === 1 && byResult(s).failed === 1,
      );
      assert.deepEqual(byResult(finished), { passed: 1, failed: 1, stopped: 0 });
      const [started] = await prometheus.query("semaphore_agent_jobs_started_total");
      assert.equal(started.value, 2);
      assert.equal(started.metric.job, "semaphore-agent");
      const [running] = await prometheus.query("semaphore_agent_jobs_running");
      assert.equal(running.value, 0);
      const [durations] = await prometheus.query("sum(semaphore_agent_job_duration_seconds_count)");
      assert.equal(durations.value, 2);
      // Each job: `Exporting environment variables`, `Injecting Files`, its two commands, and
      // the closing `Exporting environment variables` (SEMAPHORE_COMPAT.md §5).
      const [commands] = await prometheus.query("semaphore_agent_commands_total");
      assert.equal(commands.value, 10);
      const syncs = await prometheus.query('semaphore_agent_hub_requests_total{endpoint="sync"}');
      assert.equal(syncs.length, 1);
      assert.equal(syncs[0].metric.code, "2xx");
      assert.ok(syncs[0].value >= 4, `syncs: ${syncs[0].value}`);
      const jobs = await prometheus.query('semaphore_agent_hub_requests_total{endpoint="job"}');
      assert.equal(jobs[0].value, 2);
      const logs = await prometheus.query('semaphore_agent_hub_requests_total{endpoint="logs"}');
      assert.ok(logs[0].value >= 2);
      const [ready] = await prometheus.query("semaphore_agent_ready");
      assert.equal(ready.value, 1);
      const states = await prometheus.query("semaphore_agent_state == 1");
      assert.deepEqual(states.map((s) => s.metric.state), ["waiting-for-jobs"]);
      if (Deno.uid() === 0) {
        // As root the jobs run in cgroups of their own, which measure what they used.
        const [peak] = await prometheus.query("semaphore_agent_last_job_peak_memory_bytes");
        assert.ok(peak.value > 0, `peak memory: ${peak.value}`);
        const cpu = await prometheus.query("semaphore_agent_job_cpu_seconds_total");
        assert.deepEqual(cpu.map((s) => s.metric.mode).sort(), ["system", "user"]);
      }
      const [rss] = await prometheus.query("semaphore_agent_process_resident_memory_bytes");
      assert.ok(rss.value > 1e6);
      const [fds] = await prometheus.query("semaphore_agent_process_open_fds");
      assert.ok(fds.value > 0);

      const exposition = await (await fetch(`${base}/metrics`)).text();
      const check = await promtool(["check", "metrics"], exposition);
      assert.equal(check.code, 0, check.output);
      for (const [path, status, body] of [["/healthz", 200, "ok\n"], ["/readyz", 200, "ready\n"]]) {
        const res = await fetch(`${base}${path}`);
        assert.equal(res.status, status);
        assert.equal(await res.text(), body);
      }
      const missing = await fetch(`${base}/jobs`);
      assert.equal(missing.status, 404);
      await missing.body?.cancel();
    } finally {
      hub.scheduleShutdown();
      const status = await agent.status;
      await agent.stderr;
      await Deno.remove(dir, { recursive: true });
      assert.equal(status.code, 0);
    }
  },
});

Deno.test({
  name: "agent serve --metrics-addr: Prometheus scrapes the job's counters and command count",
  ignore: skip !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "metrics_serve_" });
    await Deno.mkdir(`${dir}/home`);
    try {
      await using agent = await startServeAgent({
        dir,
        env: { HOME: `${dir}/home` },
        args: ["--metrics-addr", "127.0.0.1:0"],
      });
      const line = await agent.waitForLine(/Serving metrics on/);
      const port = Number(/127\.0\.0\.1:(\d+)\/metrics/.exec(line)![1]);
      await using prometheus = await startPrometheus([`127.0.0.1:${port}`]);
      const res = await agent.fetch("/jobs", {
        method: "POST",
        headers: AUTH,
        body: JSON.stringify({
          job_id: "metrics-serve-1",
          commands: [{ directive: "echo hosted" }, { directive: "false" }],
        }),
      });
      assert.equal(res.status, 200);
      await res.body?.cancel();
      const finished = await prometheus.waitFor(
        'semaphore_agent_jobs_finished_total{result="failed"}',
        (s) => s[0]?.value === 1,
      );
      assert.equal(finished.length, 1);
      const [passed] = await prometheus.query(
        'semaphore_agent_jobs_finished_total{result="passed"}',
      );
      assert.equal(passed.value, 0);
      const [commands] = await prometheus.query("semaphore_agent_commands_total");
      assert.equal(commands.value, 5); // as above, one job
      const [bytes] = await prometheus.query("semaphore_agent_job_output_bytes_total");
      // `hosted\n`, `Exporting SEMAPHORE_JOB_RESULT\n` (the env export of the job has no vars).
      assert.ok(bytes.value >= "hosted\n".length, `output bytes: ${bytes.value}`);
      const exposition = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const check = await promtool(["check", "metrics"], exposition);
      assert.equal(check.code, 0, check.output);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
