/**
 * The one job of a hosted agent (SEMAPHORE_COMPAT.md §7.4–7.7): accepting it (serialized, the
 * same id again is idempotent, another id is refused for the life of the process), building it
 * with the serve options, streaming its log from a line index, stopping it, and the pull
 * logger's teardown around `job_finished` (§5.6, DECISIONS.md 3, 9, 16):
 *
 * 1. `finished` callback (`{"result": "<r>"}`); its failure is logged and teardown goes on;
 * 2. the job logs `job_finished`;
 * 3. wait until a request with `X-Client-Name: archivator` that started after the job's
 *    commands ended has streamed the log completely (a failed fetch opens a bounded window for
 *    a retry, after which teardown goes on);
 * 4. close the log, upload it as an artifact if the job asks for it (§6.7), delete the file;
 * 5. `teardown_finished` callback (`{}`).
 *
 * It knows nothing about HTTP frameworks: `server/app.ts` turns its outcomes into responses.
 *
 * @module
 */

import {
  encodeEvent,
  type EventSink,
  type JobEvent,
  type JobResult,
} from "../lib/engine/events.ts";
import { EventLog } from "../lib/engine/event_log.ts";
import { Job, type JobOptions } from "../lib/engine/job.ts";
import type { FileInjection, JobLimits, ResourceUsage } from "../lib/engine/executor.ts";
import { createExecutor } from "../executors/for_job.ts";
import type { JobRequest } from "../lib/engine/job_request_types.ts";
import {
  JobRequestError,
  maxLogSize,
  parseJobRequestJson,
  validateForJob,
} from "../lib/engine/job_request.ts";
import type { Logger } from "../lib/util/agent_log.ts";
import type { Metrics } from "../lib/engine/metrics.ts";
import type { AgentMetrics } from "../lib/telemetry/agent_metrics.ts";
import { observedSink } from "../lib/telemetry/job_observer.ts";
import { sendFinishedCallback, sendTeardownFinishedCallback } from "../lib/reporting/callbacks.ts";
import {
  type ArtifactUploadOptions,
  uploadJobLogArtifact,
  uploadPolicyFromJobEnv,
} from "../lib/reporting/artifact_upload.ts";
import { after, formatGoDuration, type Timer } from "../lib/util/delay.ts";
import { VERSION } from "../lib/util/version.ts";
import { errorMessage } from "../lib/util/errors.ts";

/** The part of a job the controller drives ({@linkcode Job} in production). */
export interface RunnableJob {
  /** Runs the whole lifecycle, teardown hooks included; never rejects. */
  run(): Promise<JobResult>;
  /** Stops the job; idempotent. */
  stop(): Promise<void>;
  /** What the job used, once its processes ended (cgroup accounting). */
  readonly usage?: ResourceUsage;
}

/** The server state reported by `GET /status`. */
export type ServerState = "waiting-for-job" | "job-received";

/** The outcome of `POST /jobs` (§7.4). */
export type SubmitOutcome =
  | { readonly state: "ok" }
  | { readonly state: "already-running" }
  | { readonly state: "another-job" }
  /** The body is not a job request: 422. */
  | { readonly state: "invalid"; readonly message: string }
  /** The job cannot be built: 500. */
  | { readonly state: "cannot-build"; readonly message: string };

/** The outcome of `GET /jobs/{id}/log` (§7.5). */
export type LogOutcome =
  /** No job was accepted yet: 404. */
  | { readonly state: "no-job" }
  /** The id is not the accepted job's: 403. */
  | { readonly state: "other-job" }
  /** The log cannot be read (e.g. deleted after teardown): 500. */
  | { readonly state: "error"; readonly message: string }
  /** 200 with this JSONL body. */
  | {
    readonly state: "stream";
    readonly body: ReadableStream<Uint8Array>;
    /** The body's exact length, when known. */
    readonly length?: number;
  };

/** Options of {@linkcode JobsApi.openLog}. */
export interface OpenLogOptions {
  /** The request came from the archivator (`X-Client-Name: archivator`). @default false */
  readonly archivator?: boolean;
  /**
   * Settles when the response was delivered (resolves) or not (rejects), as Deno's
   * `ServeHandlerInfo.completed`. @default the end of the body stream counts as delivered
   */
  readonly delivered?: Promise<void>;
}

