/**
 * `agent start`, the self-hosted agent (SEMAPHORE_COMPAT.md §8): register, then the sync loop
 * and its state machine (states sent, actions obeyed, `next_sync_after`, jittered retries,
 * forced syncs, the unable-to-sync shutdown after 10 minutes), signals (§8.9 and DECISIONS.md
 * 11) and the shutdown sequence (§8.8: disconnect, shutdown hook, exit code). One job at a time
 * runs in a {@linkcode ListenerJob}; the API decides idle, single-job and grace-period shutdowns.
 *
 * @module
 */

import { agentLogFromEnv, type Logger } from "../util/agent_log.ts";
import { type AgentConfig, loadConfig } from "./config.ts";
import { delay, formatGoDuration, randomBetween } from "../util/delay.ts";
import { errorMessage, UsageError } from "../util/errors.ts";
import { type JobResult, unixSeconds } from "../engine/events.ts";
import {
  type AgentState,
  hubBaseUrl,
  HubClient,
  type HubRetries,
  type SyncRequest,
  type SyncResponse,
} from "./hub_client.ts";
import { ListenerJob } from "./listener_job.ts";
import { cleanUpAfterCrashedAgents, logJobIsolation } from "../../executors/for_job.ts";
import { archName, hostName, osName } from "./os_info.ts";
import type { PushDelays } from "./push_logger.ts";
import { runShutdownHook, type ShutdownReason, shutdownReasonFromApi } from "./shutdown_hook.ts";
import { VERSION } from "../util/version.ts";
import type { AgentMetrics } from "../telemetry/agent_metrics.ts";
import type { MetricsServer, Readiness } from "../telemetry/metrics_server.ts";
import { hostRedactor, redactingLogger } from "../engine/redactor.ts";

/** Waits and limits of the listener; tests shorten them. */
export interface ListenerTimings {
  /** Pause after a failed sync or when `next_sync_after` is missing. @default [3000, 6000] */
  readonly syncRetryMs?: readonly [number, number];
  /** Shut down (exit 1) when no sync succeeded for this long. @default 600000 */
  readonly unableToSyncMs?: number;
  /** Attempts and pauses of register, get job and disconnect. @default the original's */
  readonly hubRetries?: Partial<HubRetries>;
  /** Push logger pauses. @default the original's */
  readonly pushDelays?: PushDelays;
  /** Per-request timeout. @default 30000 */
  readonly httpTimeoutMs?: number;
  /** Pause between the reports of a job stopped by a second signal. @default 1000 */
  readonly forcefulSyncRetryMs?: number;
}

/** Options of {@linkcode Listener.start}. */
export interface ListenerOptions {
  readonly config: AgentConfig;
  readonly logger: Logger;
  /** @default the original's timings */
  readonly timings?: ListenerTimings;
  /** Signals handled as §8.9 / DECISIONS.md 11 describe. @default none (call `interrupt()`) */
  readonly signals?: readonly Deno.Signal[];
  /** Called with the name the hub assigned at registration (log prefix). */
  readonly onName?: (name: string) => void;
  /** Directory of the job event logs. @default the OS temp dir */
  readonly eventLogDir?: string;
  /** The environment job shells start from. @default the agent's, scrubbed (DECISIONS.md 14) */
  readonly shellEnv?: Readonly<Record<string, string>>;
  /** Prometheus metrics (`--metrics-addr`). @default none */
  readonly metrics?: AgentMetrics;
}

/** How recent the last good sync must be for the agent to count as ready (`/readyz`). */
export const READY_SYNC_AGE_MS = 60_000;

interface Exit {
  readonly reason: ShutdownReason;
  readonly code: number;
}

/** The log line of a sync request (§8.3). */
export function describeSyncRequest(request: SyncRequest): string {
  switch (request.state) {
    case "finished-job":
      return `SYNC request (state: ${request.state}, job: ${request.job_id}, ` +
        `result: ${request.job_result})`;
    case "waiting-for-jobs":
      return `SYNC request (state: ${request.state})`;
    default:
      return `SYNC request (state: ${request.state}, job: ${request.job_id})`;
  }
}

