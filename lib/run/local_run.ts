/**
 * `agent run JOB.yaml` (SEMAPHORE_COMPAT.md §3.3 with DECISIONS.md 13): one local job, shown
 * live in readable form, optionally written as a JSONL event log; the exit code is the result
 * (0 passed, 1 failed, 130 stopped). SIGINT/SIGTERM/SIGHUP stop the job, which runs no
 * epilogue and cleans up. Output that cannot be written (stdout closed by `| head`, a full disk
 * under `--log-file`) stops the job the same way; the run then fails with one line saying so.
 *
 * Unlike the original, a local run leaves the user's home alone: no `authorized_keys`, no
 * `/tmp/ssh_jump_point`, no `source` lines appended to `~/.bash_profile` (those serve hosted
 * debug sessions, and on a developer's machine they would pile up lines sourcing deleted files).
 *
 * Start-up: the job's shell is started as soon as the file is read, before the request parser
 * and the job engine are even loaded (`executors/shell_ahead.ts`; the rest loads from
 * `deferred.ts`): its login and handshake then overlap reading and checking the request. A
 * request that turns out not to be valid, or to be a container job, discards that shell (it ran
 * nothing of the job) before anything else is said.
 *
 * @module
 */

import { encodeEvent, type EventSink, type JobEvent, type JobResult } from "../engine/events.ts";
import { readFileCapped } from "../util/capped_read.ts";
import { type JobRequest, MAX_JOB_FILE_BYTES } from "../engine/job_request_types.ts";
import type { FileInjection } from "../engine/executor.ts";
import type { Job } from "../engine/job.ts";
import { type ShellAhead, startShellAhead } from "../../executors/shell_ahead.ts";
import type { Logger } from "../util/agent_log.ts";
import { errorMessage, UsageError } from "../util/errors.ts";
import { type JobLimitTexts, parseJobLimits } from "../engine/job_limits.ts";
import { redactionPatterns } from "../engine/redaction_patterns.ts";

/** Options of {@linkcode runJobFile}. */
export interface RunJobFileOptions {
  /** The YAML job file. */
  readonly path: string;
  /** Its bytes, when the caller has read them already. @default read from `path` */
  readonly contents?: Uint8Array;
  /** Also write the JSONL event log here. @default none */
  readonly logFile?: string;
  /** Where the readable job goes. @default stdout */
  readonly write?: (text: string) => void;
  /** Colour the output. @default stdout is a terminal and NO_COLOR is unset */
  readonly color?: boolean;
  /** The environment the job shell starts from. @default the agent's, scrubbed */
  readonly shellEnv?: Readonly<Record<string, string>>;
  /** `--log-format` of the agent's own log (stderr). @default `SEMAPHORE_AGENT_LOG_FORMAT`, else text */
  readonly logFormat?: string;
  /** `--job-memory-limit`, `--job-cpu-limit`, `--job-pids-limit` as given. @default none */
  readonly limits?: JobLimitTexts;
  /** `--redacted-vars` patterns as given (undefined: the defaults; empty: off). */
  readonly redactedVars?: readonly string[];
  /**
   * Builds the job's sandbox from the parsed request (a request `--print-requests` wrote:
   * `pipeline/replay.ts`). @default none: the job runs as the request says, in the real HOME
   */
  readonly sandbox?: (request: JobRequest) => Promise<JobSandbox>;
}

/** Where a job runs instead of the real HOME ({@linkcode RunJobFileOptions.sandbox}). */
export interface JobSandbox {
  /** The request to run (a container job gets the command that loads the toolbox first). */
  readonly request: JobRequest;
  /** The environment the job shell starts from (its HOME is the sandbox). */
  readonly shellEnv: Readonly<Record<string, string>>;
  /** Values redacted whatever their names (a pipeline's secrets). */
  readonly secretValues?: readonly string[];
  readonly fileInjections: readonly FileInjection[];
  /** Cleans up after the job; resolves with a line to show, if any. */
  finish(result: JobResult): Promise<string | undefined>;
}

/**
 * What may be a container job (`executor: dockercompose`): no shell is started ahead for it. A
 * container job this misses only starts a shell that is then discarded.
 */
const CONTAINER_JOB = /dockercompose/;

/** Decodes any bytes, one character per byte (enough to look for an ASCII word). */
const latin1 = new TextDecoder("latin1");

