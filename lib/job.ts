/**
 * The job lifecycle (SEMAPHORE_COMPAT.md §5): env, files, hooks, commands, exit-130 handling,
 * epilogues, result, stop and teardown. It knows nothing of HTTP or of how the log leaves the
 * agent: the mode that runs the job passes `hooks` for what happens around `job_finished`.
 *
 * @module
 */

import type { EventSink, JobResult } from "./events.ts";
import type { JobRequest } from "./job_request_types.ts";
import type { HostEnvVar } from "../executors/executor.ts";
import type { Logger } from "./agent_log.ts";
import type { Metrics } from "./metrics.ts";

/** A `--files HOST:CONTAINER` entry (container executor only). */
export interface FileInjection {
  readonly hostPath: string;
  readonly destination: string;
}

/** What the mode running a job does around `job_finished` (§5.6). */
export interface JobTeardownHooks {
  /** Before `job_finished` is logged (pull logger: the `finished` callback). */
  beforeJobFinished?(result: JobResult): Promise<void>;
  /** After `job_finished` is logged (archive wait, log close, teardown callback, flush). */
  afterJobFinished?(result: JobResult): Promise<void>;
}

/** Options of {@linkcode Job.create}. */
export interface JobOptions {
  readonly request: JobRequest;
  /** Where events go (the event log, usually wrapped by a live printer). */
  readonly sink: EventSink;
  readonly logger: Logger;
  /** Self-hosted: no jump point, authorized_keys or `.bash_profile` edits (§9.1). @default false */
  readonly selfHosted?: boolean;
  /** Pass `/dev/kvm` to containers. @default false */
  readonly exposeKvmDevice?: boolean;
  /** `--files` bind mounts (container executor). @default [] */
  readonly fileInjections?: readonly FileInjection[];
  /** @default false */
  readonly failOnMissingFiles?: boolean;
  /** Pre-job hook script. @default none */
  readonly preJobHookPath?: string;
  /** `source <path>` instead of `bash <path>`. @default false */
  readonly sourcePreJobHook?: boolean;
  /** @default false */
  readonly failOnPreJobHookError?: boolean;
  /** Post-job hook script. @default none */
  readonly postJobHookPath?: string;
  /** Host env vars exported with the job's, overriding them (§8.10). @default [] */
  readonly hostEnvVars?: readonly HostEnvVar[];
  /** StatsD metrics (serve only, §7.9). @default none */
  readonly metrics?: Metrics;
  /** Mode-specific teardown around `job_finished`. */
  readonly hooks?: JobTeardownHooks;
}