/** The log line of a sync response (§8.3). */
export function describeSyncResponse(response: SyncResponse): string {
  switch (response.action) {
    case "run-job":
    case "stop-job":
      return `SYNC response (action: ${response.action}, job: ${response.job_id})`;
    case "shutdown":
      return `SYNC response (action: shutdown, reason: ${response.shutdown_reason})`;
    default:
      return `SYNC response (action: ${response.action})`;
  }
}

/** The self-hosted agent: started with {@linkcode Listener.start}, ends with `done`. */
export class Listener {
  /** The exit code, once the agent shut down (or could not register). */
  readonly done: Promise<number>;
  readonly #config: AgentConfig;
  readonly #logger: Logger;
  readonly #timings: Required<Omit<ListenerTimings, "hubRetries" | "pushDelays">>;
  readonly #options: ListenerOptions;
  readonly #hub: HubClient;
  /** Aborted by a third signal: every request and wait ends at once. */
  readonly #hardStop = new AbortController();
  #resolveHardExit!: (code: number) => void;

  #state: AgentState = "waiting-for-jobs";
  #jobId = "";
  #jobResult: JobResult | "" = "";
  #interruptedAt = 0;
  #signalCount = 0;
  #forceful = false;
  #current: ListenerJob | undefined;
  /** Resolves after the current job's result was recorded. */
  #currentDone: Promise<void> | undefined;
  /** Aborted to cut the wait before the next sync short (forced sync). */
  #wake = new AbortController();
  /** Aborted to abandon the sync request in flight, or registration (second signal). */
  #syncAbort = new AbortController();
  #registered = false;
  #lastSyncSuccess: number | undefined;
  #syncFailures = 0;
  #signalHandlers: [Deno.Signal, () => void][] = [];

  private constructor(options: ListenerOptions) {
    const timings = options.timings ?? {};
    this.#options = options;
    this.#config = options.config;
    // A shutdown hook may print the agent's own secret env-vars (DECISIONS.md 24).
    const redactor = hostRedactor(this.#config.envVars, this.#config.redactedVars);
    this.#logger = redactor ? redactingLogger(options.logger, redactor) : options.logger;
    this.#timings = {
      syncRetryMs: timings.syncRetryMs ?? [3000, 6000],
      unableToSyncMs: timings.unableToSyncMs ?? 600_000,
      httpTimeoutMs: timings.httpTimeoutMs ?? 30_000,
      forcefulSyncRetryMs: timings.forcefulSyncRetryMs ?? 1000,
    };
    this.#hub = new HubClient({
      baseUrl: hubBaseUrl(this.#config.endpoint, this.#config.noHttps),
      registrationToken: this.#config.token,
      logger: this.#logger,
      retries: timings.hubRetries,
      timeoutMs: this.#timings.httpTimeoutMs,
      signal: this.#hardStop.signal,
      onResponse: (endpoint, status, seconds) =>
        options.metrics?.hubRequest(endpoint, status, seconds),
    });
    options.metrics?.state("registering");
    const hardExit = new Promise<number>((resolve) => this.#resolveHardExit = resolve);
    const run = this.#run().finally(() => this.#removeSignalHandlers());
    this.done = Promise.race([run, hardExit]);
  }

  /** Registers and runs the agent in the background. */
  static start(options: ListenerOptions): Listener {
    return new Listener(options);
  }

  /** The state the next sync reports. */
  get state(): AgentState {
    return this.#state;
  }

  /** The id of the job being run, for the agent log's `job_id`; undefined between jobs. */
  get runningJobId(): string | undefined {
    return this.#current ? this.#jobId : undefined;
  }

