/**
 * The few error types that carry meaning across modules (STYLE.md §5.6).
 *
 * @module
 */

/** A bad flag, config value or input file: main.ts prints its message and exits with `exitCode`. */
export class UsageError extends Error {
  /** The process exit code: 2 for flags and job files, 1 for configuration (§3.1.5). */
  readonly exitCode: number;
  constructor(message: string, options?: { exitCode?: number; cause?: unknown }) {
    super(message, { cause: options?.cause });
    this.name = "UsageError";
    this.exitCode = options?.exitCode ?? 2;
  }
}

/** An HTTP answer that was not the expected one (hub, callbacks, Docker Engine API). */
export class HttpError extends Error {
  readonly status: number;
  readonly body: string;
  constructor(message: string, options: { status: number; body?: string; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.name = "HttpError";
    this.status = options.status;
    this.body = options.body ?? "";
  }
}

/** A job that cannot be built from its request (unknown executor, no containers, ...). */
export class JobConstructionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "JobConstructionError";
  }
}

/** The message of anything thrown, for one-line logs and error texts. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A file system error worded as Go's `*PathError` prints it (`mkdir /a/b: permission denied`),
 * for the job log lines the original fills with Go's error text. Deno words the same error
 * `Permission denied (os error 13): mkdir '/a/b'`; other errors keep their message.
 */
export function goPathErrorText(error: unknown): string {
  const message = errorMessage(error);
  const match = /^(.+) \(os error \d+\): (\w+) '(.*)'$/.exec(message);
  if (!match) return message;
  const [, reason, op, path] = match;
  return `${op} ${path}: ${reason.charAt(0).toLowerCase()}${reason.slice(1)}`;
}
