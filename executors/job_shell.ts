/**
 * A job's shell on this host and what it holds (SEMAPHORE_COMPAT.md §9.2): its private
 * directory, its cgroup (or, without one, a mark file and a record of its processes), its crash
 * record, and `bash --login` on a PTY, past the start handshake. The shell executor (`shell.ts`)
 * drives a job through one.
 *
 * `agent run` starts one before it has read the job's request (`shell_ahead.ts`):
 * the shell's own start-up (the login profile, the handshake's `stty`s, ~40 ms) then runs while
 * the agent loads and checks the request, instead of after it. Nothing of the request goes into
 * a shell's start: the job's variables and files come later, through the shell.
 *
 * @module
 */

import type { JobLimits, ResourceUsage } from "../lib/engine/executor.ts";
import { ShellSession } from "../lib/engine/shell_session.ts";
import { errorMessage } from "../lib/util/errors.ts";
import { PtyProcess } from "./pty.ts";
import { JOB_CGROUP_PREFIX, JobCgroup, type JobIsolation, jobIsolation } from "./job_cgroup.ts";
import { createJobHostDir, type JobHostDir } from "./job_host_dir.ts";
import { type JobRecord, writeJobRecord } from "./job_record.ts";
import { every, type Timer } from "../lib/util/delay.ts";

/** What a job shell is started from. */
export interface JobShellSettings {
  /** The whole environment of the shell, already scrubbed (`scrubbedEnvironment`). */
  readonly env: Readonly<Record<string, string>>;
  /** Limits on the job's cgroup. */
  readonly limits: JobLimits;
  /** The job named in the crash record. @default "" until {@linkcode JobShell.name} */
  readonly jobId?: string;
}

/** How often the processes of a job without a cgroup are recorded. */
const TRACK_INTERVAL_MS = 1000;

/**
 * The job's shell and what it made on the host. Started by {@linkcode JobShell.start}; what a
 * failed start made is kept, so that {@linkcode JobShell.cleanup} removes it.
 */
export class JobShell {
  readonly #settings: JobShellSettings;
  /**
   * The job's private directory (0700): command files and env files, all 0600. Its owner file
   * stays locked while the job lives (job_host_dir.ts), and it holds the job's record.
   */
  #hostDir: Promise<JobHostDir> | undefined;
  #isolation: JobIsolation | undefined;
  #record: JobRecord | undefined;
  #cgroup: JobCgroup | undefined;
  #pty: PtyProcess | undefined;
  #session: ShellSession | undefined;
  /** Without a cgroup: records the job's processes every second, for crash recovery. */
  #tracker: Timer | undefined;
  #tracked = "[]";
  #tracking = false;
  #stopped = false;
  #finished: Promise<ResourceUsage | undefined> | undefined;
  #cleaned: Promise<void> | undefined;
  /** Settles once the shell process runs, or its start failed. */
  readonly spawned: Promise<void>;
  /** Resolves once the shell answered the handshake; rejects with why it could not start. */
  readonly ready: Promise<void>;

  private constructor(settings: JobShellSettings) {
    this.#settings = settings;
    const spawned = Promise.withResolvers<void>();
    this.spawned = spawned.promise;
    this.ready = this.#launch(spawned.resolve).finally(spawned.resolve);
    this.ready.catch(() => {}); // awaited by whoever uses the shell; never unhandled
  }

  /** Starts a job shell: its directory and cgroup, then the shell, then the handshake. */
  static start(settings: JobShellSettings): JobShell {
    return new JobShell(settings);
  }

  /** How jobs are isolated here; known once the start got that far. */
  get isolation(): JobIsolation | undefined {
    return this.#isolation;
  }

  get cgroup(): JobCgroup | undefined {
    return this.#cgroup;
  }

  get pty(): PtyProcess | undefined {
    return this.#pty;
  }

  /** The protocol session, once the shell runs. */
  get session(): ShellSession | undefined {
    return this.#session;
  }

  /**
   * The job's private directory, `<tmpdir>/agent-temp-directory-*`: mode 0700, owned by the
   * agent's user, its owner file locked until cleanup. Made on first use.
   */
  storageDir(): Promise<string> {
    this.#hostDir ??= Promise.resolve().then(createJobHostDir);
    return this.#hostDir.then((dir) => dir.path);
  }

