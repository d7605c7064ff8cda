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
  RunCommandOptions,
} from "../lib/engine/executor.ts";
import type { EnvVar, JobFile, JobRequest } from "../lib/engine/job_request_types.ts";
import type { EventSink } from "../lib/engine/events.ts";
import type { Logger } from "../lib/util/agent_log.ts";
import { type CommandLog, runLoggedCommand } from "../lib/engine/command_log.ts";
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
  /** The job's private directory (0700): command files and env files, all 0600. */
  #storageDir: Promise<string> | undefined;
  #pty: PtyProcess | undefined;
  #session: ShellSession | undefined;
  #cleaned: Promise<void> | undefined;

  constructor(options: ShellExecutorOptions) {
    this.#request = options.request;
    this.#sink = options.sink;
    this.#logger = options.logger;
    this.#selfHosted = options.selfHosted ?? false;
    this.#baseEnv = scrubbedEnvironment(options.baseEnv);
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

  /** Made on first use: `<tmpdir>/agent-job-*`, mode 0700, owned by the agent's user. */
  #ensureStorageDir(): Promise<string> {
    this.#storageDir ??= Deno.makeTempDir({ prefix: "agent-job-" });
    return this.#storageDir;
  }

  async start(): Promise<number> {
    try {
      const storageDir = await this.#ensureStorageDir();
      const pty = new PtyProcess({
        // A login shell as in the original; without readline, which reads the terminal one
        // byte at a time and costs ~0.2 ms per command line we write.
        command: ["bash", "--login", "--noediting"],
        env: this.#baseEnv,
        processTag: `SEMAPHORE_JOB_PROCESS_TAG=${crypto.randomUUID()}`,
      });
      this.#pty = pty;
      this.#session = new ShellSession({ terminal: pty, hostStorageDir: storageDir });
      await this.#session.start();
      pty.rememberTree();
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
    return runLoggedCommand(this.#session, this.#sink, command, options);
  }

  getOutputFromCommand(command: string): Promise<CommandOutput> {
    return sessionOutput(this.#session, command);
  }

  async stop(): Promise<void> {
    this.#session?.markStopped();
    await this.#pty?.kill();
  }

  cleanup(): Promise<void> {
    this.#cleaned ??= (async () => {
      await this.stop();
      await this.#session?.close();
      const storageDir = await this.#storageDir?.catch(() => undefined);
      if (storageDir) {
        await Deno.remove(storageDir, { recursive: true }).catch((error) => {
          if (!(error instanceof Deno.errors.NotFound)) {
            this.#logger.warn(
              `[job=${this.#request.job_id}] Cannot remove ${storageDir}: ${errorMessage(error)}`,
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
