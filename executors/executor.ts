/**
 * The one interface between the job engine and an executor (shell, container). Types only:
 * both sides import this module, so `lib/job.ts` never imports an executor's internals and no
 * executor imports the job engine.
 *
 * Every method that logs writes its events to the `EventSink` the executor was built with.
 *
 * @module
 */

import type { EnvVar, JobFile } from "../lib/job_request_types.ts";

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
  /** Removes everything the executor made (processes, files, containers). Idempotent. */
  cleanup(): Promise<void>;
}
