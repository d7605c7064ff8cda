/**
 * The one way the agent sends an HTTP request (DECISIONS.md 22): a total deadline that covers
 * the answer's body too (SEMAPHORE_COMPAT.md §2.3: 30 s), cancellable from outside, and a body
 * read that stops at a size cap instead of buffering whatever a server sends. The self-hosted
 * API client, the push logger and the callbacks use it; the Docker client reads its answers
 * through the same cap (`capped_read.ts`). It adds no headers of its own.
 *
 * @module
 */

import { after, formatGoDuration } from "./delay.ts";
import { readCappedBody } from "./capped_read.ts";

/** The 30 s total timeout of every outbound request (§2.3). */
export const HTTP_TIMEOUT_MS = 30_000;

/** The default cap on an answer body: 1 MiB (hub answers are a few hundred bytes). */
export const MAX_ANSWER_BYTES = 1024 * 1024;

/** Options of {@linkcode timedFetch}. */
export interface TimedFetchOptions {
  /** @default HTTP_TIMEOUT_MS */
  readonly timeoutMs?: number;
  /** Aborts the request (shutdown). */
  readonly signal?: AbortSignal;
  /** The largest body read; a larger one fails the request. @default MAX_ANSWER_BYTES */
  readonly maxBodyBytes?: number;
  /** Read the body (`false`: it is discarded unread and `body` is ""). @default true */
  readonly readBody?: boolean;
}

/** A whole HTTP answer. */
export interface TimedAnswer {
  readonly status: number;
  readonly body: string;
}

/**
 * Sends a request and reads the whole answer within the deadline.
 *
 * @throws {Error} `<METHOD> <url>: <reason>` on a network failure, timeout, abort or an answer
 * larger than the cap.
 */
export async function timedFetch(
  url: string,
  init: RequestInit,
  options: TimedFetchOptions = {},
): Promise<TimedAnswer> {
  const {
    timeoutMs = HTTP_TIMEOUT_MS,
    signal,
    maxBodyBytes = MAX_ANSWER_BYTES,
    readBody = true,
  } = options;
  const method = init.method ?? "GET";
  const controller = new AbortController();
  const timer = after(
    timeoutMs,
    () => controller.abort(new Error(`timeout after ${formatGoDuration(timeoutMs)}`)),
  );
  const onAbort = () => controller.abort(signal?.reason ?? new Error("aborted"));
  if (signal?.aborted) onAbort();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const res = await fetch(url, { ...init, signal: controller.signal });
    if (!readBody) {
      await res.body?.cancel();
      return { status: res.status, body: "" };
    }
    const bytes = await readCappedBody(res.body, maxBodyBytes);
    return { status: res.status, body: new TextDecoder().decode(bytes) };
  } catch (error) {
    const reason = controller.signal.aborted ? controller.signal.reason : error;
    let message = reason instanceof Error ? reason.message : String(reason);
    // Deno says "fetch failed" and keeps the useful part ("Connection refused") in the cause.
    const cause = reason instanceof Error ? reason.cause : undefined;
    if (cause instanceof Error && cause.message) message = `${message}: ${cause.message}`;
    throw new Error(`${method} ${url}: ${message}`, { cause: error });
  } finally {
    timer.cancel();
    signal?.removeEventListener("abort", onAbort);
  }
}
