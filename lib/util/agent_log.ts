/**
 * The agent's own diagnostic log (SEMAPHORE_COMPAT.md §2.1), separate from the job log. Lines
 * look like `Aug 11 21:07:26.242 <name> : <message>` (UTC, day space-padded), or with
 * `--log-format json` one JSON object a line (`time`, `level`, `msg`, `agent`, `job_id` while a
 * job runs), and go to a file and to stdout. Modules receive a {@linkcode Logger}; only this
 * module writes the lines, and {@linkcode agentLogFromEnv} is how every mode sets the log up.
 *
 * @module
 */

import { UsageError } from "./errors.ts";
import { osTempDir } from "./temp_dir.ts";
import { parentDir } from "./clean_path.ts";

/** Levels in increasing verbosity, as logrus names them. */
export type LogLevel = "panic" | "fatal" | "error" | "warn" | "info" | "debug" | "trace";

const LEVELS: readonly LogLevel[] = ["panic", "fatal", "error", "warn", "info", "debug", "trace"];

/** How lines are written: the original's text, or one JSON object a line. */
export type LogFormat = "text" | "json";

/**
 * Parses `--log-format` / `SEMAPHORE_AGENT_LOG_FORMAT` (case-insensitive).
 *
 * @throws {RangeError} `Log format <value> not supported (text, json)` for anything else.
 */
export function parseLogFormat(value: string): LogFormat {
  const lower = value.trim().toLowerCase();
  if (lower === "text" || lower === "json") return lower;
  throw new RangeError(`Log format ${value} not supported (text, json)`);
}

/** What every module that logs receives. */
export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  /** Whether debug lines are written (lets callers skip building expensive messages). */
  readonly debugEnabled: boolean;
  /**
   * Writes a line as it is, at every level, with no timestamp or name (the original writes
   * its HTTP access lines straight to the log). @default `info`
   */
  raw?(line: string): void;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Lines at this level or more severe are written. @default "info" */
  readonly level?: LogLevel;
  /** Appends each line here (created if missing). @default no file */
  readonly filePath?: string;
  /** Also writes each line to stdout. @default true */
  readonly stdout?: boolean;
  /** Returns the name shown after the timestamp (self-hosted); may change over time. */
  readonly name?: () => string;
  /** Receives every line (tests). */
  readonly onLine?: (line: string) => void;
  /** @default "text" */
  readonly format?: LogFormat;
  /** The running job's id, shown as `job_id` in JSON lines. @default none */
  readonly jobId?: () => string | undefined;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Formats a time as Go's `Jan _2 15:04:05.000` in UTC. */
export function formatLogTime(date: Date): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${MONTHS[date.getUTCMonth()]} ${String(date.getUTCDate()).padStart(2, " ")} ` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}.` +
    pad(date.getUTCMilliseconds(), 3);
}

/**
 * Parses a level name case-insensitively (`warning` is `warn`).
 *
 * @throws {RangeError} `Log level <value> not supported` for an unknown name.
 */
export function parseLogLevel(value: string): LogLevel {
  const lower = value.toLowerCase();
  const level = lower === "warning" ? "warn" : lower;
  if (!(LEVELS as readonly string[]).includes(level)) {
    throw new RangeError(`Log level ${value} not supported`);
  }
  return level as LogLevel;
}

function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
}