/** What the HTTP layer needs from the job side. */
export interface JobsApi {
  readonly state: ServerState;
  /** Handles one `POST /jobs` body. */
  submit(body: string): Promise<SubmitOutcome>;
  /** Opens the log of `jobId` from line `startFrom`. */
  openLog(jobId: string, startFrom: number, options?: OpenLogOptions): Promise<LogOutcome>;
  /** Stops the job in the background; does nothing without one (DECISIONS.md 2). */
  stop(): void;
}

/** Options of {@linkcode JobController}. */
export interface JobControllerOptions {
  readonly logger: Logger;
  /** Attempts of each callback, 1 s apart. @default 300 */
  readonly callbackRetryAttempts?: number;
  /** Pause between callback attempts in milliseconds. @default 1000 */
  readonly callbackRetryDelayMs?: number;
  /** `--pre-job-hook-path`; always sourced, a failure fails the job (§7.4). @default none */
  readonly preJobHookPath?: string;
  /** `--files` bind mounts. @default [] */
  readonly fileInjections?: readonly FileInjection[];
  /** `--expose-kvm-device`. @default true */
  readonly exposeKvmDevice?: boolean;
  /** `--job-memory-limit`, `--job-cpu-limit`, `--job-pids-limit`. @default none */
  readonly limits?: JobLimits;
  readonly metrics?: Metrics;
  /** Prometheus metrics (`--metrics-addr`). @default none */
  readonly agentMetrics?: AgentMetrics;
  /** `--redacted-vars`, resolved by `redactionPatterns()`. @default DEFAULT_REDACTED_VARS */
  readonly redactedVars?: readonly string[];
  /** Directory of the job log file. @default the OS temp dir */
  readonly logDir?: string;
  /**
   * How long teardown still waits for the archivator after one of its fetches failed.
   * @default 300000 (5 minutes)
   */
  readonly archiveRetryWindowMs?: number;
  /** Builds the job. @default Job.create */
  readonly createJob?: (options: JobOptions) => RunnableJob;
  /** Uploads the log as an artifact. @default uploadJobLogArtifact */
  readonly uploadJobLog?: (options: ArtifactUploadOptions) => Promise<unknown>;
}

interface ActiveJob {
  readonly id: string;
  readonly request: JobRequest;
  readonly log: EventLog;
  job?: RunnableJob;
  done?: Promise<JobResult>;
  /** The job's commands are over: archivator fetches from now on count. */
  teardownStarted: boolean;
  /** Resolved when `job_finished` is in the log. */
  readonly jobFinished: PromiseWithResolvers<void>;
  jobFinishedLogged: boolean;
  archived: boolean;
  readonly archive: PromiseWithResolvers<void>;
  archiveWindow?: Timer;
  /** The log file was deleted. */
  removed: boolean;
}

/** How long an archivator fetch waits for `job_finished` once the job's commands are over. */
const JOB_FINISHED_WAIT_MS = 2000;

/** The accepted job of a hosted agent and everything the server does with it. */
export class JobController implements JobsApi {
  readonly #logger: Logger;
  readonly #options: JobControllerOptions;
  readonly #createJob: (options: JobOptions) => RunnableJob;
  readonly #uploadJobLog: (options: ArtifactUploadOptions) => Promise<unknown>;
  #active: ActiveJob | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  /** Aborted at shutdown: archive waits end at once. */
  readonly #shutdown = new AbortController();
  /** Aborted when the shutdown grace period is over: callbacks stop retrying. */
  readonly #grace = new AbortController();

  constructor(options: JobControllerOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#createJob = options.createJob ?? ((o) => Job.create(o));
    this.#uploadJobLog = options.uploadJobLog ?? uploadJobLogArtifact;
  }

  /** The accepted job's id, for the agent log's `job_id`; undefined before a job arrives. */
  get activeJobId(): string | undefined {
    return this.#active?.id;
  }

  /** `job-received` as soon as a job was accepted, forever after (§7.6). */
  get state(): ServerState {
    return this.#active ? "job-received" : "waiting-for-job";
  }

  /** Resolves with the result once the accepted job's run (teardown included) is over. */
  get done(): Promise<JobResult> | undefined {
    return this.#active?.done;
  }

  /** Handles `POST /jobs` bodies one at a time, as the original's mutex does. */
  submit(body: string): Promise<SubmitOutcome> {
    const outcome = this.#queue.then(() => this.#submit(body));
    this.#queue = outcome.catch(() => {});
    return outcome;
  }

