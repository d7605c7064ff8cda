/**
 * The agent's Prometheus metrics (`--metrics-addr`), made with prom-client: jobs, the
 * self-hosted client's state and hub traffic, the log push backlog, image pulls, and the
 * process itself. Every name starts with `semaphore_agent_`; labels take a handful of fixed
 * values (no job ids, image names or free text), so cardinality stays bounded.
 *
 * Loaded only when metrics are on: modes import it with `import()`.
 *
 * @module
 */

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { cpuUsage } from "node:process";
import type { JobResult } from "../engine/events.ts";
import type { ImagePullOutcome, Metrics } from "../engine/metrics.ts";
import type { ResourceUsage } from "../engine/executor.ts";

const PREFIX = "semaphore_agent_";

/** The states of a self-hosted agent the state gauge shows (SEMAPHORE_COMPAT.md §8.3). */
export const AGENT_STATES = [
  "registering",
  "waiting-for-jobs",
  "starting-job",
  "running-job",
  "stopping-job",
  "finished-job",
  "shutting-down",
] as const;

/** One state of {@linkcode AGENT_STATES}. */
export type AgentStateName = typeof AGENT_STATES[number];

/** The hub endpoints the request metrics name (the path's last word). */
export type HubEndpoint = "register" | "sync" | "job" | "refresh" | "disconnect" | "logs";

/** The log push backlog at one moment. */
export interface LogBacklog {
  readonly events: number;
  readonly bytes: number;
  /** Age of the oldest event not yet accepted by the hub; 0 when nothing waits. */
  readonly oldestAgeSeconds: number;
}

/** Status class of an HTTP answer, or `error` when none came. */
export function statusClass(status: number | undefined): string {
  return status === undefined || status < 100 || status > 599
    ? "error"
    : `${Math.floor(status / 100)}xx`;
}

/** How many descriptors this process has open (`/proc/self/fd`); 0 where that is unknown. */
function openFds(): number {
  try {
    let count = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) count++;
    return Math.max(0, count - 1); // the directory handle read just now
  } catch {
    return 0;
  }
}

/** The soft `Max open files` limit (`/proc/self/limits`); 0 where that is unknown. */
function maxFds(): number {
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    const soft = /^Max open files\s+(\d+)/m.exec(limits)?.[1];
    return soft ? Number(soft) : 0;
  } catch {
    return 0;
  }
}

/**
 * The process's own figures: resident memory, heap, open and allowed descriptors, CPU time,
 * start time and event loop lag. Written here rather than taken from prom-client's Node.js
 * defaults, whose names and types (`nodejs_*`, gauges named `_total`) `promtool check metrics`
 * rejects and which describe Node internals that Deno does not have.
 */
function registerProcessMetrics(registry: Registry): () => void {
  const registers = [registry];
  const startTime = Math.round(Date.now() / 1000 - performance.now() / 1000);
  const lag = monitorEventLoopDelay({ resolution: 20 });
  lag.enable();
  new Gauge({
    name: `${PREFIX}process_resident_memory_bytes`,
    help: "Resident memory of the agent process",
    registers,
    collect(this: Gauge) {
      this.set(Deno.memoryUsage().rss);
    },
  });
  new Gauge({
    name: `${PREFIX}process_heap_used_bytes`,
    help: "JavaScript heap in use by the agent process",
    registers,
    collect(this: Gauge) {
      this.set(Deno.memoryUsage().heapUsed);
    },
  });
  new Gauge({
    name: `${PREFIX}process_open_fds`,
    help: "Open file descriptors of the agent process",
    registers,
    collect(this: Gauge) {
      this.set(openFds());
    },
  });
  new Gauge({
    name: `${PREFIX}process_max_fds`,
    help: "The agent process's limit of open file descriptors",
    registers,
    collect(this: Gauge) {
      this.set(maxFds());
    },
  });
  let lastCpu = 0;
  new Counter({
    name: `${PREFIX}process_cpu_seconds_total`,
    help: "CPU time (user and system) used by the agent process",
    registers,
    collect(this: Counter) {
      const { user, system } = cpuUsage();
      const now = (user + system) / 1e6;
      if (now > lastCpu) this.inc(now - lastCpu);
      lastCpu = now;
    },
  });
  new Gauge({
    name: `${PREFIX}process_start_time_seconds`,
    help: "When the agent process started, in seconds since the epoch",
    registers,
  }).set(startTime);
  new Gauge({
    name: `${PREFIX}event_loop_lag_seconds`,
    help: "Mean event loop delay of the agent process since the last scrape",
    registers,
    collect(this: Gauge) {
      this.set(Number.isFinite(lag.mean) ? lag.mean / 1e9 : 0);
    },
  });
  new Gauge({
    name: `${PREFIX}event_loop_lag_max_seconds`,
    help: "Longest event loop delay of the agent process since the last scrape",
    registers,
    collect(this: Gauge) {
      this.set(lag.max > 0 ? lag.max / 1e9 : 0);
      lag.reset();
    },
  });
  return () => lag.disable();
}

