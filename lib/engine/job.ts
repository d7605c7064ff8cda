/**
 * The job lifecycle (SEMAPHORE_COMPAT.md §5): env, files, hooks, commands, exit-130 handling,
 * epilogues, result, stop and teardown. It knows nothing of HTTP or of how the log leaves the
 * agent: the mode that runs the job passes `hooks` for what happens around `job_finished`.
 *
 * @module
 */

import { type EventSink, type JobResult, unixSeconds } from "./events.ts";
import type { JobRequest } from "./job_request_types.ts";
import type { CreateExecutor, Executor, ExecutorSetup, HostEnvVar } from "./executor.ts";
import { errorMessage, JobConstructionError } from "../util/errors.ts";
import { validateForJob } from "./job_request.ts";
import { encodeBase64 } from "../util/base64.ts";
import type { Logger } from "../util/agent_log.ts";
import { formatUsage, type JobUsage } from "./resource_usage.ts";
import { jobRedactor, redactingLogger, RedactingSink } from "./redactor.ts";
import { DEFAULT_REDACTED_VARS } from "./redaction_patterns.ts";

/** What the mode running a job does around `job_finished` (§5.6). */
export interface JobTeardownHooks {
  /** Before `job_finished` is logged (pull logger: the `finished` callback). */
  beforeJobFinished?(result: JobResult): Promise<void>;
  /** After `job_finished` is logged (archive wait, log close, teardown callback, flush). */
  afterJobFinished?(result: JobResult): Promise<void>;
}

/** Options of {@linkcode Job.create}. */
export interface JobOptions extends ExecutorSetup {
  /** Builds the job's executor: `createExecutor` of `executors/for_job.ts` in every mode. */
  readonly createExecutor: CreateExecutor;
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
  /** Mode-specific teardown around `job_finished`. */
  readonly hooks?: JobTeardownHooks;
  /**
   * Name patterns of the variables whose values are redacted from every log (DECISIONS.md 24),
   * as `redactionPatterns()` resolves them; empty switches redaction off.
   * @default DEFAULT_REDACTED_VARS
   */
  readonly redactedVars?: readonly string[];
  /**
   * Values redacted whatever the names of the variables holding them (the secrets of a local
   * pipeline run, file contents included). @default none
   */
  readonly secretValues?: readonly string[];
}

/** Directive of the pre-job hook command (§6.2). */
export const PRE_JOB_HOOK_DIRECTIVE = "Running the pre-job hook configured in the agent";
/** Directive of the post-job hook command (§6.2). */
export const POST_JOB_HOOK_DIRECTIVE = "Running the post-job hook configured in the agent";
const FAIL_WARNING = "The agent is configured to fail the job if the pre-job hook fails.";
const PROCEED_WARNING =
  "The agent is configured to proceed with the job even if the pre-job hook fails.";

/**
 * One job: built from a request, run once, stoppable at any point. `run()` always ends with
 * `job_finished` (unless a teardown hook fails) and always cleans the executor up
 * (DECISIONS.md 4).
 */
export class Job {
  /** The job's id from the request. */
  readonly id: string;
  readonly request: JobRequest;
  readonly #options: JobOptions;
  readonly #executor: Executor;
  readonly #sink: EventSink;
  readonly #logger: Logger;
  #stopped = false;
  #stopping: Promise<void> | undefined;
  #running: Promise<JobResult> | undefined;
  #finished = false;
  #usage: JobUsage | undefined;

  private constructor(options: JobOptions, executor: Executor) {
    this.#options = options;
    this.request = options.request;
    this.id = options.request.job_id;
    this.#sink = options.sink;
    this.#logger = options.logger;
    this.#executor = executor;
  }

  /**
   * Builds a job and its executor; nothing runs yet (§5.1).
   *
   * @throws {JobConstructionError} for an unknown executor or logger, a push logger without a
   *   URL, or a container job without containers.
   */
  static create(options: JobOptions): Job {
    const problem = validateForJob(options.request);
    if (problem) throw new JobConstructionError(problem);
    // Everything the job and its executor log goes through the redactor (DECISIONS.md 24).
    const redactor = jobRedactor(
      options.request,
      options.hostEnvVars ?? [],
      options.redactedVars ?? DEFAULT_REDACTED_VARS,
      options.secretValues,
    );
    const redacted: JobOptions = redactor
      ? {
        ...options,
        sink: new RedactingSink(options.sink, redactor),
        logger: redactingLogger(options.logger, redactor),
      }
      : options;
    return new Job(redacted, options.createExecutor(redacted));
  }