  async #submit(body: string): Promise<SubmitOutcome> {
    const logger = this.#logger;
    logger.info(`New job arrived. Agent version ${VERSION}.`);
    if (this.#shutdown.signal.aborted) {
      return { state: "cannot-build", message: "the agent is shutting down" };
    }
    let request: JobRequest;
    try {
      request = parseJobRequestJson(body);
    } catch (error) {
      if (!(error instanceof JobRequestError)) throw error;
      logger.error(`Failed to parse job request, returning 422: ${error.message}`);
      return { state: "invalid", message: error.message };
    }
    const active = this.#active;
    if (active) {
      if (active.id === request.job_id) {
        logger.info(`Job ${request.job_id} is already running, no need to start another job`);
        return { state: "already-running" };
      }
      logger.info(`Another job ${active.id} is already running, rejecting ${request.job_id}`);
      return { state: "another-job" };
    }
    const problem = validateForJob(request);
    if (problem !== undefined) return this.#cannotBuild(problem);
    // Hosted jobs have no token refresh, so the original cannot build a push logger (§5.1).
    if (request.logger.method === "push") {
      return this.#cannotBuild("HTTP logger needs a refresh token function");
    }
    let log: EventLog;
    try {
      log = await EventLog.create({
        dir: this.#options.logDir,
        onError: (error) => logger.error(`[job=${request.job_id}] ${error.message}`),
      });
    } catch (error) {
      return this.#cannotBuild(`Cannot create the job log: ${errorMessage(error)}`);
    }
    const entry: ActiveJob = {
      id: request.job_id,
      request,
      log,
      teardownStarted: false,
      jobFinished: Promise.withResolvers<void>(),
      jobFinishedLogged: false,
      archived: false,
      archive: Promise.withResolvers<void>(),
      removed: false,
    };
    let job: RunnableJob;
    try {
      job = this.#createJob(this.#jobOptions(entry));
    } catch (error) {
      await log.remove().catch(() => {});
      return this.#cannotBuild(errorMessage(error));
    }
    entry.job = job;
    this.#active = entry;
    entry.done = job.run().then(
      (result) => {
        if (job.usage) this.#options.agentMetrics?.jobResources(job.usage);
        return result;
      },
      (error) => {
        logger.error(`[job=${entry.id}] Job run failed: ${errorMessage(error)}`);
        return "failed" as const;
      },
    ).finally(() => this.#release(entry));
    return { state: "ok" };
  }

