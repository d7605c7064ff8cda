/**
 * A job's shell started before the job's request is read (`agent run`): its login and handshake
 * then overlap loading and checking the request. This module is what a mode imports for it,
 * apart from `for_job.ts`, so that starting the shell loads the shell alone, not the executors
 * (the container executor's Docker client is most of their code).
 *
 * @module
 */

import type { JobLimits } from "../lib/engine/executor.ts";
import { scrubbedEnvironment } from "../lib/engine/agent_environment.ts";
import type { Logger } from "../lib/util/agent_log.ts";
import { JobShell } from "./job_shell.ts";

/** How long a discarded shell started ahead gets to end its login by itself. */
const DISCARD_GRACE_MS = 10_000;

/** Options of {@linkcode startShellAhead}: those the job's executor will be given. */
export interface ShellAheadOptions {
  /** The environment the shell starts from, unscrubbed. @default the agent's */
  readonly shellEnv?: Readonly<Record<string, string>>;
  /** @default none */
  readonly limits?: JobLimits;
}

/**
 * A job shell started before the job's request was read. The shell executor of a job set up
 * with the same environment and limits takes it ({@linkcode ShellAhead.take}); otherwise (a
 * container job, a request that is not valid) its owner discards it.
 */
export class ShellAhead {
  readonly #options: ShellAheadOptions;
  readonly #shell: JobShell;
  #taken = false;

  constructor(options: ShellAheadOptions) {
    this.#options = options;
    this.#shell = JobShell.start({
      env: scrubbedEnvironment(options.shellEnv),
      limits: options.limits ?? {},
    });
  }

  /** Settles once the shell process runs, or its start failed. */
  get spawned(): Promise<void> {
    return this.#shell.spawned;
  }

  /** Resolves once the shell answered the handshake; rejects with why it could not start. */
  get ready(): Promise<void> {
    return this.#shell.ready;
  }

  /**
   * The shell, for a self-hosted job (nothing to prepare on the host before the shell starts)
   * given the very environment and limits it was started with; once. `undefined` otherwise.
   */
  take(
    shellEnv: Readonly<Record<string, string>> | undefined,
    limits: JobLimits | undefined,
    selfHosted: boolean,
  ): JobShell | undefined {
    const options = this.#options;
    if (this.#taken || !selfHosted || shellEnv !== options.shellEnv || limits !== options.limits) {
      return undefined;
    }
    this.#taken = true;
    return this.#shell;
  }

  /**
   * Ends the shell and removes what it made, unless a job took it. Idempotent. The shell is not
   * killed in its login: it gets end-of-input, so it finishes its profile (killed half-way, a
   * profile can leave its own state broken, such as pyenv's lock that then holds every later
   * login for a minute) and exits; whatever is left after {@linkcode DISCARD_GRACE_MS} is killed.
   */
  async discard(logger?: Logger): Promise<void> {
    if (this.#taken) return;
    this.#taken = true;
    await this.#shell.spawned;
    await this.#shell.pty?.endInput(DISCARD_GRACE_MS);
    await this.#shell.cleanup((message) => logger?.warn(message));
  }
}

/** Starts a job shell ahead of its request ({@linkcode ShellAhead}). */
export function startShellAhead(options: ShellAheadOptions = {}): ShellAhead {
  return new ShellAhead(options);
}
