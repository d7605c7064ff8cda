/**
 * The one way the agent sends an HTTP request (DECISIONS.md 22): a total deadline that covers
 * the answer's body too (SEMAPHORE_COMPAT.md §2.3: 30 s), cancellable from outside, and a body
 * read that stops at a size cap instead of buffering whatever a server sends. The self-hosted
 * API client, the push logger and the callbacks use it; the Docker client reads its answers
 * with {@linkcode readCappedBody}. It adds no headers of its own.
 *
 * @module
 */

import { formatGoDuration } from "./delay.ts";

/** The 30 s total timeout of every outbound request (§2.3). */
export const HTTP_TIMEOUT_MS = 30_000;

/** The default cap on an answer body: 1 MiB (hub answers are a few hundred bytes). */
export const MAX_ANSWER_BYTES = 1024 * 1024;

/** Thrown when an answer body is larger than its cap. */
export class BodyTooLargeError extends Error {
  /** The cap that was exceeded, in bytes. */
  readonly limit: number;

  constructor(limit: number) {
    super(`the answer is larger than ${limit} bytes`);
    this.name = "BodyTooLargeError";
    this.limit = limit;
  }
}

/**
 * Reads a whole body, at most `maxBytes` of it.
 *
 * @throws {BodyTooLargeError} as soon as more than `maxBytes` arrived (the stream is cancelled).
 */
export async function readCappedBody(
  body: ReadableStream<Uint8Array> | null,
  maxBytes: number,
): Promise<Uint8Array<ArrayBuffer>> {
  if (body === null) return new Uint8Array(0);
  const reader = body.getReader();
  // One buffer that doubles as needed: at most twice the body in memory, never more.
  let buffer = new Uint8Array(Math.min(64 * 1024, maxBytes));
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (size + value.byteLength > maxBytes) throw new BodyTooLargeError(maxBytes);
      if (size + value.byteLength > buffer.length) {
        const grown = new Uint8Array(
          Math.min(maxBytes, Math.max(buffer.length * 2, size + value.byteLength)),
        );
        grown.set(buffer.subarray(0, size));
        buffer = grown;
      }
      buffer.set(value, size);
      size += value.byteLength;
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw error;
  } finally {
    reader.releaseLock();
  }
  return buffer.subarray(0, size);
}

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
  const timer = setTimeout(
    () => controller.abort(new Error(`timeout after ${formatGoDuration(timeoutMs)}`)),
    timeoutMs,
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
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}