  async #launch(onSpawned: () => void): Promise<void> {
    const { env, limits } = this.#settings;
    // The job's directory (locked while the job lives: another agent removes what the record
    // names once it is not) and its cgroup are independent: made at once. What was made is kept
    // here, so cleanup removes it when the other failed.
    const [made, isolation] = await Promise.allSettled([
      this.storageDir(),
      jobIsolation().then(async (found) => {
        this.#isolation = found;
        if (found.kind !== "none") {
          this.#cgroup = await JobCgroup.create(
            found,
            `${JOB_CGROUP_PREFIX}${crypto.randomUUID()}`,
            limits,
          );
        }
      }),
    ]);
    if (made.status === "rejected") throw made.reason;
    if (isolation.status === "rejected") throw isolation.reason;
    if (this.#finished || this.#stopped) throw new Error("stopped before the shell started");
    const storageDir = made.value;
    const processTag = `SEMAPHORE_JOB_PROCESS_TAG=${crypto.randomUUID()}`;
    // Without a cgroup, every process of the job inherits a descriptor of this file: found by
    // it even after it dropped the tag and left the session (process_tree.ts).
    const markFile = this.#cgroup ? undefined : `${storageDir}/job.mark`;
    if (markFile) Deno.writeFileSync(markFile, new Uint8Array(), { mode: 0o600 });
    await this.#updateRecord({
      jobId: this.#settings.jobId ?? "",
      processTag,
      cgroup: this.#cgroup?.record,
      files: [], // the env files are in the job's directory
      ...(markFile ? { markFile } : {}),
    });
    if (this.#finished || this.#stopped) throw new Error("stopped before the shell started");
    const pty = new PtyProcess({
      // A login shell as in the original; without readline, which reads the terminal one
      // byte at a time and costs ~0.2 ms per command line we write.
      command: ["bash", "--login", "--noediting"],
      env,
      processTag,
      cgroup: this.#cgroup,
      adoptedOrphans: this.#isolation?.kind === "none",
      markFile,
    });
    this.#pty = pty;
    this.#session = new ShellSession({ terminal: pty, hostStorageDir: storageDir });
    const handshake = this.#session.start();
    // Whoever waits for `spawned` (agent run) goes on to hold the thread for tens of
    // milliseconds (loading and parsing the request): the handshake must be in the pipe by
    // then, or a shell that is done with its login waits for that work to end.
    await this.#session.handshakeSent?.catch(() => {});
    onSpawned();
    await handshake;
    await pty.rememberTree();
    if (!this.#cgroup && !this.#finished) {
      await this.#track();
      this.#tracker = every(TRACK_INTERVAL_MS, () => this.#track());
    }
  }

  /** Names the job in the crash record (a shell started ahead learns it when a job takes it). */
  async name(jobId: string): Promise<void> {
    if (this.#record && this.#record.jobId !== jobId) {
      await this.#updateRecord({ ...this.#record, jobId });
    }
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
    if (dir) writeJobRecord(dir.path, record);
  }

  /** Whether {@linkcode stop} was called: a start that fails after it failed because of it. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Stops what runs now: the running command ends with exit code 1. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#session?.markStopped();
    await this.#pty?.kill();
  }

  /**
   * Empties the job's cgroup (or sweeps its processes), measures it, removes the cgroup. A
   * start still under way gets no further than the shell, which is killed. Problems go to `warn`.
   */
  finish(warn: (message: string) => void): Promise<ResourceUsage | undefined> {
    this.#finished ??= (async () => {
      await this.spawned;
      await this.stop();
      await this.ready.catch(() => {});
      this.#tracker?.cancel();
      const cgroup = this.#cgroup;
      if (!cgroup) return undefined;
      if (!(await cgroup.kill())) warn("Some processes of the job were still alive after 10 s");
      const usage = await cgroup.usage();
      await cgroup.remove().catch((error) => warn(errorMessage(error)));
      return usage;
    })();
    return this.#finished;
  }

  /** Ends the shell ({@linkcode finish}) and removes its directory. Idempotent. */
  cleanup(warn: (message: string) => void): Promise<void> {
    this.#cleaned ??= (async () => {
      await this.finish(warn);
      await this.#session?.close();
      const hostDir = await this.#hostDir?.catch(() => undefined);
      if (hostDir) {
        await hostDir.remove().catch((error) => {
          if (!(error instanceof Deno.errors.NotFound)) {
            warn(`Cannot remove ${hostDir.path}: ${errorMessage(error)}`);
          }
        });
      }
    })();
    return this.#cleaned;
  }
}
