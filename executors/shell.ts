/**
 * The shell executor (SEMAPHORE_COMPAT.md §9): `bash --login` on a local PTY (a
 * {@linkcode JobShell}, `job_shell.ts`), driven through the stateful-shell protocol. Environment
 * variables and files are written by the agent on the host; stopping kills the shell's whole
 * process tree (DECISIONS.md 18).
 *
 * @module
 */

import type {
  CommandOutput,
  Executor,
  HostEnvVar,
  JobLimits,
  ResourceUsage,
  RunCommandOptions,
} from "../lib/engine/executor.ts";
import type { EnvVar, JobFile, JobRequest } from "../lib/engine/job_request_types.ts";
import type { EventSink } from "../lib/engine/events.ts";
import type { Logger } from "../lib/util/agent_log.ts";
import {
  type CommandLog,
  type CommandRunner,
  runLoggedCommand,
} from "../lib/engine/command_log.ts";
import {
  exportEnvironment,
  guardedProfileLine,
  removeProfileLines,
} from "../lib/engine/env_file.ts";
import { cleanPath, parentDir } from "../lib/util/clean_path.ts";
import { injectJobFiles } from "../lib/engine/job_files.ts";
import { sessionOutput } from "../lib/engine/shell_session.ts";
import type { PtyProcess } from "./pty.ts";
import { appendAuthorizedKeys, homeDir, SHELL_JUMP_POINT, writeJumpPoint } from "./host_setup.ts";
import { errorMessage, goPathErrorText } from "../lib/util/errors.ts";
import { scrubbedEnvironment } from "../lib/engine/agent_environment.ts";
import type { JobCgroup, LimitCounters } from "./job_cgroup.ts";
import { JobShell } from "./job_shell.ts";
import type { ShellAhead } from "./shell_ahead.ts";
import { formatBytes } from "../lib/engine/resource_usage.ts";
import { every } from "../lib/util/delay.ts";

/** Options of {@linkcode createShellExecutor}. */
export interface ShellExecutorOptions {
  readonly request: JobRequest;
  readonly sink: EventSink;
  readonly logger: Logger;
  /** Self-hosted: no authorized_keys, jump point or `.bash_profile` edits. @default false */
  readonly selfHosted?: boolean;
  /**
   * The environment the job shell starts from, less its `SEMAPHORE_AGENT_*` variables
   * (DECISIONS.md 14). @default the agent's
   */
  readonly baseEnv?: Readonly<Record<string, string>>;
  /** Limits on the job's cgroup. @default none */
  readonly limits?: JobLimits;
  /**
   * A shell started before the request was read (`agent run`): used when this job is
   * self-hosted and given the same `baseEnv` and `limits` objects it was started with.
   * @default none: `start()` starts the shell
   */
  readonly ahead?: ShellAhead;
}

/**
 * Resolves a job file's destination on the host (§4.2): absolute as is, every `~` replaced by
 * the home directory when it starts with `~`, anything else relative to the home directory.
 */
export function resolveHostFilePath(path: string, home: string = homeDir()): string {
  if (path.startsWith("/")) return path;
  if (path.startsWith("~")) return path.replaceAll("~", home);
  return cleanPath(`${home}/${path}`); // Go's filepath.Join cleans the joined path
}

/**
 * The mode `os.Chmod(path, fs.FileMode(n))` sets in the original: the permission bits of `n`;
 * setuid, setgid and sticky only from Go's own high flag bits, which octal modes such as `4755`
 * do not reach, so a job file never becomes setuid.
 */
function goFileMode(n: number): number {
  let mode = n & 0o777;
  if (n & (1 << 23)) mode |= 0o4000; // fs.ModeSetuid
  if (n & (1 << 22)) mode |= 0o2000; // fs.ModeSetgid
  if (n & (1 << 20)) mode |= 0o1000; // fs.ModeSticky
  return mode;
}

/** Builds a shell executor; nothing runs until `start()`. */
export function createShellExecutor(options: ShellExecutorOptions): Executor {
  return new ShellExecutor(options);
}

class ShellExecutor implements Executor {
  readonly #request: JobRequest;
  readonly #sink: EventSink;
  readonly #logger: Logger;
  readonly #selfHosted: boolean;
  readonly #baseEnv: Readonly<Record<string, string>>;
  /** Env files whose line may be in `~/.bash_profile` (removed at cleanup). */
  readonly #envFiles: string[] = [];
  readonly #limits: JobLimits;
  /** The job's shell: taken from `ahead` when built, else started by `start()`. */
  #shell: JobShell | undefined;
  #cleaned: Promise<void> | undefined;