/** Callback attempts of `agent run` (§3.3). */
const CALLBACK_ATTEMPTS = 60;

const EXIT_CODES: Record<JobResult, number> = { passed: 0, failed: 1, stopped: 130 };

/** Texts up to this many UTF-16 units are encoded into a reused buffer (3 bytes per unit). */
const REUSED_TEXT_UNITS = 256 * 1024;

/**
 * Writes texts to `file` synchronously. Texts are encoded into one reused buffer, so the job's
 * output (a `cmd_output` per terminal read) costs no new buffer per write.
 */
function textWriter(file: { writeSync(bytes: Uint8Array): number }): (text: string) => void {
  const encoder = new TextEncoder();
  let buffer = new Uint8Array(0);
  return (text) => {
    let bytes: Uint8Array;
    if (text.length <= REUSED_TEXT_UNITS) {
      if (buffer.length < text.length * 3) buffer = new Uint8Array(text.length * 3);
      bytes = buffer.subarray(0, encoder.encodeInto(text, buffer).written);
    } else {
      bytes = encoder.encode(text);
    }
    let written = 0;
    while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
  };
}

/** A JSONL file sink: each event is on disk before the next is written. */
function openLogFile(path: string): EventSink & Disposable {
  let file: Deno.FsFile;
  try {
    // A new file is the user's alone: it holds the job's output (DECISIONS.md 20).
    file = Deno.openSync(path, { write: true, create: true, truncate: true, mode: 0o600 });
  } catch (error) {
    throw new UsageError(
      `Cannot open log file '${path}': ${error instanceof Error ? error.message : error}`,
    );
  }
  const writeText = textWriter(file);
  return {
    write(event: JobEvent) {
      writeText(encodeEvent(event));
    },
    [Symbol.dispose]() {
      file.close();
    },
  };
}

/**
 * Runs one job file and resolves with the exit code.
 *
 * @throws {UsageError} (exit code 2) for an unreadable or invalid job file or log file.
 */
