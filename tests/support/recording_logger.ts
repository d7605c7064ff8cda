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
  /** Resolves with the first line (recorded or to come) that `predicate` accepts. */
  waitForLine(predicate: (line: string) => boolean): Promise<string>;
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
  const waiters = new Set<{ predicate: (line: string) => boolean; resolve: (l: string) => void }>();
  const record = (level: string) => (message: string) => {
    const line = levels ? `${level}: ${message}` : message;
    lines.push(line);
    for (const waiter of waiters) {
      if (!waiter.predicate(line)) continue;
      waiters.delete(waiter);
      waiter.resolve(line);
    }
  };
  return {
    lines,
    waitForLine(predicate) {
      const line = lines.find(predicate);
      if (line !== undefined) return Promise.resolve(line);
      return new Promise((resolve) => waiters.add({ predicate, resolve }));
    },
    error: record("error"),
    warn: record("warn"),
    info: record("info"),
    debug: record("debug"),
    debugEnabled: false,
  };
}