  constructor(options: ShellExecutorOptions) {
    this.#request = options.request;
    this.#sink = options.sink;
    this.#logger = options.logger;
    this.#selfHosted = options.selfHosted ?? false;
    this.#baseEnv = scrubbedEnvironment(options.baseEnv);
    this.#limits = options.limits ?? {};
    this.#shell = options.ahead?.take(options.baseEnv, options.limits, this.#selfHosted);
  }

  /** The job shell's home: where `~` and relative file paths point. */
  get #home(): string {
    return this.#baseEnv.HOME ?? homeDir();
  }

  /** Logs a problem of the job's shell as a warning of this job. */
  readonly #warn = (message: string): void => {
    this.#logger.warn(`[job=${this.#request.job_id}] ${message}`);
  };

  async prepare(): Promise<number> {
    if (this.#selfHosted) return 0;
    try {
      await appendAuthorizedKeys(this.#request.ssh_public_keys, this.#home);
      await writeJumpPoint(SHELL_JUMP_POINT);
      return 0;
    } catch (error) {
      this.#logger.error(
        `[job=${this.#request.job_id}] Cannot prepare the host: ${errorMessage(error)}`,
      );
      return 1;
    }
  }

  async start(): Promise<number> {
    const jobId = this.#request.job_id;
    const shell = this.#shell ??= JobShell.start({
      env: this.#baseEnv,
      limits: this.#limits,
      jobId,
    });
    let problem: unknown;
    try {
      await shell.ready;
      await shell.name(jobId);
    } catch (error) {
      problem = error;
    }
    if (shell.isolation?.kind === "none" && Object.keys(this.#limits).length > 0) {
      this.#warn("Job limits need cgroups, which this agent cannot use");
    }
    if (problem !== undefined && shell.stopped) {
      // Killed while it started (a signal, a stop request): not a failure to report.
      this.#logger.info(`[job=${jobId}] The job was stopped while its shell started`);
      return 1;
    }
    if (problem !== undefined) {
      this.#logger.error(`[job=${jobId}] Cannot start the job shell: ${errorMessage(problem)}`);
      return 1;
    }
    this.#logger.info(`[job=${jobId}] [pid=${shell.pty?.pid}] Started the job shell`);
    return 0;
  }

  exportEnvVars(envVars: readonly EnvVar[], hostEnvVars: readonly HostEnvVar[]): Promise<number> {
    return exportEnvironment(this.#sink, { job: envVars, host: hostEnvVars }, {
      writeEnvFile: async (content) => {
        // In the private dir, not the original's `<tmpdir>/.env-<ns>` (mode 0644, DECISIONS.md 20).
        if (!this.#shell) throw new Error("the job shell was not started");
        const path = `${await this.#shell.storageDir()}/.env-${nanoseconds()}`;
        // Synchronous: a small local file, where an async write is a thread-pool round trip
        // before the job's first command.
        Deno.writeFileSync(path, content, { mode: 0o600, createNew: true });
        this.#envFiles.push(path);
        return path;
      },
      session: this.#shell?.session,
      appendToProfile: !this.#selfHosted,
      profileLine: guardedProfileLine,
      logger: this.#logger,
    });
  }

  injectFiles(files: readonly JobFile[]): Promise<number> {
    const home = this.#home;
    return injectJobFiles(this.#sink, files, {
      shownPath: (file) => resolveHostFilePath(file.path, home),
      write: (log, file, content) => writeHostFile(log, file, content, home),
    });
  }

  runCommand(command: string, options: RunCommandOptions = {}): Promise<number> {
    const session = this.#shell?.session;
    const cgroup = this.#shell?.cgroup;
    const pty = this.#shell?.pty;
    const limited = cgroup && pty &&
      (this.#limits.memoryBytes !== undefined || this.#limits.pids !== undefined);
    const runner = session && limited
      ? limitWatchingRunner(session, cgroup, pty, this.#limits)
      : session;
    return runLoggedCommand(runner, this.#sink, command, options);
  }

  getOutputFromCommand(command: string): Promise<CommandOutput> {
    return sessionOutput(this.#shell?.session, command);
  }

  async stop(): Promise<void> {
    await this.#shell?.stop();
  }

  /** Empties the job's cgroup (or sweeps its processes), measures it, removes the cgroup. */
  async finish(): Promise<ResourceUsage | undefined> {
    return await this.#shell?.finish(this.#warn);
  }

  cleanup(): Promise<void> {
    this.#cleaned ??= (async () => {
      await this.#shell?.cleanup(this.#warn);
      // The lines sourcing the removed env files go too (they are guarded in any case).
      if (!this.#selfHosted) {
        const profile = `${this.#home}/.bash_profile`;
        await removeProfileLines(profile, this.#envFiles.map(guardedProfileLine)).catch(
          (error) => this.#warn(`Cannot clean up ${profile}: ${errorMessage(error)}`),
        );
      }
    })();
    return this.#cleaned;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.cleanup();
  }
}

/** How often a command's limits are checked while it runs. */
const LIMIT_POLL_MS = 200;

/**
 * Runs commands in `session` and says in a command's output when the job reached a limit while
 * it ran: the memory limit (the kernel killed a process) or the process limit (forks failed:
 * every process but the shell is killed, so the job can go on to its epilogue). Such a command
 * fails.
 */
function limitWatchingRunner(
  session: CommandRunner,
  cgroup: JobCgroup,
  pty: PtyProcess,
  limits: JobLimits,
): CommandRunner {
  return limitMessagesRunner(
    session,
    limits,
    () => cgroup.limitHits(),
    async () => await cgroup.killAllBut(await pty.shellPids()),
  );
}

/**
 * Runs commands in `session`; when `hits` (the limits reached since its last call) counts a hit
 * while a command runs, ends that command's output with `Killed: the job reached its memory
 * limit (2 GiB)` or `... process limit (1000)` and makes it fail. `onPidsHit` runs on each
 * process-limit hit. Shell jobs read `hits` from the job's cgroup, container jobs from the main
 * container's.
 */
export function limitMessagesRunner(
  session: CommandRunner,
  limits: JobLimits,
  hits: () => Promise<LimitCounters>,
  onPidsHit?: () => Promise<void>,
): CommandRunner {
  return {
    async run(command, onOutput) {
      let memoryHit = false;
      let pidsHit = false;
      let checking: Promise<void> = Promise.resolve();
      const check = () => {
        checking = checking.then(async () => {
          const now = await hits();
          if (now.memory > 0 && limits.memoryBytes !== undefined) memoryHit = true;
          if (now.pids > 0 && limits.pids !== undefined) {
            pidsHit = true;
            await onPidsHit?.();
          }
        });
        return checking;
      };
      await check(); // what happened before this command is not its doing
      memoryHit = pidsHit = false;
      let lastByte = 10;
      const timer = every(LIMIT_POLL_MS, check);
      let exitCode: number;
      try {
        exitCode = await session.run(command, (bytes) => {
          if (bytes.length > 0) lastByte = bytes[bytes.length - 1];
          onOutput(bytes);
        });
      } finally {
        timer.cancel();
      }
      await check();
      const lines: string[] = [];
      if (memoryHit) {
        lines.push(
          `Killed: the job reached its memory limit (${formatBytes(limits.memoryBytes!)})`,
        );
      }
      if (pidsHit) lines.push(`Killed: the job reached its process limit (${limits.pids})`);
      if (lines.length === 0) return exitCode;
      onOutput(new TextEncoder().encode(`${lastByte === 10 ? "" : "\n"}${lines.join("\n")}\n`));
      return exitCode === 0 ? 1 : exitCode;
    },
  };
}

function nanoseconds(): string {
  return `${
    BigInt(Date.now()) * 1000000n + BigInt(Math.floor(performance.now() * 1000) % 1000000)
  }`;
}

/** Writes one job file on the host (§9.5); returns the step's exit code. */
async function writeHostFile(
  log: CommandLog,
  file: JobFile,
  content: Uint8Array,
  home: string,
): Promise<number> {
  const path = resolveHostFilePath(file.path, home);
  const dir = parentDir(path);
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o750 });
  } catch (error) {
    log.text(`Failed to create directory '${dir}': ${goPathErrorText(error)}\n`);
    return 1;
  }
  let handle: Deno.FsFile;
  try {
    // Created private, given its own mode below once written: a key is never readable meanwhile.
    handle = await Deno.open(path, { write: true, create: true, truncate: true, mode: 0o600 });
  } catch (error) {
    log.text(`Failed to create destination path '${path}': ${goPathErrorText(error)}\n`);
    return 1;
  }
  try {
    let written = 0;
    while (written < content.length) written += await handle.write(content.subarray(written));
  } catch (error) {
    log.text(`${goPathErrorText(error)}\n`);
    return 255;
  } finally {
    handle.close();
  }
  if (!/^[0-7]+$/.test(file.mode) || Number.parseInt(file.mode, 8) > 0xffffffff) {
    log.text(`bad file permission '${file.mode}'\n`);
    return 1;
  }
  try {
    await Deno.chmod(path, goFileMode(Number.parseInt(file.mode, 8)));
  } catch (error) {
    log.text(`Failed to set file mode '${file.mode}' for '${path}': ${goPathErrorText(error)}\n`);
    return 1;
  }
  return 0;
}
