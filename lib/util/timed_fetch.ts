/**
 * One outbound HTTP request with the agent's 30 s total deadline (SEMAPHORE_COMPAT.md §2.3),
 * covering the answer's body too, and cancellable from outside. Used by the self-hosted API
 * client and the push logger; it adds no headers of its own.
 *
 * @module
 */

import { formatGoDuration } from "./delay.ts";

/** The 30 s total timeout of every outbound request (§2.3). */
export const HTTP_TIMEOUT_MS = 30_000;

/** Options of {@linkcode timedFetch}. */
export interface TimedFetchOptions {
  /** @default HTTP_TIMEOUT_MS */
  readonly timeoutMs?: number;
  /** Aborts the request (shutdown). */
  readonly signal?: AbortSignal;
}

/** A whole HTTP answer. */
export interface TimedAnswer {
  readonly status: number;
  readonly body: string;
}

/**
 * Sends a request and reads the whole answer within the deadline.
 *
 * @throws {Error} `<METHOD> <url>: <reason>` on a network failure, timeout or abort.
 */
export async function timedFetch(
  url: string,
  init: RequestInit,
  options: TimedFetchOptions = {},
): Promise<TimedAnswer> {
  const { timeoutMs = HTTP_TIMEOUT_MS, signal } = options;
  const method = init.method ?? "GET";
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new Error(`timeout after ${formatGoDuration(timeoutMs)}`)),
    timeoutMs,
  );
  const onAbort = () => controller.abort(signal?.reason ?? new Error("aborted"));
  if (signal?.aborted) onAbort();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const res = await fetch(url, { ...init, signal: controller.signal });
    return { status: res.status, body: await res.text() };
  } catch (error) {
    const reason = controller.signal.aborted ? controller.signal.reason : error;
    let message = reason instanceof Error ? reason.message : String(reason);
    // Deno says "fetch failed" and keeps the useful part ("Connection refused") in the cause.
    const cause = reason instanceof Error ? reason.cause : undefined;
    if (cause instanceof Error && cause.message) message = `${message}: ${cause.message}`;
    throw new Error(`${method} ${url}: ${message}`, { cause: error });
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}