/** Every metric of one agent process, in one registry. */
export class AgentMetrics {
  /** The registry `/metrics` serves. */
  readonly registry: Registry = new Registry();
  readonly #jobsStarted: Counter;
  readonly #jobsFinished: Counter<"result">;
  readonly #jobDuration: Histogram<"result">;
  readonly #commands: Counter;
  readonly #outputBytes: Counter;
  readonly #jobsRunning: Gauge;
  readonly #jobCpu: Counter<"mode">;
  readonly #jobIo: Counter<"direction">;
  readonly #lastJobPeakMemory: Gauge;
  readonly #lastJobPeakPids: Gauge;
  readonly #state: Gauge<"state">;
  readonly #hubRequests: Counter<"endpoint" | "code">;
  readonly #hubLatency: Histogram<"endpoint">;
  readonly #syncFailures: Gauge;
  readonly #imagePullDuration: Histogram;
  readonly #imagePullFailures: Counter;
  #backlog: (() => Promise<LogBacklog | undefined>) | undefined;
  #ready: (() => boolean) | undefined;
  readonly #stopProcessMetrics: () => void;

  constructor() {
    const registers = [this.registry];
    this.#jobsStarted = new Counter({
      name: `${PREFIX}jobs_started_total`,
      help: "Jobs this agent started",
      registers,
    });
    this.#jobsFinished = new Counter({
      name: `${PREFIX}jobs_finished_total`,
      help: "Jobs this agent finished, by result (passed, failed, stopped)",
      labelNames: ["result"],
      registers,
    });
    this.#jobDuration = new Histogram({
      name: `${PREFIX}job_duration_seconds`,
      help: "Wall time of finished jobs, from job_started to job_finished, by result",
      labelNames: ["result"],
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400],
      registers,
    });
    this.#commands = new Counter({
      name: `${PREFIX}commands_total`,
      help: "Commands run in jobs (each cmd_started event: commands, epilogues, internal steps)",
      registers,
    });
    this.#outputBytes = new Counter({
      name: `${PREFIX}job_output_bytes_total`,
      help: "Bytes of command output written to job logs",
      registers,
    });
    this.#jobsRunning = new Gauge({
      name: `${PREFIX}jobs_running`,
      help: "Jobs running now (0 or 1)",
      registers,
    });
    this.#jobCpu = new Counter({
      name: `${PREFIX}job_cpu_seconds_total`,
      help: "CPU time used by finished jobs' processes, by mode (user, system)",
      labelNames: ["mode"],
      registers,
    });
    this.#jobIo = new Counter({
      name: `${PREFIX}job_block_io_bytes_total`,
      help: "Bytes finished jobs read from and wrote to block devices, by direction",
      labelNames: ["direction"],
      registers,
    });
    this.#lastJobPeakMemory = new Gauge({
      name: `${PREFIX}last_job_peak_memory_bytes`,
      help: "Peak memory of the last finished job",
      registers,
    });
    this.#lastJobPeakPids = new Gauge({
      name: `${PREFIX}last_job_peak_pids`,
      help: "Peak number of processes of the last finished job",
      registers,
    });
    this.#state = new Gauge({
      name: `${PREFIX}state`,
      help: "The self-hosted agent's state: 1 for the current one, 0 for the others",
      labelNames: ["state"],
      registers,
    });
    this.#hubRequests = new Counter({
      name: `${PREFIX}hub_requests_total`,
      help: "Requests to the Semaphore API, by endpoint and status class (2xx, 4xx, 5xx, error)",
      labelNames: ["endpoint", "code"],
      registers,
    });
    this.#hubLatency = new Histogram({
      name: `${PREFIX}hub_request_duration_seconds`,
      help: "Latency of requests to the Semaphore API, by endpoint",
      labelNames: ["endpoint"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.#syncFailures = new Gauge({
      name: `${PREFIX}sync_failures_in_a_row`,
      help: "Failed syncs since the last one that succeeded",
      registers,
    });
    const backlog: readonly [string, string, (b: LogBacklog) => number][] = [
      ["log_backlog_events", "Job log events not yet accepted by the hub", (b) => b.events],
      ["log_backlog_bytes", "Bytes of job log not yet accepted by the hub", (b) => b.bytes],
      [
        "log_oldest_unsent_event_age_seconds",
        "Age of the oldest job log event not yet accepted by the hub",
        (b) => b.oldestAgeSeconds,
      ],
    ];
    for (const [name, help, pick] of backlog) {
      const read = () => this.#backlog?.().catch(() => undefined);
      new Gauge({
        name: `${PREFIX}${name}`,
        help,
        registers,
        async collect(this: Gauge): Promise<void> {
          const now = await read();
          this.set(now ? pick(now) : 0);
        },
      });
    }
    const ready = () => this.#ready?.() ?? false;
    new Gauge({
      name: `${PREFIX}ready`,
      help: "1 when the agent can take work (what /readyz answers 200 for), else 0",
      registers,
      collect(this: Gauge) {
        this.set(ready() ? 1 : 0);
      },
    });
    this.#imagePullDuration = new Histogram({
      name: `${PREFIX}image_pull_duration_seconds`,
      help: "Time spent pulling the images of container jobs",
      buckets: [0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600],
      registers,
    });
    this.#imagePullFailures = new Counter({
      name: `${PREFIX}image_pull_failures_total`,
      help: "Image pulls of container jobs that failed",
      registers,
    });
    this.#stopProcessMetrics = registerProcessMetrics(this.registry);
    this.#jobsRunning.set(0);
    this.#syncFailures.set(0);
    for (const result of ["passed", "failed", "stopped"]) this.#jobsFinished.inc({ result }, 0);
  }

  /** A job began (`job_started`). */
  jobStarted(): void {
    this.#jobsStarted.inc();
    this.#jobsRunning.set(1);
  }

  /** A job ended (`job_finished`) after `seconds` of wall time. */
  jobFinished(result: JobResult, seconds: number): void {
    this.#jobsFinished.inc({ result });
    this.#jobDuration.observe({ result }, seconds);
    this.#jobsRunning.set(0);
  }

  /** A command started in a job. */
  commandStarted(): void {
    this.#commands.inc();
  }

  /** A job printed `bytes` of output. */
  output(bytes: number): void {
    this.#outputBytes.inc(bytes);
  }

  /** What a finished job used, where the agent measured it. */
  jobResources(resources: ResourceUsage): void {
    if (resources.cpuUserSeconds !== undefined) {
      this.#jobCpu.inc({ mode: "user" }, resources.cpuUserSeconds);
    }
    if (resources.cpuSystemSeconds !== undefined) {
      this.#jobCpu.inc({ mode: "system" }, resources.cpuSystemSeconds);
    }
    if (resources.blockReadBytes !== undefined) {
      this.#jobIo.inc({ direction: "read" }, resources.blockReadBytes);
    }
    if (resources.blockWriteBytes !== undefined) {
      this.#jobIo.inc({ direction: "write" }, resources.blockWriteBytes);
    }
    if (resources.peakMemoryBytes !== undefined) {
      this.#lastJobPeakMemory.set(resources.peakMemoryBytes);
    }
    if (resources.peakProcesses !== undefined) {
      this.#lastJobPeakPids.set(resources.peakProcesses);
    }
  }

  /** The self-hosted agent entered `state`. */
  state(state: AgentStateName): void {
    for (const s of AGENT_STATES) this.#state.set({ state: s }, s === state ? 1 : 0);
  }

  /** One request to the hub ended: `status` undefined when no answer came. */
  hubRequest(endpoint: HubEndpoint, status: number | undefined, seconds: number): void {
    this.#hubRequests.inc({ endpoint, code: statusClass(status) });
    this.#hubLatency.observe({ endpoint }, seconds);
  }

  /** Failed syncs since the last good one. */
  syncFailuresInARow(count: number): void {
    this.#syncFailures.set(count);
  }

  /** Where the log backlog is read at each scrape (the running job's push logger). */
  watchLogBacklog(read: (() => Promise<LogBacklog | undefined>) | undefined): void {
    this.#backlog = read;
  }

  /** Where readiness is read at each scrape (`semaphore_agent_ready`). */
  watchReadiness(ready: () => boolean): void {
    this.#ready = ready;
  }

  /** An image pull of a container job ended. */
  imagePull(outcome: ImagePullOutcome): void {
    this.#imagePullDuration.observe(outcome.seconds);
    if (outcome.failed) this.#imagePullFailures.inc();
  }

  /** The engine's metrics interface, for executors (image pulls), joined with `other`. */
  engineMetrics(other?: Metrics): Metrics {
    return {
      gauge: (name, value, tags) => other?.gauge(name, value, tags),
      imagePull: (outcome) => {
        this.imagePull(outcome);
        other?.imagePull?.(outcome);
      },
    };
  }

  /** The exposition text of every metric. */
  exposition(): Promise<string> {
    return this.registry.metrics();
  }

  /** Stops the event loop delay monitor (the registry stays readable). */
  close(): void {
    this.#stopProcessMetrics();
  }

  /** The exposition's Content-Type. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