  /** Whether `run()` has completed. */
  get finished(): boolean {
    return this.#finished;
  }

  /** What the job used, known once its processes are gone (before `job_finished`). */
  get usage(): JobUsage | undefined {
    return this.#usage;
  }

  /** Whether a stop was requested (from outside, or by a command exiting 130). */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Runs the whole lifecycle once; later calls return the same promise. Never rejects. */
  run(): Promise<JobResult> {
    this.#running ??= this.#run().finally(() => this.#finished = true);
    return this.#running;
  }

  /** Stops the job: the running command ends with exit code 1, nothing else starts. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#stopped = true;
      this.#logger.info(`[job=${this.id}] Stopping job`);
      try {
        await this.#executor.stop();
      } catch (error) {
        this.#logger.error(`[job=${this.id}] Cannot stop the executor: ${errorMessage(error)}`);
      }
    })();
    return this.#stopping;
  }

  async #run(): Promise<JobResult> {
    this.#logger.info(`[job=${this.id}] Running job ${this.id}`);
    this.#sink.write({ event: "job_started", timestamp: unixSeconds() });
    const startedAt = performance.now();
    let result: JobResult = "failed";
    let executorRunning = false;
    let epiloguesExecuted = false;
    try {
      // Preparing and starting come first: their failure needs no epilogue (§5.3).
      if (!this.#stopped && await this.#executor.prepare() === 0 && !this.#stopped) {
        executorRunning = await this.#executor.start() === 0;
      }
      if (executorRunning && !this.#stopped) {
        result = await this.#runRegularCommands();
        if (!this.#stopped) {
          await this.#runEpilogues(result);
          epiloguesExecuted = true;
        }
      } else if (this.#stopped) {
        result = "stopped";
      }
      await this.#runPostJobHook(executorRunning);
      if (epiloguesExecuted && this.#stopped) result = "stopped";
    } catch (error) {
      this.#logger.error(`[job=${this.id}] Job failed unexpectedly: ${errorMessage(error)}`);
      result = this.#stopped ? "stopped" : "failed";
    }
    await this.#finishProcesses(startedAt);
    try {
      await this.#teardown(result);
    } finally {
      await this.#executor.cleanup().catch((error) =>
        this.#logger.error(`[job=${this.id}] Cannot clean up the executor: ${errorMessage(error)}`)
      );
      this.#logger.info(`[job=${this.id}] Job finished with result: ${result}`);
    }
    return result;
  }

  /**
   * Ends whatever processes the job left (the executor waits until none is left), so nothing of
   * the job runs once `job_finished` is written, and logs what the job used (DECISIONS.md 23).
   */
  async #finishProcesses(startedAt: number): Promise<void> {
    let usage;
    try {
      usage = await this.#executor.finish?.();
    } catch (error) {
      this.#logger.error(`[job=${this.id}] Cannot end the job's processes: ${errorMessage(error)}`);
    }
    this.#usage = { ...usage, wallSeconds: (performance.now() - startedAt) / 1000 };
    this.#logger.info(`[job=${this.id}] Resources used: ${formatUsage(this.#usage)}`);
  }

  /** Env, files, pre-job hook, commands, and the result they give (§5.2). */
  async #runRegularCommands(): Promise<JobResult> {
    const options = this.#options;
    const executor = this.#executor;
    if (await executor.exportEnvVars(this.request.env_vars, options.hostEnvVars ?? []) !== 0) {
      return this.#stopped ? "stopped" : "failed";
    }
    if (await executor.injectFiles(this.request.files) !== 0) {
      return this.#stopped ? "stopped" : "failed";
    }
    if (options.preJobHookPath) {
      const verb = options.sourcePreJobHook ? "source" : "bash";
      const exitCode = await executor.runCommand(`${verb} ${options.preJobHookPath}`, {
        alias: PRE_JOB_HOOK_DIRECTIVE,
        warning: options.failOnPreJobHookError ? FAIL_WARNING : PROCEED_WARNING,
      });
      if (exitCode !== 0 && options.failOnPreJobHookError) {
        return this.#stopped ? "stopped" : "failed";
      }
    }
    let exitCode = 0;
    for (const command of this.request.commands) {
      if (this.#stopped) break;
      exitCode = await executor.runCommand(command.directive, { alias: command.alias });
      if (exitCode !== 0) break;
    }
    if (this.#stopped) return "stopped";
    // A shell that itself exited 130 cannot be asked: the job failed, as in the original,
    // where such a command reports 1 (DECISIONS.md 8 only changes the code it reports).
    if (exitCode === 130) return await this.#checkJobResult() ?? "failed";
    return exitCode === 0 ? "passed" : "failed";
  }

  /**
   * A command exited 130: `$SEMAPHORE_JOB_RESULT` decides the result (§5.4); `undefined` when
   * the shell is gone and cannot be asked.
   */
  async #checkJobResult(): Promise<JobResult | undefined> {
    const { output, exitCode } = await this.#executor.getOutputFromCommand(
      "echo $SEMAPHORE_JOB_RESULT",
    );
    if (exitCode !== 0) return undefined; // the shell is gone
    this.#stopped = true;
    const value = output.replaceAll("\n", "");
    let result: JobResult = "stopped";
    let message =
      `SEMAPHORE_JOB_RESULT is set to '${value}' - stopping job and marking it as stopped`;
    if (value === "passed" || value === "failed") {
      result = value;
      message = `SEMAPHORE_JOB_RESULT=${value} - stopping job and marking it as ${value}`;
    }
    const now = unixSeconds();
    const directive = "Checking job result";
    this.#sink.write({ event: "cmd_started", timestamp: now, directive });
    this.#sink.write({ event: "cmd_output", timestamp: now, output: message });
    this.#sink.write({
      event: "cmd_finished",
      timestamp: now,
      directive,
      exit_code: 0,
      started_at: now,
      finished_at: now,
    });
    return result;
  }

  /** `SEMAPHORE_JOB_RESULT`, then the always and on-pass/on-fail lists (§5.2). */
  async #runEpilogues(result: JobResult): Promise<void> {
    await this.#executor.exportEnvVars(
      [{ name: "SEMAPHORE_JOB_RESULT", value: encodeBase64(result) }],
      [],
    );
    await this.#runList(this.request.epilogue_always_commands);
    await this.#runList(
      result === "passed"
        ? this.request.epilogue_on_pass_commands
        : this.request.epilogue_on_fail_commands,
    );
  }

  async #runList(commands: JobRequest["commands"]): Promise<void> {
    for (const command of commands) {
      if (this.#stopped) return;
      if (await this.#executor.runCommand(command.directive, { alias: command.alias }) !== 0) {
        return;
      }
    }
  }

  async #runPostJobHook(executorRunning: boolean): Promise<void> {
    const path = this.#options.postJobHookPath;
    if (!path) return;
    if (!executorRunning) {
      // DECISIONS.md 7: there is no shell to run it in.
      this.#logger.info(`[job=${this.id}] Skipping the post-job hook: the executor never started`);
      return;
    }
    const exitCode = await this.#executor.runCommand(`bash ${path}`, {
      alias: POST_JOB_HOOK_DIRECTIVE,
    });
    if (exitCode !== 0) {
      this.#logger.error(`Error executing post-job hook - hook return exit code ${exitCode}`);
    }
  }

  /** The mode's hooks around `job_finished` (§5.6, DECISIONS.md 3). */
  async #teardown(result: JobResult): Promise<void> {
    const hooks = this.#options.hooks;
    try {
      await hooks?.beforeJobFinished?.(result);
    } catch (error) {
      this.#logger.error(`[job=${this.id}] ${errorMessage(error)}`);
    }
    this.#sink.write({ event: "job_finished", timestamp: unixSeconds(), result });
    try {
      await hooks?.afterJobFinished?.(result);
    } catch (error) {
      this.#logger.error(`[job=${this.id}] ${errorMessage(error)}`);
    }
  }
}
