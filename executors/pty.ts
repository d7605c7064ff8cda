/**
 * A local process attached to a new pseudo-terminal, seen as a {@linkcode Terminal}.
 *
 * Why util-linux `script` as the PTY shim: Deno has no PTY API and `Deno.Command` cannot hand
 * a child an arbitrary file descriptor. FFI `openpty` works, but reading the master needs
 * blocking calls on Deno's thread pool that cannot be cancelled, which keeps the event loop
 * alive and leaks ops in tests whenever a process holds the slave open. `script -qfec CMD
 * /dev/null` gives the command a real controlling terminal in a new session (so `stty`,
 * echo, CRLF translation and job control behave as on a terminal) and relays it over plain
 * pipes that Deno reads and cancels like any other stream. Measured here, both carry the same
 * bytes per second (the kernel's PTY is the bottleneck) and add the same per-command latency.
 *
 * @module
 */

import type { Terminal } from "../lib/engine/shell_session.ts";
import {
  findProcessTree,
  identifyProcessTree,
  killProcessTree,
  MARK_FD,
  type ProcessId,
  readStat,
} from "./process_tree.ts";
import type { JobCgroup } from "./job_cgroup.ts";
import { delay } from "../lib/util/delay.ts";

/** Options of {@linkcode spawnPty}. */
export interface PtyOptions {
  /** The program and its arguments. */
  readonly command: readonly string[];
  /** The whole environment of the process (nothing else is inherited). */
  readonly env: Readonly<Record<string, string>>;
  /** @default the agent's working directory */
  readonly cwd?: string;
  /** `NAME=VALUE` added to the environment to find the job's processes when stopping. */
  readonly processTag: string;
  /**
   * The job's cgroup: the shim joins it before it starts, so every process of the job is in it,
   * and killing the tree empties it. Without one, the tree is swept through `/proc`.
   */
  readonly cgroup?: JobCgroup;
  /** Without a cgroup: the agent is a child subreaper, so sweep its adopted orphans too. */
  readonly adoptedOrphans?: boolean;
  /**
   * Without a cgroup: a file the shim opens on descriptor {@linkcode MARK_FD} for the job's
   * processes to inherit, so that those which drop the tag and leave the session are found.
   */
  readonly markFile?: string;
}

/** Opens the mark file on MARK_FD (bash: sh has one-digit descriptors only), then `script`. */
const HOLD_MARK = `exec ${MARK_FD}<"$0" && exec script -qfec "$1" /dev/null`;

/**
 * Joins the cgroup (its pid written to each `cgroup.procs`), then becomes `script`: every
 * process of the job starts inside the cgroup. Exit code 125 when it cannot join.
 */
const JOIN_CGROUP =
  'cmd=$1; shift; for f; do echo $$ > "$f" || exit 125; done; exec script -qfec "$cmd" /dev/null';

/** Quotes one argument for `sh`. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'"'"'`)}'`;
}

/** A process on a PTY: its output, its input, its exit; kills its whole tree when disposed. */
export class PtyProcess implements Terminal, AsyncDisposable {
  readonly readable: ReadableStream<Uint8Array>;
  readonly exited: Promise<number | null>;
  readonly pid: number;
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #tag: string;
  readonly #sessions = new Set<number>();
  readonly #cgroup: JobCgroup | undefined;
  readonly #adoptedOrphans: boolean;
  readonly #markFile: string | undefined;
  #alive = true;
  #killed: Promise<void> | undefined;

