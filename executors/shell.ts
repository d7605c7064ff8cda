/**
 * The shell executor (SEMAPHORE_COMPAT.md §9): `bash --login` on a local PTY, driven through
 * the stateful-shell protocol. Environment variables and files are written by the agent on
 * the host; stopping kills the shell's whole process tree (DECISIONS.md 18).
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
import { sessionOutput, ShellSession } from "../lib/engine/shell_session.ts";
import { PtyProcess } from "./pty.ts";
import { appendAuthorizedKeys, homeDir, SHELL_JUMP_POINT, writeJumpPoint } from "./host_setup.ts";
import { errorMessage, goPathErrorText } from "../lib/util/errors.ts";
import { scrubbedEnvironment } from "../lib/engine/agent_environment.ts";
import { JOB_CGROUP_PREFIX, JobCgroup, jobIsolation, type LimitCounters } from "./job_cgroup.ts";
import { createJobHostDir, type JobHostDir } from "./docker_leftovers.ts";
import { type JobRecord, writeJobRecord } from "./job_record.ts";
import { formatBytes } from "../lib/engine/resource_usage.ts";

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
  /**
   * The job's private directory (0700): command files and env files, all 0600. Its owner file
   * stays locked while the job lives (docker_leftovers.ts), and it holds the job's record.
   */
  #hostDir: Promise<JobHostDir> | undefined;
  #record: JobRecord | undefined;
  #cgroup: JobCgroup | undefined;
  #pty: PtyProcess | undefined;
  #session: ShellSession | undefined;
  #finished: Promise<ResourceUsage | undefined> | undefined;
  /** Without a cgroup: records the job's processes every second, for crash recovery. */
  #tracker: ReturnType<typeof setInterval> | undefined;
  #tracked = "[]";
  #tracking = false;
  #cleaned: Promise<void> | undefined;

  constructor(options: ShellExecutorOptions) {
    this.#request = options.request;
    this.#sink = options.sink;
    this.#logger = options.logger;
    this.#selfHosted = options.selfHosted ?? false;
    this.#baseEnv = scrubbedEnvironment(options.baseEnv);
    this.#limits = options.limits ?? {};
  }

  /** The job shell's home: where `~` and relative file paths point. */
  get #home(): string {
    return this.#baseEnv.HOME ?? homeDir();
  }

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

  /**
   * Made on first use: `<tmpdir>/agent-temp-directory-*`, mode 0700, owned by the agent's user,
   * with its owner file locked until cleanup.
   */
  #ensureStorageDir(): Promise<string> {
    this.#hostDir ??= (async () => {
      const dir = await createJobHostDir();
      try {
        await Deno.chmod(dir.path, 0o700);
      } catch (error) {
        await dir.remove().catch(() => {});
        throw error;
      }
      return dir;
    })();
    return this.#hostDir.then((dir) => dir.path);
  }

  async start(): Promise<number> {
    try {
      // The job's directory (locked while the job lives: another agent removes what the record
      // names once it is not) and its cgroup are independent: made at once. What was made is
      // kept in this executor, so cleanup removes it when the other failed.
      const [made, isolation] = await Promise.allSettled([
        this.#ensureStorageDir(),
        jobIsolation().then(async (found) => {
          if (found.kind !== "none") {
            this.#cgroup = await JobCgroup.create(
              found,
              `${JOB_CGROUP_PREFIX}${crypto.randomUUID()}`,
              this.#limits,
            );
          }
          return found;
        }),
      ]);
      if (made.status === "rejected") throw made.reason;
      if (isolation.status === "rejected") throw isolation.reason;
      const storageDir = made.value;
      if (isolation.value.kind === "none" && Object.keys(this.#limits).length > 0) {
        this.#logger.warn(
          `[job=${this.#request.job_id}] Job limits need cgroups, which this agent cannot use`,
        );
      }
      const processTag = `SEMAPHORE_JOB_PROCESS_TAG=${crypto.randomUUID()}`;
      // Without a cgroup, every process of the job inherits a descriptor of this file: found by
      // it even after it dropped the tag and left the session (process_tree.ts).
      const markFile = this.#cgroup ? undefined : `${storageDir}/job.mark`;
      if (markFile) await Deno.writeFile(markFile, new Uint8Array(), { mode: 0o600 });
      await this.#updateRecord({
        jobId: this.#request.job_id,
        processTag,
        cgroup: this.#cgroup?.record,
        files: [], // the env files are in the job's directory
        ...(markFile ? { markFile } : {}),
      });
      const pty = new PtyProcess({
        // A login shell as in the original; without readline, which reads the terminal one
        // byte at a time and costs ~0.2 ms per command line we write.
        command: ["bash", "--login", "--noediting"],
        env: this.#baseEnv,
        processTag,
        cgroup: this.#cgroup,
        adoptedOrphans: isolation.value.kind === "none",
        markFile,
      });
      this.#pty = pty;
      this.#session = new ShellSession({ terminal: pty, hostStorageDir: storageDir });
      await this.#session.start();
      await pty.rememberTree();
      if (!this.#cgroup) {
        await this.#track();
        this.#tracker = setInterval(() => this.#track(), TRACK_INTERVAL_MS);
      }
      this.#logger.info(`[job=${this.#request.job_id}] [pid=${pty.pid}] Started the job shell`);
      return 0;
    } catch (error) {
      this.#logger.error(
        `[job=${this.#request.job_id}] Cannot start the job shell: ${errorMessage(error)}`,
      );
      return 1;
    }
  }

  exportEnvVars(envVars: readonly EnvVar[], hostEnvVars: readonly HostEnvVar[]): Promise<number> {
    return exportEnvironment(this.#sink, { job: envVars, host: hostEnvVars }, {
      writeEnvFile: async (content) => {
        // In the private dir, not the original's `<tmpdir>/.env-<ns>` (mode 0644, DECISIONS.md 20).
        const path = `${await this.#ensureStorageDir()}/.env-${nanoseconds()}`;
        await Deno.writeFile(path, content, { mode: 0o600, createNew: true });
        this.#envFiles.push(path);
        return path;
      },
      session: this.#session,
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
    const session = this.#session;
    const limited = this.#cgroup && this.#pty &&
      (this.#limits.memoryBytes !== undefined || this.#limits.pids !== undefined);
    const runner = session && limited
      ? limitWatchingRunner(session, this.#cgroup!, this.#pty!, this.#limits)
      : session;
    return runLoggedCommand(runner, this.#sink, command, options);
  }

  getOutputFromCommand(command: string): Promise<CommandOutput> {
    return sessionOutput(this.#session, command);
  }

  async stop(): Promise<void> {
    this.#session?.markStopped();
    await this.#pty?.kill();
  }

  /**
   * Without a cgroup: writes the job's processes (pid and start time) to its record when they
   * changed, so that the next agent finds them if this one dies, even those that dropped the tag.
   */
  async #track(): Promise<void> {
    if (this.#tracking || !this.#pty || !this.#record || this.#finished) return;
    this.#tracking = true;
    try {
      const processes = await this.#pty.identifyTree();
      const text = JSON.stringify(processes);
      if (text !== this.#tracked && !this.#finished) {
        this.#tracked = text;
        await this.#updateRecord({ ...this.#record, processes });
      }
    } catch {
      // the next round tries again
    } finally {
      this.#tracking = false;
    }
  }

  async #updateRecord(record: JobRecord): Promise<void> {
    this.#record = record;
    const dir = await this.#hostDir?.catch(() => undefined);
    if (dir) await writeJobRecord(dir.path, record);
  }

  /** Empties the job's cgroup (or sweeps its processes), measures it, removes the cgroup. */
  finish(): Promise<ResourceUsage | undefined> {
    this.#finished ??= (async () => {
      clearInterval(this.#tracker);
      await this.stop();
      const cgroup = this.#cgroup;
      if (!cgroup) return undefined;
      if (!(await cgroup.kill())) {
        this.#logger.warn(
          `[job=${this.#request.job_id}] Some processes of the job were still alive after 10 s`,
        );
      }
      const usage = await cgroup.usage();
      await cgroup.remove().catch((error) =>
        this.#logger.warn(`[job=${this.#request.job_id}] ${errorMessage(error)}`)
      );
      return usage;
    })();
    return this.#finished;
  }

  cleanup(): Promise<void> {
    this.#cleaned ??= (async () => {
      await this.finish();
      await this.#session?.close();
      const hostDir = await this.#hostDir?.catch(() => undefined);
      if (hostDir) {
        await hostDir.remove().catch((error) => {
          if (!(error instanceof Deno.errors.NotFound)) {
            this.#logger.warn(
              `[job=${this.#request.job_id}] Cannot remove ${hostDir.path}: ${errorMessage(error)}`,
            );
          }
        });
      }
      // The lines sourcing the removed env files go too (they are guarded in any case).
      if (!this.#selfHosted) {
        const profile = `${this.#home}/.bash_profile`;
        await removeProfileLines(profile, this.#envFiles.map(guardedProfileLine)).catch(
          (error) =>
            this.#logger.warn(
              `[job=${this.#request.job_id}] Cannot clean up ${profile}: ${errorMessage(error)}`,
            ),
        );
      }
    })();
    return this.#cleaned;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.cleanup();
  }
}

/** How often the processes of a job without a cgroup are recorded. */
const TRACK_INTERVAL_MS = 1000;

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
      const timer = setInterval(check, LIMIT_POLL_MS);
      let exitCode: number;
      try {
        exitCode = await session.run(command, (bytes) => {
          if (bytes.length > 0) lastByte = bytes[bytes.length - 1];
          onOutput(bytes);
        });
      } finally {
        clearInterval(timer);
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