  #cannotBuild(message: string): SubmitOutcome {
    this.#logger.error(`Failed to create a new job, returning 500: ${message}`);
    return { state: "cannot-build", message };
  }

  #jobOptions(entry: ActiveJob): JobOptions {
    const options = this.#options;
    const logger = this.#logger;
    const log = entry.log;
    const sink: EventSink = {
      write(event: JobEvent) {
        log.write(event);
        if (logger.debugEnabled) logger.debug(encodeEvent(event).trimEnd());
        if (event.event === "job_finished") {
          entry.jobFinishedLogged = true;
          entry.jobFinished.resolve();
        }
      },
      ready: () => log.ready(),
    };
    return {
      createExecutor,
      request: entry.request,
      sink: options.agentMetrics ? observedSink(sink, options.agentMetrics) : sink,
      logger,
      selfHosted: false,
      exposeKvmDevice: options.exposeKvmDevice ?? true,
      limits: options.limits,
      fileInjections: options.fileInjections ?? [],
      failOnMissingFiles: false,
      preJobHookPath: options.preJobHookPath || undefined,
      sourcePreJobHook: true,
      failOnPreJobHookError: true,
      hostEnvVars: [],
      metrics: options.agentMetrics?.engineMetrics(options.metrics) ?? options.metrics,
      redactedVars: options.redactedVars,
      hooks: {
        beforeJobFinished: (result) => this.#beforeJobFinished(entry, result),
        afterJobFinished: () => this.#afterJobFinished(entry),
      },
    };
  }

  #callbackOptions(entry: ActiveJob) {
    const attempts = this.#options.callbackRetryAttempts ?? 300;
    return {
      token: entry.request.callbacks.token,
      attempts: attempts > 0 ? attempts : 300,
      logger: this.#logger,
      signal: this.#grace.signal,
      retryDelayMs: this.#options.callbackRetryDelayMs,
    };
  }

  async #beforeJobFinished(entry: ActiveJob, result: JobResult): Promise<void> {
    entry.teardownStarted = true;
    // DECISIONS.md 3: a failed callback is logged (by sendCallback) and teardown goes on.
    await sendFinishedCallback(
      entry.request.callbacks.finished,
      result,
      this.#callbackOptions(entry),
    );
  }

  async #afterJobFinished(entry: ActiveJob): Promise<void> {
    const logger = this.#logger;
    await entry.log.flush().catch(() => {});
    if (!entry.archived && !this.#shutdown.signal.aborted) {
      logger.info(`[job=${entry.id}] Waiting for the job log to be archived`);
      await this.#waitForArchive(entry);
    }
    await entry.log.close();
    await this.#uploadJobLog({
      log: entry.log,
      jobId: entry.id,
      envVars: entry.request.env_vars,
      policy: uploadPolicyFromJobEnv(entry.request.env_vars),
      trimmed: entry.log.byteSize >= maxLogSize(entry.request),
      logger,
    });
    await this.#removeLog(entry);
    await sendTeardownFinishedCallback(
      entry.request.callbacks.teardown_finished,
      this.#callbackOptions(entry),
    );
  }

  #waitForArchive(entry: ActiveJob): Promise<void> {
    const signal = this.#shutdown.signal;
    if (signal.aborted) return Promise.resolve();
    const onAbort = () => entry.archive.resolve();
    signal.addEventListener("abort", onAbort, { once: true });
    return entry.archive.promise.finally(() => {
      signal.removeEventListener("abort", onAbort);
      entry.archiveWindow?.cancel();
    });
  }

  /** An archivator fetch that counts streamed the whole log: teardown may go on. */
  #archiveSucceeded(entry: ActiveJob): void {
    if (entry.archived) return;
    entry.archived = true;
    entry.archiveWindow?.cancel();
    this.#logger.info(`[job=${entry.id}] Job log was archived`);
    entry.archive.resolve();
  }

  /** An archivator fetch that counts failed: wait for a retry, but not forever (§15 #274). */
  #archiveFailed(entry: ActiveJob, reason: string): void {
    if (entry.archived) return;
    const windowMs = this.#options.archiveRetryWindowMs ?? 300_000;
    this.#logger.error(`[job=${entry.id}] Archivator fetch of the job log failed: ${reason}`);
    if (entry.archiveWindow !== undefined) return;
    entry.archiveWindow = after(windowMs, () => {
      if (entry.archived) return;
      this.#logger.error(
        `[job=${entry.id}] No successful archivator fetch within ${
          formatGoDuration(windowMs)
        } of a failed one - closing the job log anyway`,
      );
      entry.archive.resolve();
    });
  }

  async #removeLog(entry: ActiveJob): Promise<void> {
    entry.removed = true;
    try {
      await entry.log.remove();
    } catch (error) {
      this.#logger.error(`[job=${entry.id}] ${errorMessage(error)}`);
    }
  }

  /** After the run: no timer and no file outlive the job, whatever happened. */
  async #release(entry: ActiveJob): Promise<void> {
    entry.archiveWindow?.cancel();
    if (!entry.removed) await this.#removeLog(entry);
  }

  /** Opens the job's log from line `startFrom` (§7.5, DECISIONS.md 16). */
  async openLog(
    jobId: string,
    startFrom: number,
    options: OpenLogOptions = {},
  ): Promise<LogOutcome> {
    const { archivator = false, delivered } = options;
    const entry = this.#active;
    if (!entry) return { state: "no-job" };
    if (entry.id !== jobId) return { state: "other-job" };
    const counts = archivator && entry.teardownStarted;
    if (counts && !entry.jobFinishedLogged) await this.#awaitJobFinished(entry);
    const start = Number.isSafeInteger(startFrom) && startFrom > 0 ? startFrom : 0;
    if (entry.jobFinishedLogged && !entry.removed && (!counts || delivered)) {
      // The log is complete: Deno streams the file itself (flat memory for a 100 MB log), and
      // for the archivator only a delivered response counts.
      try {
        const { body, length } = await entry.log.streamFile(start);
        delivered?.then(
          () => counts && this.#archiveSucceeded(entry),
          (error) =>
            counts &&
            this.#archiveFailed(entry, `the response was not delivered: ${errorMessage(error)}`),
        );
        return { state: "stream", body, length };
      } catch (error) {
        const message = errorMessage(error);
        this.#logger.error(`Error while streaming logs: ${message}`);
        if (counts) this.#archiveFailed(entry, message);
        return { state: "error", message };
      }
    }
    let reader: ReadableStreamDefaultReader<Uint8Array>;
    let first: ReadableStreamReadResult<Uint8Array>;
    try {
      if (entry.removed) throw new Error(`open ${entry.log.path}: no such file or directory`);
      reader = entry.log.stream(start).getReader();
      first = await reader.read();
    } catch (error) {
      const message = errorMessage(error);
      this.#logger.error(`Error while streaming logs: ${message}`);
      if (counts) this.#archiveFailed(entry, message);
      return { state: "error", message };
    }
    let pending: ReadableStreamReadResult<Uint8Array> | undefined = first;
    let settled = false;
    const finish = (ok: boolean, reason = "") => {
      if (settled) return;
      settled = true;
      if (!counts) return;
      if (!ok) return this.#archiveFailed(entry, reason);
      if (!delivered) return this.#archiveSucceeded(entry);
      // The last bytes may still be on their way: only a delivered response counts.
      delivered.then(
        () => this.#archiveSucceeded(entry),
        (error) =>
          this.#archiveFailed(entry, `the response was not delivered: ${errorMessage(error)}`),
      );
    };
    if (counts) delivered?.catch((error) => finish(false, errorMessage(error)));
    const body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          const next = pending ?? await reader.read();
          pending = undefined;
          if (next.done) {
            controller.close();
            finish(true);
          } else {
            controller.enqueue(next.value);
          }
        } catch (error) {
          controller.error(error);
          finish(false, errorMessage(error));
        }
      },
      cancel: async (reason) => {
        finish(false, `the client went away (${errorMessage(reason ?? "cancelled")})`);
        await reader.cancel(reason).catch(() => {});
      },
    }, { highWaterMark: 0 });
    return { state: "stream", body };
  }

  /**
   * The archivator usually fetches as soon as the `finished` callback reached Semaphore, which
   * is a moment before `job_finished` is logged: wait for it, but briefly, since a hub that
   * fetches before answering the callback would otherwise wait for us while we wait for it.
   */
  async #awaitJobFinished(entry: ActiveJob): Promise<void> {
    let timer: Timer | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = after(JOB_FINISHED_WAIT_MS, () => resolve(false));
    });
    const logged = await Promise.race([entry.jobFinished.promise.then(() => true), timeout]);
    timer?.cancel();
    if (!logged) {
      this.#logger.info(
        `[job=${entry.id}] Archivator fetch before job_finished was logged - streaming it as is`,
      );
    }
  }

  /** `POST /stop`: stops the job in the background (§7.8); nothing to do without one. */
  stop(): void {
    const entry = this.#active;
    if (!entry?.job) {
      this.#logger.info("Stop requested, but no job was received - nothing to stop");
      return;
    }
    this.#logger.info(`Stop requested for job ${entry.id}`);
    entry.job.stop().catch((error) =>
      this.#logger.error(`[job=${entry.id}] Cannot stop the job: ${errorMessage(error)}`)
    );
  }

  /**
   * Process shutdown (SIGINT/SIGTERM): stops the job, ends the archive wait at once, gives the
   * callbacks `graceMs` to get through, and resolves when the job's run is over (or the grace
   * period is). No new job is accepted afterwards.
   */
  async shutdown(graceMs = 10_000): Promise<void> {
    this.#shutdown.abort(new Error("the agent is shutting down"));
    const entry = this.#active;
    if (!entry?.job || !entry.done) {
      this.#grace.abort(new Error("the agent is shutting down"));
      return;
    }
    const timer = after(
      graceMs,
      () => this.#grace.abort(new Error("the agent is shutting down")),
    );
    // After the grace period the callbacks give up, so the run ends soon after; a run that
    // still hangs (a stuck artifact upload, say) is left behind after a second period.
    let deadline: Timer | undefined;
    const giveUp = new Promise<void>((resolve) => deadline = after(2 * graceMs, resolve));
    try {
      await entry.job.stop().catch(() => {});
      await Promise.race([entry.done, giveUp]);
    } finally {
      timer.cancel();
      deadline?.cancel();
    }
  }
}
