/**
 * The pull logger's callbacks (SEMAPHORE_COMPAT.md §7.7): `POST <url>` with an exact body,
 * `User-Agent: SemaphoreAgent/<v>`, `Authorization: Bearer <token>` only for a non-empty token,
 * no `Content-Type`, a 30 s timeout per attempt (§2.3) and 1 s between attempts. Any 2xx is
 * success. An empty URL is skipped at once (DECISIONS.md 9). Used by `agent serve` and
 * `agent run`; it knows nothing about jobs or HTTP servers.
 *
 * @module
 */

import type { JobResult } from "../engine/events.ts";
import type { Logger } from "../util/agent_log.ts";
import { USER_AGENT } from "../util/version.ts";
import { delay, formatGoDuration } from "../util/delay.ts";
import { HTTP_TIMEOUT_MS, timedFetch } from "../util/timed_fetch.ts";
import { errorMessage } from "../util/errors.ts";

/** The body of the `finished` callback: `{"result": "<result>"}` (note the space). */
export function finishedCallbackBody(result: JobResult): string {
  return `{"result": "${result}"}`;
}

/** The body of the `teardown_finished` callback. */
export const TEARDOWN_CALLBACK_BODY = "{}";

/** Options of {@linkcode sendCallback}. */
export interface SendCallbackOptions {
  /** Task name used in the log lines, e.g. `Send finished callback`. @default "Send callback" */
  readonly task?: string;
  /** Bearer token; no `Authorization` header when empty. @default "" */
  readonly token?: string;
  /** Attempts in all; values below 1 count as 1. @default 1 */
  readonly attempts?: number;
  readonly logger: Logger;
  /** Stops retrying (and aborts a request in flight). @default never */
  readonly signal?: AbortSignal;
  /** Pause between attempts in milliseconds. @default 1000 */
  readonly retryDelayMs?: number;
  /** Timeout of one attempt in milliseconds (§2.3). @default 30000 */
  readonly timeoutMs?: number;
}

/** What became of a callback. */
export type CallbackOutcome =
  | { readonly state: "sent"; readonly attempts: number }
  | { readonly state: "skipped" }
  | { readonly state: "failed"; readonly attempts: number; readonly error: Error };

async function attempt(
  url: string,
  body: Uint8Array<ArrayBuffer>,
  token: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const headers = new Headers({ "User-Agent": USER_AGENT });
  if (token !== "") headers.set("Authorization", `Bearer ${token}`);
  // A Uint8Array body keeps fetch from adding `Content-Type: text/plain`, as the original.
  // Only the status matters: the answer's body is discarded unread, whatever its size.
  const { status } = await timedFetch(url, { method: "POST", headers, body }, {
    timeoutMs,
    signal,
    readBody: false,
  });
  if (status < 200 || status > 299) {
    throw new Error(`callback to ${url} got HTTP ${status}`);
  }
}

/**
 * Posts `body` to `url` until an attempt gets a 2xx answer, `attempts` are used up or `signal`
 * aborts. Each failed attempt but the last is logged as
 * `[<task>] attempt [k] failed with [<err>] - retrying in 1s`; giving up is logged as an error.
 * Never throws.
 */
export async function sendCallback(
  url: string,
  body: string,
  options: SendCallbackOptions,
): Promise<CallbackOutcome> {
  const {
    task = "Send callback",
    token = "",
    attempts = 1,
    logger,
    signal,
    retryDelayMs = 1000,
    timeoutMs = HTTP_TIMEOUT_MS,
  } = options;
  if (url === "") {
    logger.info(`[${task}] no URL given - skipping`);
    return { state: "skipped" };
  }
  const maxAttempts = Math.max(1, Math.floor(attempts));
  const bytes = new TextEncoder().encode(body);
  logger.info(`Sending callback: ${url} with ${body}`);
  let lastError: Error = new Error("callback was not attempted");
  for (let k = 1; k <= maxAttempts; k++) {
    if (signal?.aborted) {
      lastError = new Error(`aborted: ${errorMessage(signal.reason)}`);
      logger.error(`[${task}] aborted after [${k - 1}] attempts: ${lastError.message}`);
      return { state: "failed", attempts: k - 1, error: lastError };
    }
    try {
      await attempt(url, bytes, token, timeoutMs, signal);
      return { state: "sent", attempts: k };
    } catch (error) {
      lastError = error instanceof Error ? error : new Error(String(error));
    }
    if (k === maxAttempts) break;
    logger.error(
      `[${task}] attempt [${k}] failed with [${lastError.message}] - retrying in ${
        formatGoDuration(retryDelayMs)
      }`,
    );
    await delay(retryDelayMs, signal);
  }
  logger.error(
    `[${task}] failed after [${maxAttempts}] attempts - giving up: ${lastError.message}`,
  );
  return { state: "failed", attempts: maxAttempts, error: lastError };
}

/** Options of the two named callbacks: {@linkcode SendCallbackOptions} without `task`. */
export type NamedCallbackOptions = Omit<SendCallbackOptions, "task">;

/** Sends the `finished` callback, `{"result": "<result>"}`, as task `Send finished callback`. */
export function sendFinishedCallback(
  url: string,
  result: JobResult,
  options: NamedCallbackOptions,
): Promise<CallbackOutcome> {
  return sendCallback(url, finishedCallbackBody(result), {
    ...options,
    task: "Send finished callback",
  });
}

/** Sends the `teardown_finished` callback, `{}`, as task `Send teardown finished callback`. */
export function sendTeardownFinishedCallback(
  url: string,
  options: NamedCallbackOptions,
): Promise<CallbackOutcome> {
  return sendCallback(url, TEARDOWN_CALLBACK_BODY, {
    ...options,
    task: "Send teardown finished callback",
  });
}