  constructor(options: PtyOptions) {
    const { command, env, cwd, processTag, cgroup } = options;
    const [tagName, ...tagValue] = processTag.split("=");
    this.#tag = processTag;
    this.#cgroup = cgroup;
    this.#adoptedOrphans = options.adoptedOrphans ?? false;
    const markFile = cgroup ? undefined : options.markFile;
    this.#markFile = markFile;
    const line = command.map(shellQuote).join(" ");
    this.#child = new Deno.Command(cgroup ? "sh" : markFile ? "bash" : "script", {
      args: cgroup
        ? ["-c", JOIN_CGROUP, "sh", line, ...cgroup.procsFiles]
        : markFile
        ? ["-c", HOLD_MARK, markFile, line]
        : ["-qfec", line, "/dev/null"],
      env: { ...env, [tagName]: tagValue.join("=") },
      clearEnv: true,
      cwd,
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.pid = this.#child.pid;
    this.readable = this.#child.stdout;
    this.#writer = this.#child.stdin.getWriter();
    this.#writer.closed.catch(() => {}); // a dead shell is reported through `exited`
    this.exited = this.#child.status.then((s) => {
      this.#alive = false;
      return s.signal ? null : s.code;
    });
  }

  /**
   * Notes the sessions of the processes now under the shim (the shell leads one), so they are
   * found when stopping even after the shim itself is gone and its pid may be reused.
   */
  async rememberTree(): Promise<void> {
    if (!this.#alive || this.#cgroup) return;
    for (const pid of await findProcessTree({ rootPid: this.pid })) {
      if (pid === this.pid) continue;
      const info = await readStat(pid);
      if (info) this.#sessions.add(info.sid);
    }
  }

  /**
   * The shim and the shell it started (what a pids limit must not kill): `script` runs the
   * command through `$SHELL -c`, which is the shell itself when that execs, else its parent.
   */
  async shellPids(): Promise<Set<number>> {
    const out = new Set([this.pid]);
    const infos = [];
    for (const pid of this.#cgroup?.pids() ?? []) {
      const info = await readStat(pid);
      if (info) infos.push(info);
    }
    for (const child of infos.filter((p) => p.ppid === this.pid)) {
      out.add(child.pid);
      if (child.comm === "bash") continue;
      for (const grandchild of infos.filter((p) => p.ppid === child.pid && p.comm === "bash")) {
        out.add(grandchild.pid);
      }
    }
    return out;
  }

  /** Without a cgroup: the job's processes now, named for good (for the crash record). */
  async identifyTree(): Promise<ProcessId[]> {
    return await identifyProcessTree({
      rootPid: this.#alive ? this.pid : -1,
      sessionIds: [...this.#sessions],
      adoptedOrphans: this.#adoptedOrphans,
    });
  }

  async #sweep(): Promise<void> {
    if (this.#cgroup) {
      await this.#cgroup.kill();
      return;
    }
    await killProcessTree({
      rootPid: this.#alive ? this.pid : -1,
      tag: this.#tag,
      sessionIds: [...this.#sessions],
      adoptedOrphans: this.#adoptedOrphans,
      markFile: this.#markFile,
    });
  }

  /**
   * Ends the terminal's input (`script` passes it on as end-of-file) and waits until the process
   * is gone, at most `graceMs`: a shell reads what it was given, then exits by itself. Resolves
   * with whether it did.
   */
  async endInput(graceMs: number): Promise<boolean> {
    await this.#writer.close().catch(() => {});
    const timeUp = new AbortController();
    const gone = await Promise.race([
      this.exited.then(() => true),
      delay(graceMs, timeUp.signal).then(() => false),
    ]);
    timeUp.abort();
    return gone;
  }

  /** Writes to the terminal's input; rejects once the process is gone. */
  write(bytes: Uint8Array): Promise<void> {
    return this.#writer.write(bytes);
  }

  /**
   * Kills the process and everything it started, then waits for it (and, with a cgroup, until
   * the cgroup is empty). Idempotent.
   */
  kill(): Promise<void> {
    this.#killed ??= (async () => {
      await this.rememberTree();
      await this.#sweep();
      // The shim itself, in case the sweep missed it: killed before it joined the job's cgroup,
      // it would still start the shell, which then waits for input that never comes. (What it
      // started meanwhile is in the cgroup: the second sweep gets it.)
      if (this.#alive) {
        try {
          this.#child.kill("SIGKILL");
        } catch {
          // already gone
        }
      }
      await this.exited;
      await this.#writer.close().catch(() => {});
      await this.#sweep(); // what forked while the first sweep ran
    })();
    return this.#killed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }
}
