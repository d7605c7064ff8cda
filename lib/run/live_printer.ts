/**
 * Shows a job to a person as it runs (DECISIONS.md 13): each command, its output, its exit
 * code and duration, then the result. A pure formatter over events: it writes text through
 * the function it is given and never touches stdout itself. What the job controls (its output,
 * its commands) is shown without escape sequences other than colours (`escape_filter.ts`).
 *
 * @module
 */

import { type EventSink, INVALID_BYTE, type JobEvent } from "../engine/events.ts";
import { EscapeFilter, stripEscapes } from "./escape_filter.ts";

/** Options of {@linkcode createLivePrinter}. */
export interface LivePrinterOptions {
  /** Receives the text to show. */
  readonly write: (text: string) => void;
  /** Use ANSI colours. @default false */
  readonly color?: boolean;
  /** Milliseconds clock, for durations. @default performance.now */
  readonly now?: () => number;
}

function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)}s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes}m${Math.round((ms % 60_000) / 1000)}s`;
}

/** An event sink that prints the job readably. */
export function createLivePrinter(options: LivePrinterOptions): EventSink {
  const { write, color = false, now = () => performance.now() } = options;
  const paint = (code: string, text: string) => color ? `\x1b[${code}m${text}\x1b[0m` : text;
  let jobStart = now();
  let commandStart = jobStart;
  let atLineStart = true;
  const output = new EscapeFilter();
  return {
    write(event: JobEvent): void {
      switch (event.event) {
        case "job_started":
          jobStart = now();
          break;
        case "cmd_started":
          commandStart = now();
          output.reset();
          write(
            paint("1;36", `$ ${stripEscapes(event.directive).trimEnd().replaceAll("\n", "\n  ")}`) +
              "\n",
          );
          atLineStart = true;
          break;
        case "cmd_output": {
          const text = output.push(event.output.replaceAll(INVALID_BYTE, "\ufffd"));
          if (text.length === 0) break;
          write(text);
          atLineStart = text.endsWith("\n");
          break;
        }
        case "cmd_finished": {
          // The job's colours and attributes (hidden text too) end with its output.
          if (output.styled) write("\x1b[0m");
          output.reset();
          if (!atLineStart) write("\n");
          atLineStart = true;
          const ok = event.exit_code === 0;
          const mark = ok ? paint("32", "✓") : paint("31", "✗");
          write(
            `${mark} exit ${event.exit_code} ${
              paint("2", `(${formatDuration(now() - commandStart)})`)
            }\n`,
          );
          break;
        }
        case "job_finished": {
          const tint = event.result === "passed"
            ? "1;32"
            : event.result === "failed"
            ? "1;31"
            : "1;33";
          write(`\n${paint(tint, `Job ${event.result}`)} in ${formatDuration(now() - jobStart)}\n`);
          break;
        }
      }
    },
  };
}