/** Creates a logger that writes synchronously, so no line is lost when the process exits. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const { level = "info", filePath, stdout = true, name, onLine, format = "text", jobId } = options;
  const max = LEVELS.indexOf(level);
  const encoder = new TextEncoder();
  let file: Deno.FsFile | undefined;
  if (filePath) {
    try {
      file = Deno.openSync(filePath, { append: true, create: true, mode: 0o644 });
    } catch {
      file = undefined; // the log still reaches stdout; a missing log file must not stop a job
    }
  }
  const write = (line: string) => {
    onLine?.(line);
    const bytes = encoder.encode(line);
    try {
      file?.writeSync(bytes);
    } catch {
      // best effort: the agent log must never break the agent
    }
    if (stdout) {
      try {
        Deno.stdout.writeSync(bytes);
      } catch {
        // stdout closed: nothing better to do
      }
    }
  };
  let host: string | undefined;
  const json = (lvl: LogLevel, message: string) => {
    const job = jobId?.();
    // Without a name (serve, run) the host names the agent.
    const agent = name?.() || (host ??= hostName());
    return `${
      JSON.stringify({
        time: new Date().toISOString(),
        level: lvl,
        msg: message,
        agent,
        ...(job ? { job_id: job } : {}),
      })
    }\n`;
  };
  const emit = (lvl: LogLevel, message: string) => {
    if (LEVELS.indexOf(lvl) > max) return;
    if (format === "json") return write(json(lvl, message));
    const who = name?.() ?? "";
    write(`${formatLogTime(new Date())}${who ? ` ${who}` : ""} : ${message}\n`);
  };
  return {
    error: (m) => emit("error", m),
    warn: (m) => emit("warn", m),
    info: (m) => emit("info", m),
    debug: (m) => emit("debug", m),
    debugEnabled: max >= LEVELS.indexOf("debug"),
    raw: (line) => write(format === "json" ? json("info", line) : `${line}\n`),
  };
}

/** Options of {@linkcode agentLogFromEnv}. */
export interface AgentLogFromEnvOptions {
  /** The level when `SEMAPHORE_AGENT_LOG_LEVEL` is unset or empty. @default "info" */
  readonly defaultLevel?: LogLevel;
  /**
   * `file`: `$SEMAPHORE_AGENT_LOG_FILE_PATH`, else `<tmpdir>/agent_log`, plus stdout (§2.1).
   * `stderr`: stderr alone (`agent run`, whose stdout is the job). @default "file"
   */
  readonly destination?: "file" | "stderr";
  /** The name shown after the timestamp (self-hosted). @default none */
  readonly name?: () => string;
  /**
   * The format, as `--log-format` gives it or already parsed.
   * @default `$SEMAPHORE_AGENT_LOG_FORMAT`, else "text"
   */
  readonly format?: string;
  /** The running job's id, shown as `job_id` in JSON lines. @default none */
  readonly jobId?: () => string | undefined;
}

/**
 * The agent log of a mode as the environment configures it (SEMAPHORE_COMPAT.md §2.1): the
 * level from `$SEMAPHORE_AGENT_LOG_LEVEL`, the format from the option or
 * `$SEMAPHORE_AGENT_LOG_FORMAT`, the file from `$SEMAPHORE_AGENT_LOG_FILE_PATH` (its directory
 * created when missing).
 *
 * @throws {UsageError} (exit code 1) `Log level <value> not supported`, `Log format <value> not
 *   supported (text, json)`, or a log directory that cannot be created.
 */
export function agentLogFromEnv(options: AgentLogFromEnvOptions = {}): Logger {
  const { defaultLevel = "info", destination = "file", name, jobId } = options;
  let level: LogLevel;
  let format: LogFormat;
  try {
    level = parseLogLevel(Deno.env.get("SEMAPHORE_AGENT_LOG_LEVEL") || defaultLevel);
    format = parseLogFormat(
      options.format ?? (Deno.env.get("SEMAPHORE_AGENT_LOG_FORMAT") || "text"),
    );
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error), {
      exitCode: 1,
    });
  }
  if (destination === "stderr") {
    const encoder = new TextEncoder();
    return createLogger({
      level,
      format,
      jobId,
      stdout: false,
      onLine: (line) => {
        try {
          Deno.stderr.writeSync(encoder.encode(line));
        } catch {
          // stderr closed: nothing better to do
        }
      },
    });
  }
  const filePath = Deno.env.get("SEMAPHORE_AGENT_LOG_FILE_PATH") || `${osTempDir()}/agent_log`;
  const dir = parentDir(filePath);
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
  } catch (error) {
    throw new UsageError(
      `Cannot create the agent log directory ${dir}: ${
        error instanceof Error ? error.message : String(error)
      }`,
      { exitCode: 1, cause: error },
    );
  }
  return createLogger({ level, filePath, name, format, jobId });
}

/** A logger that drops everything (tests, library use). */
export const silentLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  debugEnabled: false,
};