  #setState(state: AgentState): void {
    this.#state = state;
    this.#options.metrics?.state(state);
  }

  /** Whether the agent can take work: registered, and a sync answered within the last 60 s. */
  readiness(now: number = performance.now()): Readiness {
    if (!this.#registered) return { ready: false, reason: "not registered with Semaphore" };
    if (this.#lastSyncSuccess === undefined) {
      return { ready: false, reason: "no sync has succeeded yet" };
    }
    const age = now - this.#lastSyncSuccess;
    if (age > READY_SYNC_AGE_MS) {
      return {
        ready: false,
        reason: `the last successful sync was ${Math.round(age / 1000)} s ago`,
      };
    }
    return { ready: true };
  }

  /**
   * What SIGINT/SIGTERM do: the first sets `interrupted_at` and forces a sync (the API decides,
   * §8.9); the second stops the job, reports it, disconnects and exits 0 (DECISIONS.md 11); a
   * third exits 1 at once.
   */
  interrupt(): void {
    this.#signalCount++;
    if (this.#signalCount === 1) {
      this.#logger.info("Termination signal received");
      this.#interruptedAt = unixSeconds();
      this.#wake.abort();
    } else if (this.#signalCount === 2) {
      this.#logger.info(
        "Second termination signal received - stopping the job and shutting down",
      );
      this.#forceful = true;
      this.#syncAbort.abort(new Error("second termination signal"));
      this.#wake.abort();
    } else {
      this.#logger.error("Third termination signal received - exiting now");
      this.#hardStop.abort(new Error("third termination signal"));
      this.#resolveHardExit(1);
    }
  }

  #installSignalHandlers(): void {
    for (const signal of this.#options.signals ?? []) {
      const handler = () => this.interrupt();
      Deno.addSignalListener(signal, handler);
      this.#signalHandlers.push([signal, handler]);
    }
  }

  #removeSignalHandlers(): void {
    for (const [signal, handler] of this.#signalHandlers) {
      Deno.removeSignalListener(signal, handler);
    }
    this.#signalHandlers = [];
  }

  async #run(): Promise<number> {
    this.#installSignalHandlers();
    this.#logger.info("Starting Agent");
    this.#logger.info("Registering Agent");
    const config = this.#config;
    try {
      const answer = await this.#hub.register({
        name: config.name,
        version: VERSION,
        pid: Deno.pid,
        os: await osName(),
        arch: archName(),
        hostname: hostName(),
        single_job: config.disconnectAfterJob,
        idle_timeout: config.disconnectAfterIdleTimeout,
        interruption_grace_period: config.interruptionGracePeriod,
        job_id: config.jobId,
      }, { signal: this.#syncAbort.signal });
      this.#registered = true;
      if (answer.name) this.#options.onName?.(answer.name);
      this.#logger.info(`Successfully registered agent. Name: ${answer.name}`);
      this.#options.metrics?.state(this.#state);
    } catch (error) {
      if (this.#forceful) return await this.#shutdown({ reason: "INTERRUPTED", code: 0 });
      this.#logger.error(
        `Could not start agent: failed to register agent: ${errorMessage(error)}`,
      );
      return 1;
    }
    this.#logger.info("Starting to poll for jobs");
    const exit = await this.#syncLoop();
    return await this.#shutdown(exit);
  }

  async #syncLoop(): Promise<Exit> {
    let lastSuccess = performance.now();
    for (;;) {
      if (this.#forceful) return await this.#forcefulStop();
      const request = this.#syncRequest();
      this.#logger.info(describeSyncRequest(request));
      let wait: number;
      try {
        const response = await this.#hub.sync(request, { signal: this.#syncAbort.signal });
        lastSuccess = performance.now();
        this.#lastSyncSuccess = lastSuccess;
        this.#syncFailures = 0;
        this.#options.metrics?.syncFailuresInARow(0);
        this.#logger.info(describeSyncResponse(response));
        if (this.#forceful) continue;
        const exit = this.#obey(response, request);
        if (exit) return exit;
        wait = response.next_sync_after > 0
          ? response.next_sync_after
          : randomBetween(this.#timings.syncRetryMs);
      } catch (error) {
        if (this.#forceful) continue;
        this.#options.metrics?.syncFailuresInARow(++this.#syncFailures);
        this.#logger.error(`[SYNC ERR] Failed to sync with API: ${errorMessage(error)}`);
        if (performance.now() - lastSuccess > this.#timings.unableToSyncMs) {
          this.#logger.error(
            `Unable to sync with Semaphore for over ` +
              `${formatGoDuration(this.#timings.unableToSyncMs)}.`,
          );
          return { reason: "UNABLE_TO_SYNC", code: 1 };
        }
        wait = randomBetween(this.#timings.syncRetryMs);
      }
      this.#logger.info(`Waiting ${formatGoDuration(wait)} for next sync...`);
      await delay(wait, this.#wake.signal);
      if (this.#wake.signal.aborted) this.#wake = new AbortController();
    }
  }

  #syncRequest(): SyncRequest {
    return {
      state: this.#state,
      job_id: this.#jobId,
      job_result: this.#state === "finished-job" ? this.#jobResult : "",
      interrupted_at: this.#interruptedAt,
    };
  }

  /** Applies one sync answer (§8.3 "Actions") to `sent`; returns the exit for `shutdown`. */
  #obey(response: SyncResponse, sent: SyncRequest): Exit | undefined {
    switch (response.action) {
      case "continue":
        return undefined;
      case "run-job":
        this.#runJob(response.job_id, sent);
        return undefined;
      case "stop-job":
        this.#stopJob(response.job_id);
        return undefined;
      case "shutdown":
        this.#logger.info(
          `Agent shutdown requested by Semaphore due to: ${response.shutdown_reason}`,
        );
        return { reason: shutdownReasonFromApi(response.shutdown_reason), code: 0 };
      case "wait-for-jobs":
        if (this.#state !== "finished-job" && this.#state !== "waiting-for-jobs") {
          this.#logger.warn(`Ignoring wait-for-jobs while in state ${this.#state}`);
          return undefined;
        }
        if (this.#state === "finished-job" && sent.state !== "finished-job") {
          // The answer to a sync sent before the job finished: the hub has not seen the
          // result yet, so keep reporting it.
          this.#logger.warn(
            "Ignoring wait-for-jobs that answered a sync sent before the job ended",
          );
          return undefined;
        }
        this.#setState("waiting-for-jobs");
        this.#jobId = "";
        this.#jobResult = "";
        this.#current = undefined;
        this.#currentDone = undefined;
        return undefined;
      default:
        this.#logger.warn(`Ignoring unknown sync action: ${response.action}`);
        return undefined;
    }
  }

  #runJob(jobId: string, sent: SyncRequest): void {
    // A hub may answer the `finished-job` report with the next job at once (the original takes
    // it): the answer proves the hub has the result. Never while a job is starting or running,
    // nor when the finished job was not in the request that got this answer.
    const reported = this.#state === "finished-job" && sent.state === "finished-job" &&
      sent.job_id === this.#jobId;
    if (this.#state !== "waiting-for-jobs" && !reported) {
      this.#logger.warn(`Ignoring run-job for ${jobId}: already in state ${this.#state}`);
      return;
    }
    this.#setState("starting-job");
    this.#jobId = jobId;
    this.#jobResult = "";
    const run = ListenerJob.start({
      jobId,
      hub: this.#hub,
      config: this.#config,
      logger: this.#logger,
      eventLogDir: this.#options.eventLogDir,
      shellEnv: this.#options.shellEnv,
      pushDelays: this.#options.timings?.pushDelays,
      httpTimeoutMs: this.#timings.httpTimeoutMs,
      metrics: this.#options.metrics,
      onRunning: () => {
        if (this.#current === run && this.#state === "starting-job") {
          this.#setState("running-job");
        }
      },
    });
    this.#current = run;
    this.#currentDone = run.result.then((result) => {
      if (this.#current !== run) return;
      this.#setState("finished-job");
      this.#jobResult = result;
      this.#wake.abort(); // report it at once
    });
  }

  #stopJob(jobId: string): void {
    if (this.#state === "finished-job" || !this.#current) return;
    this.#setState("stopping-job");
    this.#jobId = jobId || this.#jobId;
    void this.#current.stop();
  }

  /** DECISIONS.md 11: stop the job, report it once, then shut down as interrupted. */
  async #forcefulStop(): Promise<Exit> {
    const run = this.#current;
    if (run && this.#state !== "finished-job") {
      await run.stop({ abandonFetch: true });
      await this.#currentDone;
    }
    // Report the job a few times at most: the operator asked to stop now.
    for (let attempt = 1; this.#state === "finished-job" && attempt <= 3; attempt++) {
      const request = this.#syncRequest();
      this.#logger.info(describeSyncRequest(request));
      try {
        const response = await this.#hub.sync(request);
        this.#logger.info(describeSyncResponse(response));
        break;
      } catch (error) {
        this.#logger.error(`[SYNC ERR] Failed to sync with API: ${errorMessage(error)}`);
        if (attempt < 3) await delay(this.#timings.forcefulSyncRetryMs, this.#hardStop.signal);
      }
    }
    return { reason: "INTERRUPTED", code: 0 };
  }

  /** §8.8: disconnect, the shutdown hook, the last line, the exit code. */
  async #shutdown(exit: Exit): Promise<number> {
    this.#options.metrics?.state("shutting-down");
    if (this.#registered) {
      this.#logger.info("Disconnecting the Agent from Semaphore");
      try {
        await this.#hub.disconnect();
        this.#logger.info("Disconnected.");
      } catch (error) {
        this.#logger.error(
          `Failed to disconnect from Semaphore even after ` +
            `${this.#options.timings?.hubRetries?.disconnectAttempts ?? 100} tries: ` +
            errorMessage(error),
        );
      }
    }
    // A job the API left running is stopped, so nothing outlives the agent (DECISIONS.md 4).
    const run = this.#current;
    if (run && this.#state !== "finished-job") {
      this.#logger.info(`Stopping job ${run.jobId} before shutting down`);
      await run.stop({ abandonFetch: true });
      await run.result;
    }
    if (this.#config.shutdownHookPath) {
      await runShutdownHook(this.#config.shutdownHookPath, exit.reason, this.#logger);
    }
    this.#logger.info(`Agent shutting down due to: ${exit.reason}`);
    return exit.code;
  }
}

