/**
 * A {@linkcode Logger} for tests that keeps every line in memory, so that a test can check what
 * the agent said (its own diagnostic log, not the job log).
 *
 * @module
 */

import type { Logger } from "../../lib/util/agent_log.ts";

/** A logger whose lines a test can read. */
export interface RecordingLogger extends Logger {
  /** Every message in order, as `<level>: <message>` unless `levels` was off. */
  readonly lines: string[];
}

/** Options of {@linkcode recordingLogger}. */
export interface RecordingLoggerOptions {
  /** Prefixes each line with its level (`warn: ...`). @default true */
  readonly levels?: boolean;
}

/** A logger that keeps its lines (debug lines included; `debugEnabled` is false). */
export function recordingLogger(options: RecordingLoggerOptions = {}): RecordingLogger {
  const { levels = true } = options;
  const lines: string[] = [];
  const record = (level: string) => (message: string) => {
    lines.push(levels ? `${level}: ${message}` : message);
  };
  return {
    lines,
    error: record("error"),
    warn: record("warn"),
    info: record("info"),
    debug: record("debug"),
    debugEnabled: false,
  };
}