export async function runJobFile(options: RunJobFileOptions): Promise<number> {
  const {
    path,
    logFile,
    write = textWriter(Deno.stdout),
    color = Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR"),
  } = options;
  let limits;
  try {
    limits = parseJobLimits(options.limits ?? {});
  } catch (error) {
    throw new UsageError(errorMessage(error));
  }
  let redactedVars: readonly string[];
  try {
    redactedVars = redactionPatterns(options.redactedVars);
  } catch (error) {
    throw new UsageError(`Cannot read --redacted-vars: ${errorMessage(error)}`);
  }
  // From here on a signal stops the job: at once when it runs, else as soon as it exists.
  let job: Job | undefined;
  /** Set once the job's commands are over and its result is being reported. */
  let reporting = false;
  let show: ((text: string) => void) | undefined;
  // A signal also ends the callbacks' retries, which can otherwise take a minute each.
  const interrupted = new AbortController();
  const onSignal = () => {
    if (reporting) show?.("\nInterrupted: not waiting for the callbacks\n");
    else if (!(job?.stopped ?? interrupted.signal.aborted)) show?.("\nStopping the job...\n");
    interrupted.abort(new Error("interrupted"));
    job?.stop();
  };
  // SIGHUP too (the terminal closed): dying of it would leave the job's processes, cgroup and
  // env files to the next agent.
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);
  let ahead: ShellAhead | undefined;
  let logger: Logger | undefined;
  let leftovers: Promise<void> | undefined;
  try {
    let contents = options.contents;
    if (contents === undefined) {
      try {
        contents = readFileCapped(path, MAX_JOB_FILE_BYTES);
      } catch {
        // the request reader says why (it reads the file again)
      }
    }
    // The job's shell starts now and boots while the request is read and checked: it needs
    // nothing of it (executors/shell_ahead.ts). Spawned, with its handshake written, before
    // loading and parsing, which hold the thread.
    // Not for a sandboxed job (its own HOME), nor for what may be a container job.
    if (!options.sandbox && contents && !CONTAINER_JOB.test(latin1.decode(contents))) {
      ahead = startShellAhead({ shellEnv: options.shellEnv, limits });
      await ahead.spawned;
    }
    // Loaded while the shell boots: the request parser (with the YAML package), the engine.
    const {
      agentLogFromEnv,
      cleanUpAfterCrashedAgents,
      createExecutor,
      createLivePrinter,
      formatUsage,
      Job,
      logJobIsolation,
      parseJobRequestFile,
      sendFinishedCallback,
      sendTeardownFinishedCallback,
    } = await import("./deferred.ts");
    let request;
    try {
      request = parseJobRequestFile(path, contents);
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error), {
        cause: error,
      });
    }
    const sandbox = options.sandbox ? await options.sandbox(request) : undefined;
    if (sandbox) request = sandbox.request;
    const jobId = request.job_id;
    // The diagnostic log goes to stderr, so stdout is the job alone: warnings and errors only
    // (e.g. a callback URL that does not answer and is being retried), everything at
    // `SEMAPHORE_AGENT_LOG_LEVEL` when that is set.
    try {
      logger = agentLogFromEnv({
        defaultLevel: "warn",
        destination: "stderr",
        format: options.logFormat,
        jobId: () => jobId,
      });
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error), {
        cause: error,
      });
    }
    const jobLogger = logger;
    using file = logFile ? openLogFile(logFile) : undefined;
    // A sink that fails (stdout closed by `| head`, a full disk under --log-file) stops the job,
    // which then ends and is cleaned up as usual; nothing is written to that sink any more.
    let outputFailure: string | undefined;
    const guard = <T extends unknown[]>(what: string, fn: (...args: T) => void) => {
      let broken = false;
      return (...args: T): void => {
        if (broken) return;
        try {
          fn(...args);
        } catch (error) {
          broken = true;
          outputFailure ??= `Cannot write ${what}: ${errorMessage(error)}`;
          job?.stop();
        }
      };
    };
    const shown = show = guard("the job's output", write);
    const printer = createLivePrinter({ write: shown, color });
    const writeFile = file && guard(`the log file '${logFile}'`, (event: JobEvent) => {
      file.write(event);
    });
    const sink: EventSink = {
      write(event) {
        writeFile?.(event);
        printer.write(event);
      },
    };
    const { callbacks } = request;
    let started: Job;
    try {
      started = job = Job.create({
        createExecutor: (setup) => createExecutor(setup, ahead),
        request,
        sink,
        logger,
        selfHosted: true, // see the module comment: no edits to the user's home
        shellEnv: sandbox?.shellEnv ?? options.shellEnv,
        fileInjections: sandbox?.fileInjections,
        secretValues: sandbox?.secretValues,
        exposeKvmDevice: true,
        limits,
        redactedVars,
        hooks: {
          async beforeJobFinished(result) {
            reporting = true;
            await sendFinishedCallback(callbacks.finished, result, {
              token: callbacks.token,
              attempts: CALLBACK_ATTEMPTS,
              logger: jobLogger,
              signal: interrupted.signal,
            });
          },
          async afterJobFinished() {
            await sendTeardownFinishedCallback(callbacks.teardown_finished, {
              token: callbacks.token,
              attempts: CALLBACK_ATTEMPTS,
              logger: jobLogger,
              signal: interrupted.signal,
            });
          },
        },
      });
    } catch (error) {
      throw new UsageError(`${path}: ${error instanceof Error ? error.message : error}`);
    }
    // A shell started ahead that the job did not take (a container job) goes now.
    await ahead?.discard(logger);
    // Interrupted while the request was read: the job ends as stopped, running nothing.
    if (interrupted.signal.aborted) {
      shown("\nStopping the job...\n");
      started.stop();
    }

    await logJobIsolation(logger);
    // What killed agents left: before a container job starts (its names may clash), and beside a
    // shell job, which asks Docker only when a dead job's host dir is left (a killed agent's
    // containers then still go; the daemon's first answer would otherwise cost start-up time).
    if (request.executor === "dockercompose") {
      await cleanUpAfterCrashedAgents(logger);
    } else {
      leftovers = cleanUpAfterCrashedAgents(logger, { dockerOnlyAfterDeadJobs: true });
    }
    const result = await started.run();
    const kept = await sandbox?.finish(result);
    if (kept) shown(kept);
    if (outputFailure !== undefined) {
      throw new Error(
        `${outputFailure}; ${result === "stopped" ? "the job was stopped" : `the job ${result}`}`,
      );
    }
    if (started.usage) shown(`Resources used: ${formatUsage(started.usage)}\n`);
    return EXIT_CODES[result];
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
    // A shell started ahead that no job took (a request that is not valid, a container job).
    await ahead?.discard(logger);
    await leftovers;
  }
}
