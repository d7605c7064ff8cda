import assert from "node:assert/strict";
import { AgentMetrics, statusClass } from "../lib/telemetry/agent_metrics.ts";
import { observedSink, utf8Length } from "../lib/telemetry/job_observer.ts";
import type { JobEvent } from "../lib/engine/events.ts";

/** The sample lines of the exposition (no comments), for exact comparison. */
async function samples(metrics: AgentMetrics, prefix: string): Promise<string[]> {
  return (await metrics.exposition()).split("\n").filter((l) => l.startsWith(prefix));
}

Deno.test("observedSink() counts jobs, results, commands and output bytes from the events", async () => {
  const metrics = new AgentMetrics();
  try {
    const written: JobEvent[] = [];
    const sink = observedSink({ write: (e) => written.push(e) }, metrics);
    const events: JobEvent[] = [
      { event: "job_started", timestamp: 1 },
      { event: "cmd_started", timestamp: 1, directive: "echo héllo" },
      { event: "cmd_output", timestamp: 1, output: "héllo\n" },
      {
        event: "cmd_finished",
        timestamp: 1,
        directive: "echo héllo",
        exit_code: 0,
        started_at: 1,
        finished_at: 1,
      },
      { event: "cmd_started", timestamp: 1, directive: "false" },
      { event: "job_finished", timestamp: 2, result: "failed" },
    ];
    for (const event of events) sink.write(event);
    assert.deepEqual(written, events);
    assert.deepEqual(await samples(metrics, "semaphore_agent_jobs_"), [
      "semaphore_agent_jobs_started_total 1",
      'semaphore_agent_jobs_finished_total{result="passed"} 0',
      'semaphore_agent_jobs_finished_total{result="failed"} 1',
      'semaphore_agent_jobs_finished_total{result="stopped"} 0',
      "semaphore_agent_jobs_running 0",
    ]);
    assert.deepEqual(await samples(metrics, "semaphore_agent_commands_total"), [
      "semaphore_agent_commands_total 2",
    ]);
    // "héllo\n" is 7 bytes in UTF-8.
    assert.deepEqual(await samples(metrics, "semaphore_agent_job_output_bytes_total"), [
      "semaphore_agent_job_output_bytes_total 7",
    ]);
    assert.deepEqual(
      await samples(metrics, 'semaphore_agent_job_duration_seconds_count{result="failed"}'),
      ['semaphore_agent_job_duration_seconds_count{result="failed"} 1'],
    );
  } finally {
    metrics.close();
  }
});

Deno.test("utf8Length() counts UTF-8 bytes of long and multi-byte text", () => {
  assert.equal(utf8Length(""), 0);
  assert.equal(utf8Length("a€😀"), 1 + 3 + 4);
  const long = "é".repeat(100_000);
  assert.equal(utf8Length(long), new TextEncoder().encode(long).length);
});