function urlHost(name: string): string {
  try {
    return new URL(name).host;
  } catch {
    return name;
  }
}

/**
 * Runs `agent start` with the flags given on the command line (by name, without `--`);
 * resolves with the exit code once the agent shut down.
 *
 * @throws {UsageError} exit code 1 for a bad configuration or log level (§3.1.5, §2.1).
 */
export async function startAgent(explicitFlags: Record<string, unknown>): Promise<number> {
  const config = await loadConfig(explicitFlags);
  // A URL name (AWS STS) shows as [host] until the hub returns the real name (§2.1).
  let name = config.nameIsUrl ? `[${urlHost(config.name)}]` : config.name;
  let listener: Listener | undefined;
  const logger = agentLogFromEnv({
    name: () => name,
    format: config.logFormat,
    jobId: () => listener?.runningJobId,
  });
  await logJobIsolation(logger);
  await cleanUpAfterCrashedAgents(logger);
  if (config.nameSource === "random") {
    logger.info("Agent name was not assigned - using a random one.");
  }
  // Metrics are loaded only when asked for: an agent without them pays nothing.
  const telemetry = config.metricsAddr && await import("../telemetry/agent_metrics.ts");
  const metrics = telemetry ? new telemetry.AgentMetrics() : undefined;
  let server: MetricsServer | undefined;
  if (config.metricsAddr && metrics) {
    const { startMetricsServer } = await import("../telemetry/metrics_server.ts");
    try {
      server = await startMetricsServer({
        address: config.metricsAddr,
        metrics,
        logger,
        readiness: () => listener?.readiness() ?? { ready: false, reason: "the agent is starting" },
      });
    } catch (error) {
      throw new UsageError(errorMessage(error), { exitCode: 1 });
    }
  }
  try {
    listener = Listener.start({
      config,
      logger,
      signals: Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"],
      onName: (assigned) => name = assigned,
      metrics,
    });
    return await listener.done;
  } finally {
    await server?.close();
  }
}
