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
import { findProcessTree, killProcessTree } from "./process_tree.ts";

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
}

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
  #alive = true;
  #killed: Promise<void> | undefined;

  constructor(options: PtyOptions) {
    const { command, env, cwd, processTag } = options;
    const [tagName, ...tagValue] = processTag.split("=");
    this.#tag = processTag;
    this.#child = new Deno.Command("script", {
      args: ["-qfec", command.map(shellQuote).join(" "), "/dev/null"],
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
  rememberTree(): void {
    if (!this.#alive) return;
    for (const pid of findProcessTree({ rootPid: this.pid })) {
      if (pid === this.pid) continue;
      try {
        const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
        this.#sessions.add(Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[3]));
      } catch {
        // gone meanwhile
      }
    }
  }

  #sweep(): void {
    killProcessTree({
      rootPid: this.#alive ? this.pid : -1,
      tag: this.#tag,
      sessionIds: [...this.#sessions],
    });
  }

  /** Writes to the terminal's input; rejects once the process is gone. */
  write(bytes: Uint8Array): Promise<void> {
    return this.#writer.write(bytes);
  }

  /** Kills the process and everything it started, then waits for it. Idempotent. */
  kill(): Promise<void> {
    this.#killed ??= (async () => {
      this.rememberTree();
      this.#sweep();
      await this.exited;
      await this.#writer.close().catch(() => {});
      this.#sweep(); // what forked while the first sweep ran
    })();
    return this.#killed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }
}
