/**
 * The one interface between the job engine and an executor (shell, container). Types only:
 * the engine drives an `Executor` without knowing which one it is; `executors/for_job.ts` builds
 * it from an `ExecutorSetup`, and the mode that runs a job hands that builder to `Job.create`.
 *
 * Every method that logs writes its events to the `EventSink` the executor was built with.
 *
 * @module
 */

import type { EnvVar, JobFile, JobRequest } from "./job_request_types.ts";
import type { EventSink } from "./events.ts";
import type { Logger } from "../util/agent_log.ts";
import type { Metrics } from "./metrics.ts";

/** A host environment variable (`--env-vars NAME=VALUE`): the value is raw, not base64. */
export interface HostEnvVar {
  readonly name: string;
  readonly value: string;
}

/** How one command is run and shown (SEMAPHORE_COMPAT.md §9.3 step 7). */
export interface RunCommandOptions {
  /** Shown as the directive instead of the command, with a first line `Running: <command>`. */
  readonly alias?: string;
  /** A line `Warning: <warning>` shown after the `Running:` line (hooks). */
  readonly warning?: string;
  /** Logs nothing at all. @default false */
  readonly silent?: boolean;
}

/** What a silently run command printed and how it exited (§9.8). */
export interface CommandOutput {
  readonly output: string;
  readonly exitCode: number;
}

/**
 * What a job used, as far as the executor could measure it (cgroup accounting, DECISIONS.md 23):
 * a figure it cannot know is absent.
 */
export interface ResourceUsage {
  readonly cpuUserSeconds?: number;
  readonly cpuSystemSeconds?: number;
  readonly peakMemoryBytes?: number;
  /** The most processes (and threads) the job had at once. */
  readonly peakProcesses?: number;
  readonly blockReadBytes?: number;
  readonly blockWriteBytes?: number;
}

/** Opt-in limits of a job (`--job-memory-limit`, `--job-cpu-limit`, `--job-pids-limit`). */
export interface JobLimits {
  /** Bytes of memory. */
  readonly memoryBytes?: number;
  /** CPUs, fractional (`1.5`). */
  readonly cpus?: number;
  /** Processes and threads at once. */
  readonly pids?: number;
}

/** The executor lifecycle the job engine drives (§5.2). Exit codes follow the original. */
export interface Executor extends AsyncDisposable {
  /** Host preparation (authorized_keys, jump point, compose manifest). 0 when ready. */
  prepare(): Promise<number>;
  /** Starts the job shell (may log executor-specific pseudo-commands). 0 when running. */
  start(): Promise<number>;
  /** The `Exporting environment variables` pseudo-command (§9.4, §10.6). */
  exportEnvVars(envVars: readonly EnvVar[], hostEnvVars: readonly HostEnvVar[]): Promise<number>;
  /** The `Injecting Files` pseudo-command (§9.5, §10.6). */
  injectFiles(files: readonly JobFile[]): Promise<number>;
  /** Runs one command in the job shell and logs it; resolves with its exit code. */
  runCommand(command: string, options?: RunCommandOptions): Promise<number>;
  /** Runs one command silently and returns its output (§9.8). */
  getOutputFromCommand(command: string): Promise<CommandOutput>;
  /** Stops what runs now: the running command ends with exit code 1. Idempotent. */
  stop(): Promise<void>;
  /**
   * The job's commands are over: ends every process the job left and waits until none is left,
   * then returns what the job used (`undefined` when it cannot be measured). Called before
   * `job_finished`; `cleanup()` calls it too when it was not.
   */
  finish?(): Promise<ResourceUsage | undefined>;
  /** Removes everything the executor made (processes, files, containers). Idempotent. */
  cleanup(): Promise<void>;
}

/** A `--files HOST:CONTAINER` entry (container executor only). */
export interface FileInjection {
  readonly hostPath: string;
  readonly destination: string;
}

/** What an executor is built from: the job and the mode's settings that concern the host. */
export interface ExecutorSetup {
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
  /**
   * The environment the job shell starts from; its `SEMAPHORE_AGENT_*` variables are dropped
   * (DECISIONS.md 14). @default the agent's environment
   */
  readonly shellEnv?: Readonly<Record<string, string>>;
  /** StatsD metrics (serve only, §7.9). @default none */
  readonly metrics?: Metrics;
  /** Limits on what the job may use. @default none */
  readonly limits?: JobLimits;
}

/**
 * Builds the executor a job asks for.
 *
 * @throws {JobConstructionError} for an unknown executor or a container job without containers.
 */
export type CreateExecutor = (setup: ExecutorSetup) => Executor;
