/**
 * One job of `agent start`, from `run-job` to its result (SEMAPHORE_COMPAT.md §8.3, §8.4,
 * §8.7, §8.10): fetch the request from the hub (retried), parse it, open the local event log,
 * start pushing it to the hub, build the job with the agent's host options, run it, and in the
 * job's teardown flush the log, upload it as an artifact when configured (§6.7) and delete it.
 * A fetch or construction failure resolves as `failed`. It knows nothing of the sync loop: the
 * listener reads `result` and calls `stop()`.
 *
 * @module
 */

import type { Logger } from "../util/agent_log.ts";
import type { AgentConfig } from "./config.ts";
import { EventLog } from "../engine/event_log.ts";
import type { JobResult } from "../engine/events.ts";
import type { HubClient } from "./hub_client.ts";
import { Job } from "../engine/job.ts";
import { createExecutor } from "../../executors/for_job.ts";
import { parseJobRequestJson } from "../engine/job_request.ts";
import type { JobRequest } from "../engine/job_request_types.ts";
import { type PushDelays, PushLogger } from "./push_logger.ts";
import { uploadJobLogArtifact } from "../reporting/artifact_upload.ts";
import { errorMessage } from "../util/errors.ts";
import type { AgentMetrics } from "../telemetry/agent_metrics.ts";
import { observedSink } from "../telemetry/job_observer.ts";

/** Options of {@linkcode ListenerJob.start}. */
export interface ListenerJobOptions {
  readonly jobId: string;
  readonly hub: HubClient;
  readonly config: AgentConfig;
  readonly logger: Logger;
  /** Directory of the local event log. @default the OS temp dir */
  readonly eventLogDir?: string;
  /** The environment the job shell starts from. @default the agent's, scrubbed */
  readonly shellEnv?: Readonly<Record<string, string>>;
  /** Push logger pauses. @default the original's */
  readonly pushDelays?: PushDelays;
  /** Per-request timeout of the push logger. @default 30000 */
  readonly httpTimeoutMs?: number;
  /** Called once the job is built and about to run. */
  readonly onRunning?: () => void;
  /** Prometheus metrics (`--metrics-addr`). @default none */
  readonly metrics?: AgentMetrics;
}

/** A job being fetched, built or run for the hub. */
export class ListenerJob {
  readonly jobId: string;
  /** The job's result; never rejects (`failed` when it could not be fetched or built). */
  readonly result: Promise<JobResult>;
  readonly #options: ListenerJobOptions;
  readonly #logger: Logger;
  readonly #abortFetch = new AbortController();
  #job: Job | undefined;
  #stopRequested = false;

  private constructor(options: ListenerJobOptions) {
    this.#options = options;
    this.jobId = options.jobId;
    this.#logger = options.logger;
    this.result = this.#run();
  }

  /** Starts fetching and running the job in the background. */
  static start(options: ListenerJobOptions): ListenerJob {
    return new ListenerJob(options);
  }

  /** Whether the job was built and started running. */
  get running(): boolean {
    return this.#job !== undefined;
  }

  /**
   * Stops the job: the running command ends and nothing else starts. A job still being fetched
   * runs and stops at once (its log shows `job_started` and `job_finished`), unless
   * `abandonFetch` is set: then the fetch is dropped and the result is `stopped`. Idempotent.
   */
  async stop(options: { readonly abandonFetch?: boolean } = {}): Promise<void> {
    this.#stopRequested = true;
    if (options.abandonFetch) this.#abortFetch.abort(new Error("the job was stopped"));
    await this.#job?.stop();
  }

  async #run(): Promise<JobResult> {
    const { jobId, hub } = this.#options;
    let request: JobRequest;
    try {
      const text = await hub.getJob(jobId, { signal: this.#abortFetch.signal });
      request = parseJobRequestJson(text);
    } catch (error) {
      if (this.#abortFetch.signal.aborted) {
        this.#logger.info(`Job ${jobId} was stopped before it could start`);
        return "stopped";
      }
      this.#logger.error(`Could not get job ${jobId}: ${errorMessage(error)}`);
      return "failed";
    }
    if (this.#abortFetch.signal.aborted) {
      this.#logger.info(`Job ${jobId} was stopped before it could start`);
      return "stopped";
    }
    let log: EventLog;
    try {
      log = await EventLog.create({
        dir: this.#options.eventLogDir,
        onError: (error) => this.#logger.error(`[job=${jobId}] Job log: ${error.message}`),
      });
    } catch (error) {
      this.#logger.error(`Could not construct job ${jobId}: ${errorMessage(error)}`);
      return "failed";
    }
    try {
      return await this.#runWithLog(request, log);
    } finally {
      await log.remove().catch((error) => this.#logger.error(errorMessage(error)));
    }
  }

  async #runWithLog(request: JobRequest, log: EventLog): Promise<JobResult> {
    const { jobId, hub, config, metrics } = this.#options;
    let pusher: PushLogger | undefined;
    let job: Job;
    try {
      if (request.logger.method === "push") {
        pusher = new PushLogger({
          source: log,
          url: request.logger.url,
          token: request.logger.token,
          refreshToken: () => hub.refreshLogToken(),
          logger: this.#logger,
          flushTimeoutSeconds: config.logsFlushTimeoutSeconds,
          delays: this.#options.pushDelays,
          timeoutMs: this.#options.httpTimeoutMs,
          onResponse: (status, seconds) => metrics?.hubRequest("logs", status, seconds),
        });
        const watched = pusher;
        metrics?.watchLogBacklog(() => watched.backlog());
      }
      job = Job.create({
        createExecutor,
        request,
        sink: metrics ? observedSink(log, metrics) : log,
        metrics: metrics?.engineMetrics(),
        logger: this.#logger,
        selfHosted: true,
        exposeKvmDevice: false,
        hostEnvVars: config.envVars,
        redactedVars: config.redactedVars,
        fileInjections: config.files,
        failOnMissingFiles: config.failOnMissingFiles,
        limits: config.jobLimits,
        preJobHookPath: config.preJobHookPath || undefined,
        sourcePreJobHook: config.sourcePreJobHook,
        failOnPreJobHookError: config.failOnPreJobHookError,
        postJobHookPath: config.postJobHookPath || undefined,
        shellEnv: this.#options.shellEnv,
        hooks: {
          afterJobFinished: async () => {
            // The log's close (§8.7): flush to the hub, then the artifact (§6.7).
            const trimmed = (await pusher?.close())?.trimmed ?? false;
            await log.close();
            await uploadJobLogArtifact({
              log,
              jobId,
              envVars: request.env_vars,
              policy: config.uploadJobLogs,
              trimmed,
              logger: this.#logger,
            });
          },
        },
      });
    } catch (error) {
      this.#logger.error(`Could not construct job ${jobId}: ${errorMessage(error)}`);
      return "failed";
    }
    this.#job = job;
    pusher?.start();
    this.#options.onRunning?.();
    if (this.#stopRequested) void job.stop();
    try {
      const result = await job.run();
      if (job.usage) metrics?.jobResources(job.usage);
      return result;
    } finally {
      // Normally closed by the teardown hook already; this covers a hook that never ran.
      await pusher?.close();
      metrics?.watchLogBacklog(undefined);
    }
  }
}
