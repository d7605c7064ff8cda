/**
 * Logs one command or pseudo-command as the original does: `cmd_started`, its output as
 * `cmd_output` chunks, `cmd_finished` with the exit code and times (SEMAPHORE_COMPAT.md §6.1,
 * §9.3 step 7). Shared by every executor.
 *
 * When the sink is a {@linkcode RedactingSink}, the output bytes go through its redactor before
 * they are cut into chunks, so a secret split across reads or pauses is still caught.
 *
 * @module
 */

import { type EventSink, unixSeconds } from "./events.ts";
import { OutputBuffer } from "./output_buffer.ts";
import { RedactingSink, type RedactionStream } from "./redactor.ts";

/** One logged (pseudo-)command, from `cmd_started` to `cmd_finished`. */
export class CommandLog {
  readonly #sink: EventSink;
  readonly #directive: string;
  readonly #startedAt: number;
  readonly #buffer: OutputBuffer;
  /** The redactor's stream the output goes through first, when the sink redacts. */
  readonly #redaction: RedactionStream | undefined;
  #finished = false;

  private constructor(sink: EventSink, directive: string) {
    this.#sink = sink;
    this.#directive = directive;
    this.#startedAt = unixSeconds();
    // Redacted chunks go past the redacting sink, which would only scan them again.
    const chunkSink = sink instanceof RedactingSink ? sink.inner : sink;
    this.#buffer = new OutputBuffer({
      onOutput: (output) =>
        chunkSink.write({ event: "cmd_output", timestamp: unixSeconds(), output }),
    });
    if (sink instanceof RedactingSink) {
      this.#redaction = sink.redactor.openStream((bytes) => this.#buffer.append(bytes));
    }
    sink.write({ event: "cmd_started", timestamp: this.#startedAt, directive });
  }

  /** Writes `cmd_started` for `directive` now and returns the open command. */
  static start(sink: EventSink, directive: string): CommandLog {
    return new CommandLog(sink, directive);
  }

  /**
   * Adds raw command output (chunked per §6.3 / DECISIONS.md 17, redacted first when the sink
   * redacts); keeps no reference to `bytes`. Returns the sink's back-pressure
   * ({@linkcode EventSink.ready}): wait for it before giving more.
   */
  output(bytes: Uint8Array): Promise<void> | undefined {
    if (this.#redaction) this.#redaction.write(bytes);
    else this.#buffer.append(bytes);
    return this.#sink.ready?.();
  }

  /** Writes a line the agent itself produces (e.g. `Exporting A\n`) as one `cmd_output`. */
  text(text: string): void {
    this.#redaction?.end();
    this.#buffer.flush();
    this.#sink.write({ event: "cmd_output", timestamp: unixSeconds(), output: text });
  }

  /** Flushes the output and writes `cmd_finished`; later calls do nothing. */
  finish(exitCode: number): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#redaction?.end();
    this.#buffer.close();
    const now = unixSeconds();
    this.#sink.write({
      event: "cmd_finished",
      timestamp: now,
      directive: this.#directive,
      exit_code: exitCode,
      started_at: this.#startedAt,
      finished_at: now,
    });
  }
}

/** How a command is shown (SEMAPHORE_COMPAT.md §9.3 step 7). */
export interface LoggedCommandOptions {
  /** Shown as the directive; the first output line is then `Running: <command>`. */
  readonly alias?: string;
  /** A `Warning: <warning>` line after the `Running:` line (hooks). */
  readonly warning?: string;
  /** Logs nothing. @default false */
  readonly silent?: boolean;
}

/** Something that runs commands and streams their output (a {@linkcode ShellSession}). */
export interface CommandRunner {
  /** `onOutput` may return a promise: no more output is read until it settles. */
  run(command: string, onOutput: (bytes: Uint8Array) => void | Promise<void>): Promise<number>;
}

/**
 * Runs one command in a session and logs it: directive or alias, lines, output, exit code.
 * Without a session (the job shell never started) it logs nothing and resolves with 1.
 */
export async function runLoggedCommand(
  session: CommandRunner | undefined,
  sink: EventSink,
  command: string,
  options: LoggedCommandOptions = {},
): Promise<number> {
  if (!session) return 1;
  const { alias = "", warning = "", silent = false } = options;
  if (silent) return await session.run(command, () => {});
  const log = CommandLog.start(sink, alias || command);
  if (alias) log.text(`Running: ${command}\n`);
  if (warning) log.text(`Warning: ${warning}\n`);
  const exitCode = await session.run(command, (bytes) => log.output(bytes));
  log.finish(exitCode);
  return exitCode;
}