Deno.test("AgentMetrics shows one state, hub requests by endpoint and status class, and the backlog", async () => {
  const metrics = new AgentMetrics();
  try {
    metrics.state("running-job");
    assert.deepEqual(
      (await samples(metrics, "semaphore_agent_state{")).filter((l) => l.endsWith(" 1")),
      ['semaphore_agent_state{state="running-job"} 1'],
    );
    metrics.hubRequest("sync", 200, 0.01);
    metrics.hubRequest("sync", 503, 0.02);
    metrics.hubRequest("sync", undefined, 30);
    metrics.hubRequest("logs", 422, 0.5);
    assert.deepEqual(await samples(metrics, "semaphore_agent_hub_requests_total"), [
      'semaphore_agent_hub_requests_total{endpoint="sync",code="2xx"} 1',
      'semaphore_agent_hub_requests_total{endpoint="sync",code="5xx"} 1',
      'semaphore_agent_hub_requests_total{endpoint="sync",code="error"} 1',
      'semaphore_agent_hub_requests_total{endpoint="logs",code="4xx"} 1',
    ]);
    assert.deepEqual(
      await samples(metrics, 'semaphore_agent_hub_request_duration_seconds_count{endpoint="sync"}'),
      ['semaphore_agent_hub_request_duration_seconds_count{endpoint="sync"} 3'],
    );
    metrics.syncFailuresInARow(4);
    assert.deepEqual(await samples(metrics, "semaphore_agent_sync_failures_in_a_row"), [
      "semaphore_agent_sync_failures_in_a_row 4",
    ]);
    metrics.watchLogBacklog(() =>
      Promise.resolve({ events: 12, bytes: 3456, oldestAgeSeconds: 61 })
    );
    assert.deepEqual(await samples(metrics, "semaphore_agent_log_"), [
      "semaphore_agent_log_backlog_events 12",
      "semaphore_agent_log_backlog_bytes 3456",
      "semaphore_agent_log_oldest_unsent_event_age_seconds 61",
    ]);
    metrics.watchLogBacklog(undefined);
    assert.deepEqual(await samples(metrics, "semaphore_agent_log_backlog_events"), [
      "semaphore_agent_log_backlog_events 0",
    ]);
    metrics.engineMetrics().imagePull?.({ seconds: 2, failed: true });
    assert.deepEqual(await samples(metrics, "semaphore_agent_image_pull_failures_total"), [
      "semaphore_agent_image_pull_failures_total 1",
    ]);
    metrics.jobResources({ cpuUserSeconds: 1.5, peakMemoryBytes: 2e8, peakProcesses: 51 });
    assert.deepEqual(await samples(metrics, "semaphore_agent_job_cpu_seconds_total"), [
      'semaphore_agent_job_cpu_seconds_total{mode="user"} 1.5',
    ]);
    assert.deepEqual(await samples(metrics, "semaphore_agent_last_job_peak_pids"), [
      "semaphore_agent_last_job_peak_pids 51",
    ]);
  } finally {
    metrics.close();
  }
});

Deno.test("AgentMetrics engineMetrics() passes StatsD gauges on to the other implementation", () => {
  const metrics = new AgentMetrics();
  try {
    const seen: string[] = [];
    const engine = metrics.engineMetrics({
      gauge: (name, value, tags) => seen.push(`${name}=${value} ${tags.join(",")}`),
      imagePull: (o) => seen.push(`pull ${o.seconds} ${o.failed}`),
    });
    engine.gauge("compose.docker.pull.rate", 1, ["semaphoreci/android"]);
    engine.imagePull?.({ seconds: 3, failed: false });
    assert.deepEqual(seen, ["compose.docker.pull.rate=1 semaphoreci/android", "pull 3 false"]);
  } finally {
    metrics.close();
  }
});

Deno.test("AgentMetrics process metrics describe this process", async () => {
  const metrics = new AgentMetrics();
  try {
    const text = await metrics.exposition();
    const value = (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
    assert.ok(value("semaphore_agent_process_resident_memory_bytes") > 1e6);
    assert.ok(value("semaphore_agent_process_open_fds") > 2);
    assert.ok(
      value("semaphore_agent_process_max_fds") >= value("semaphore_agent_process_open_fds"),
    );
    assert.ok(value("semaphore_agent_process_cpu_seconds_total") > 0);
    assert.ok(value("semaphore_agent_event_loop_lag_max_seconds") >= 0);
    assert.doesNotMatch(text, /nodejs_/);
  } finally {
    metrics.close();
  }
});

Deno.test("statusClass() sorts answers into 2xx/3xx/4xx/5xx and error", () => {
  assert.deepEqual(
    [200, 302, 401, 422, 500, 599, undefined, 0, 700].map(statusClass),
    ["2xx", "3xx", "4xx", "4xx", "5xx", "5xx", "error", "error", "error"],
  );
});

Deno.test("observedSink() passes the sink's back-pressure on", () => {
  const metrics = new AgentMetrics();
  try {
    const room = Promise.resolve();
    let full = true;
    const sink = observedSink({ write() {}, ready: () => full ? room : undefined }, metrics);
    assert.equal(sink.ready?.(), room);
    full = false;
    assert.equal(sink.ready?.(), undefined);
  } finally {
    metrics.close();
  }
});
