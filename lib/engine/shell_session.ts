/**
 * The stateful-shell protocol over any terminal stream (SEMAPHORE_COMPAT.md §9.2, §9.3): the
 * start handshake, then each command written to a file, `source`d by one long-lived bash
 * between two markers, and its exit code read back. Works the same for a local PTY and for a
 * container's TTY stream: the executor supplies the {@linkcode Terminal}.
 *
 * One change from the original, invisible in the job log: after the end marker the original
 * runs `echo "exit $AGENT_CMD_RESULT" | sh` to set `$?` for the next command, which forks two
 * processes per command. We `source` a file holding `return $AGENT_CMD_RESULT`, which sets
 * `$?` the same way (and trips `set -e` the same way) without forking.
 *
 * Two more, also invisible in the log of an ordinary job: the boot marker is recognised as an
 * exact token with a nonce, under a deadline ({@linkcode ShellSession.start}), and the command
 * markers are printed on the job's terminal, where a command's own redirections cannot take
 * them (`toTerminal`).
 *
 * @module
 */

import { concatAll, concatBytes } from "../util/bytes.ts";
import { after, type Timer } from "../util/delay.ts";

/** A terminal a shell runs on. */
export interface Terminal {
  /** The terminal's output: what the shell prints, echo included. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Writes to the terminal's input. */
  write(bytes: Uint8Array): Promise<void>;
  /** The shell's exit status once it ended (`null` when unknown, e.g. killed by a signal). */
  readonly exited: Promise<number | null>;
}

/** Options of {@linkcode ShellSession}. */
export interface ShellSessionOptions {
  readonly terminal: Terminal;
  /** Where the agent writes the command file, on the agent's host. */
  readonly hostStorageDir: string;
  /** The same directory as the shell sees it. @default hostStorageDir */
  readonly shellStorageDir?: string;
  /**
   * Mode of the files the agent writes there, set when each is created (DECISIONS.md 20).
   * @default 0o600 (a container executor whose user may be anyone passes 0o644, and keeps
   * the directory private on the host)
   */
  readonly fileMode?: number;
}

/** What a silent command printed and how it exited (§9.8). */
export interface SessionOutput {
  readonly output: string;
  readonly exitCode: number;
}

/**
 * What a silently run command printed and its exit code (§9.8); without a session (the job
 * shell never started) no output and exit code 1.
 */
export async function sessionOutput(
  session: ShellSession | undefined,
  command: string,
): Promise<SessionOutput> {
  if (!session) return { output: "", exitCode: 1 };
  return await session.output(command);
}

/** The boot marker of the handshake (§9.2). */
export const BOOT_MARKER = "87d140552e404df69f6472729d2b2c3";
/** How long the shell gets to answer the handshake (login profiles included). */
export const SHELL_START_TIMEOUT_MS = 60_000;
/** Bytes of one handshake line kept before only its end is. */
const MAX_START_LINE = 64 * 1024;
const KEPT_LINE_END = 4096;
const COMMAND_FILE = "current-agent-cmd";
const RETURN_FILE = "current-agent-return";
const SOH = 0x01;
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/** Size of the buffer a terminal is read into: a pipe's capacity. */
const READ_SIZE = 64 * 1024;

/**
 * Reads a terminal's output. A byte stream (a PTY's pipe) is read into one buffer, reused for
 * every read, so that output costs no allocation per read: each chunk is valid only until the
 * next `read()`, and whoever keeps bytes across a read copies them. Other streams are read as
 * they come.
 */
class ByteReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array> | ReadableStreamBYOBReader;
  /** The reused buffer of a byte stream. */
  #buffer: ArrayBuffer | undefined;
  #done = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    let reader: ReadableStreamDefaultReader<Uint8Array> | ReadableStreamBYOBReader;
    try {
      reader = stream.getReader({ mode: "byob" });
      this.#buffer = new ArrayBuffer(READ_SIZE);
    } catch {
      reader = stream.getReader(); // not a byte stream
    }
    this.#reader = reader;
  }

  get done(): boolean {
    return this.#done;
  }

  /**
   * The next chunk, valid until the next `read()`; `undefined` at the end of the stream (or on
   * a read error).
   */
  async read(): Promise<Uint8Array | undefined> {
    if (this.#done) return undefined;
    try {
      const { value, done } = this.#buffer
        ? await (this.#reader as ReadableStreamBYOBReader).read(new Uint8Array(this.#buffer))
        : await (this.#reader as ReadableStreamDefaultReader<Uint8Array>).read();
      if (this.#buffer && value) this.#buffer = value.buffer as ArrayBuffer;
      if (done || value === undefined) {
        this.#done = true;
        return undefined;
      }
      return value;
    } catch {
      this.#done = true;
      return undefined;
    }
  }

  async cancel(): Promise<void> {
    this.#done = true;
    await this.#reader.cancel().catch(() => {});
  }
}

/**
 * The shell code that prints a protocol marker (`echo -e` of `quoted`) on the job's terminal,
 * `/dev/tty`, rather than on its standard output: a command that redirected its output
 * (`exec > file 2>&1`, `exec 1>&-`) takes its later output away from the log, but not the
 * markers, so the job goes on. When the terminal cannot be opened, standard output is used.
 * On a shell whose output is its terminal, the bytes and their order are those of the original.
 */
function toTerminal(quoted: string): string {
  // No braces: `set -x` traces the first `echo` as the original's (a group's `2>` would hide it).
  return `echo -e ${quoted} 2>/dev/null >/dev/tty || echo -e ${quoted}`;
}

function formatSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

function indexOfBytes(haystack: Uint8Array, needle: Uint8Array, from = 0): number {
  const first = needle[0];
  for (let i = haystack.indexOf(first, from); i !== -1; i = haystack.indexOf(first, i + 1)) {
    if (i + needle.length > haystack.length) return -1;
    let k = 1;
    while (k < needle.length && haystack[i + k] === needle[k]) k++;
    if (k === needle.length) return i;
  }
  return -1;
}

/**
 * Whether `head` (bytes from a 0x01 on) may still grow into the end marker `<prefix><digits>`
 * followed by a newline: the bytes so far agree with it and nothing contradicts it yet.
 */
function couldBecomeEndMarker(head: string, prefix: string): boolean {
  if (head.length <= prefix.length) return prefix.startsWith(head);
  if (!head.startsWith(prefix)) return false;
  return /^\d*$/.test(head.slice(prefix.length));
}

/** One bash session on a terminal. Not re-entrant: one command at a time. */
export class ShellSession {
  readonly #terminal: Terminal;
  readonly #hostDir: string;
  readonly #shellDir: string;
  readonly #fileMode: number;
  readonly #reader: ByteReader;
  /** Bytes read but not consumed yet. */
  #rest: Uint8Array = new Uint8Array(0);
  #stopped = false;
  /** Set once the shell's end was reported for a command: later commands get exit code 1. */
  #deathReported = false;
  #handshakeSent: Promise<void> | undefined;

  constructor(options: ShellSessionOptions) {
    const { terminal, hostStorageDir, shellStorageDir = hostStorageDir, fileMode = 0o600 } =
      options;
    this.#terminal = terminal;
    this.#hostDir = hostStorageDir;
    this.#shellDir = shellStorageDir;
    this.#fileMode = fileMode;
    this.#reader = new ByteReader(terminal.readable);
  }

  /**
   * The §9.2 handshake: turns off the prompt and echo, goes home, and waits for the boot
   * marker. A stream that ends first counts as started, as in the original.
   *
   * The marker is recognised as an exact token: it is printed followed by a nonce of this
   * session (`<marker> <nonce>`), and only a line that ends with exactly that counts. The
   * original takes any line that contains the marker and not `echo`, which a first prompt
   * landing on the marker's line (`user@host:/tmp/echo$ 87d1...`) defeats, and which a prompt
   * printing the marker's text fakes. The echo of our own input ends with a quote; a prompt
   * printed before our input arrived cannot hold the nonce.
   *
   * @throws {Error} with the offending line when a line contains one of `failurePatterns`,
   *   and when the shell does not answer within `timeoutMs`.
   */
  async start(
    options: { failurePatterns?: readonly string[]; timeoutMs?: number } = {},
  ): Promise<void> {
    const { failurePatterns = [], timeoutMs = SHELL_START_TIMEOUT_MS } = options;
    // Written before the first `await`: the handshake's write is under way when this returns
    // (it is done once the event loop runs: see handshakeSent).
    Deno.writeTextFileSync(`${this.#hostDir}/${RETURN_FILE}`, "return $AGENT_CMD_RESULT\n", {
      mode: this.#fileMode,
    });
    const nonce = crypto.randomUUID().replaceAll("-", "");
    const token = `${BOOT_MARKER} ${nonce}`;
    this.#handshakeSent = this.#write(
      "export PS1=''\nstty -echo\necho stty `stty -g` > /tmp/restore-tty\ncd ~\n" +
        `echo '${BOOT_MARKER}' '${nonce}'\n`,
    );
    await this.#handshakeSent;
    let timer: Timer | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = after(timeoutMs, () => resolve("timeout"));
    });
    try {
      while (true) {
        const nl = this.#rest.indexOf(0x0a);
        if (nl === -1) {
          const chunk = await Promise.race([this.#reader.read(), timedOut]);
          if (chunk === "timeout") {
            throw new Error(`the shell did not answer within ${formatSeconds(timeoutMs)}`);
          }
          if (chunk === undefined) return;
          // A line that never ends (a profile printing without newlines) is not kept whole:
          // its end is enough to find the marker or a failure pattern.
          if (this.#rest.length > MAX_START_LINE) this.#rest = this.#rest.slice(-KEPT_LINE_END);
          this.#rest = concatBytes(this.#rest, chunk);
          if (this.#rest === chunk) this.#rest = chunk.slice(); // the reader reuses its buffer
          continue;
        }
        const line = latin1.decode(this.#rest.subarray(0, nl + 1)).replace(/\r*\n$/, "");
        this.#rest = this.#rest.slice(nl + 1);
        for (const pattern of failurePatterns) {
          if (line.includes(pattern)) throw new Error(line);
        }
        if (line.endsWith(token)) return;
      }
    } finally {
      timer?.cancel();
    }
  }

  /**
   * Runs one command with the marker protocol (§9.3); its output, markers removed, goes to
   * `onOutput` as it arrives. Resolves with the exit code: the command's own, or when the
   * shell ended during it the shell's exit status (DECISIONS.md 8), or 1 when the session was
   * stopped or the shell was already gone.
   *
   * `onOutput` gets bytes that are valid only during the call (copy what you keep). When it
   * returns a promise, no more output is read until that settles: a slow consumer slows the
   * command down (its writes to the terminal block) instead of buffering without bound.
   */
  async run(
    command: string,
    onOutput: (bytes: Uint8Array) => void | Promise<void>,
  ): Promise<number> {
    if (this.#stopped || this.#reader.done) return 1;
    const seconds = Math.floor(Date.now() / 1000);
    const startMarker = `949556c7-${seconds}-start`;
    const end = `949556c7-${seconds}-end`;
    const start = encoder.encode(`${startMarker}\r\n`);
    const endPattern = new RegExp(`^\\x01 ${end} (\\d+)[\\r\\n]+`);
    try {
      Deno.writeTextFileSync(`${this.#hostDir}/${COMMAND_FILE}`, command, {
        mode: this.#fileMode,
      });
      await this.#write(
        `${toTerminal(`"\\001 ${startMarker}"`)}; source ${this.#shellDir}/${COMMAND_FILE}; ` +
          `AGENT_CMD_RESULT=$?; ${toTerminal(`"\\001 ${end} $AGENT_CMD_RESULT"`)}; ` +
          `source ${this.#shellDir}/${RETURN_FILE}\n`,
      );
    } catch {
      return this.#shellGone();
    }

    // Discard everything (echo, late background output) up to the start marker.
    let buffer = this.#rest;
    this.#rest = new Uint8Array(0);
    while (true) {
      const at = indexOfBytes(buffer, start);
      if (at !== -1) {
        buffer = buffer.subarray(at + start.length);
        break;
      }
      // A copy: the reader reuses its buffer.
      buffer = buffer.slice(Math.max(0, buffer.length - start.length));
      const chunk = await this.#reader.read();
      if (chunk === undefined) return this.#shellGone();
      buffer = concatBytes(buffer, chunk);
    }

    const endPrefix = `\x01 ${end} `;
    /** What the receiver of the output asks to wait for before more is read (back-pressure). */
    let wait: Promise<void> | undefined;
    const emit = (bytes: Uint8Array) => {
      wait = (onOutput(bytes) as Promise<void> | undefined) ?? wait;
    };
    while (true) {
      const soh = buffer.indexOf(SOH);
      if (soh === -1) {
        if (buffer.length > 0) emit(buffer);
        buffer = new Uint8Array(0);
      } else {
        if (soh > 0) emit(buffer.subarray(0, soh));
        buffer = buffer.subarray(soh);
        const head = latin1.decode(buffer.subarray(0, endPrefix.length + 24));
        const match = endPattern.exec(head);
        if (match) {
          this.#rest = buffer.slice(match[0].length);
          return Number(match[1]);
        }
        if (!couldBecomeEndMarker(head, endPrefix)) {
          emit(buffer.subarray(0, 1)); // a 0x01 of the command's own output
          buffer = buffer.subarray(1);
          continue;
        }
      }
      if (buffer.length > 0) buffer = buffer.slice(); // a copy: the reader reuses its buffer
      if (wait) {
        await wait;
        wait = undefined;
      }
      const chunk = await this.#reader.read();
      if (chunk === undefined) {
        if (buffer.length > 0) onOutput(buffer);
        return this.#shellGone();
      }
      buffer = concatBytes(buffer, chunk);
    }
  }

  /** Runs a command silently and returns what it printed (§9.8). */
  async output(command: string): Promise<SessionOutput> {
    const parts: Uint8Array[] = [];
    const exitCode = await this.run(command, (bytes) => {
      parts.push(bytes.slice());
    });
    return {
      output: new TextDecoder().decode(concatAll(parts)).replaceAll("\r\n", "\n"),
      exitCode,
    };
  }

  /** From now on the running command and every later one end with exit code 1 (§5.5). */
  markStopped(): void {
    this.#stopped = true;
  }

  /**
   * Settles once the handshake {@linkcode start} writes is with the OS (the write is done by
   * Deno's event loop, not in the call): a shell that has finished its login waits for it, so
   * whoever goes on to hold the agent's thread for a while awaits this first. `undefined` before
   * `start`; rejects as the write does (the shell is gone).
   */
  get handshakeSent(): Promise<void> | undefined {
    return this.#handshakeSent;
  }

  /** Stops reading the terminal. */
  async close(): Promise<void> {
    await this.#reader.cancel();
  }

  async #write(text: string): Promise<void> {
    await this.#terminal.write(encoder.encode(text));
  }

  async #shellGone(): Promise<number> {
    if (this.#stopped || this.#deathReported) return 1;
    this.#deathReported = true;
    const status = await this.#terminal.exited;
    return status === null || status === 0 ? 1 : status;
  }
}
