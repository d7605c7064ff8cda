/**
 * Ships a job's local event log to the hub (SEMAPHORE_COMPAT.md §8.7): after a random delay,
 * `POST <url>?start_from=<N>` with the next ≤ 2000 JSONL lines from index N. 200 advances N;
 * 401 refreshes the log token and retries; 422 stops for good and marks the log trimmed; any
 * other failure retries the same N. Closing flushes what is left, for at most the flush timeout.
 * Since N only moves on a 200, no event is skipped or sent twice to a hub that answers.
 * It knows the log only as numbered lines; it knows nothing of jobs or the sync loop.
 *
 * @module
 */

import { type Logger, silentLogger } from "../util/agent_log.ts";
import { after, delay, formatGoDuration, randomBetween, type Timer } from "../util/delay.ts";
import { HTTP_TIMEOUT_MS, timedFetch } from "../util/timed_fetch.ts";
import { USER_AGENT } from "../util/version.ts";

/** The most lines one request may carry (and the default). */
export const MAX_LINES_PER_REQUEST = 2000;
/**
 * The most bytes one request may carry: 4 MiB. 2000 lines of a job that prints long lines
 * would otherwise make a batch of ~128 MB; a single longer line still goes alone.
 */
export const MAX_BYTES_PER_REQUEST = 4 * 1024 * 1024;
/** The longest flush timeout, in seconds. */
export const MAX_FLUSH_TIMEOUT_SECONDS = 900;

/** The numbered lines the push logger reads (an `EventLog` is one). */
export interface PushLogSource {
  /** How many lines exist now. */
  readonly lineCount: number;
  /**
   * Lines with index >= `start`, at most `max` lines and `maxBytes` bytes (but one line at
   * least), each ending in `\n`.
   */
  readLines(
    start: number,
    max: number,
    options?: { readonly maxBytes?: number },
  ): Promise<readonly string[]>;
  /** Bytes of all lines. */
  readonly byteSize?: number;
  /** Where line `index` starts, in bytes. */
  byteOffset?(index: number): number;
}

/** What waits to be pushed (the metrics' log backlog). */
export interface PushBacklog {
  readonly events: number;
  readonly bytes: number;
  /** Age of the oldest line not yet accepted by the hub, from its `timestamp`; 0 when none. */
  readonly oldestAgeSeconds: number;
}

/** Random pauses before each push, in milliseconds `[min, max)`. */
export interface PushDelays {
  /** While the job runs. @default [1500, 3000] */
  readonly runningMs?: readonly [number, number];
  /** Once flushing (after the job finished). @default [250, 500] */
  readonly flushingMs?: readonly [number, number];
}

/** Options of {@linkcode PushLogger}. */
export interface PushLoggerOptions {
  readonly source: PushLogSource;
  /** The job's `logger.url`. */
  readonly url: string;
  /** The job's `logger.token` (sent as `Authorization: Bearer <token>`). */
  readonly token: string;
  /** Gets a new log token after a 401 (`POST /refresh`). */
  readonly refreshToken: () => Promise<string>;
  /** @default silentLogger */
  readonly logger?: Logger;
  /** Lines per request, 1–2000. @default 2000 */
  readonly linesPerRequest?: number;
  /** Bytes per request (one line at least). @default MAX_BYTES_PER_REQUEST */
  readonly bytesPerRequest?: number;
  /** How long `close()` waits for the remaining lines, 1–900 s. @default 60 */
  readonly flushTimeoutSeconds?: number;
  /** @default the original's delays */
  readonly delays?: PushDelays;
  /** Per-request timeout. @default 30000 */
  readonly timeoutMs?: number;
  /** Told of every push's end: HTTP status (undefined when no answer came) and seconds. */
  readonly onResponse?: (status: number | undefined, seconds: number) => void;
}

/** What {@linkcode PushLogger.close} found. */
export interface PushLoggerCloseResult {
  /** The hub answered 422 (no more space): later lines were never sent (§6.7 "trimmed"). */
  readonly trimmed: boolean;
  /** Every line reached the hub (false after a 422 or when the flush timed out). */
  readonly complete: boolean;
  /** Lines the hub accepted. */
  readonly pushedLines: number;
}

/** The background loop that pushes one job's log to the hub. */
export class PushLogger {
  readonly #source: PushLogSource;
  readonly #url: string;
  readonly #refreshToken: () => Promise<string>;
  readonly #logger: Logger;
  readonly #linesPerRequest: number;
  readonly #bytesPerRequest: number;
  readonly #flushTimeoutMs: number;
  readonly #runningDelay: readonly [number, number];
  readonly #flushingDelay: readonly [number, number];
  readonly #timeoutMs: number;
  readonly #onResponse: PushLoggerOptions["onResponse"];
  #token: string;
  #next = 0;
  #trimmed = false;
  #flushing = false;
  #loop: Promise<void> | undefined;
  #closing: Promise<PushLoggerCloseResult> | undefined;
  /** Aborted to stop the loop (and its request) for good. */
  readonly #stop = new AbortController();
  /** Aborted to cut the current pause short when flushing starts. */
  #wake = new AbortController();
  #resolveDone!: () => void;
  readonly #whenDone = new Promise<void>((resolve) => this.#resolveDone = resolve);

  /**
   * Checks the options; call `start()` to begin pushing.
   *
   * @throws {RangeError} `... must be between 1 and 2000` or `... must be between 1 and 900`.
   */
  constructor(options: PushLoggerOptions) {
    const {
      source,
      url,
      token,
      refreshToken,
      logger = silentLogger,
      linesPerRequest = MAX_LINES_PER_REQUEST,
      bytesPerRequest = MAX_BYTES_PER_REQUEST,
      flushTimeoutSeconds = 60,
      delays = {},
      timeoutMs = HTTP_TIMEOUT_MS,
      onResponse,
    } = options;
    this.#onResponse = onResponse;
    if (
      !Number.isInteger(linesPerRequest) || linesPerRequest < 1 ||
      linesPerRequest > MAX_LINES_PER_REQUEST
    ) {
      throw new RangeError(
        `Cannot create push logger: linesPerRequest must be between 1 and ` +
          `${MAX_LINES_PER_REQUEST}, got ${linesPerRequest}`,
      );
    }
    if (
      !Number.isFinite(flushTimeoutSeconds) || flushTimeoutSeconds < 1 ||
      flushTimeoutSeconds > MAX_FLUSH_TIMEOUT_SECONDS
    ) {
      throw new RangeError(
        `Cannot create push logger: flushTimeoutSeconds must be between 1 and ` +
          `${MAX_FLUSH_TIMEOUT_SECONDS}, got ${flushTimeoutSeconds}`,
      );
    }
    this.#source = source;
    this.#url = url;
    this.#token = token;
    this.#refreshToken = refreshToken;
    this.#logger = logger;
    this.#linesPerRequest = linesPerRequest;
    this.#bytesPerRequest = bytesPerRequest;
    this.#flushTimeoutMs = flushTimeoutSeconds * 1000;
    this.#runningDelay = delays.runningMs ?? [1500, 3000];
    this.#flushingDelay = delays.flushingMs ?? [250, 500];
    this.#timeoutMs = timeoutMs;
  }

  /** Lines the hub has accepted so far. */
  get pushedLines(): number {
    return this.#next;
  }

  /** Whether the hub answered 422. */
  get trimmed(): boolean {
    return this.#trimmed;
  }

  /** Starts the push loop (once). */
  start(): void {
    this.#loop ??= this.#run();
  }

  /**
   * Pushes what is left with short pauses, waiting at most the flush timeout, then stops the
   * loop. Idempotent. Never throws.
   */
  close(): Promise<PushLoggerCloseResult> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** The lines not yet accepted by the hub: how many, their bytes, the oldest one's age. */
  async backlog(now: number = Date.now()): Promise<PushBacklog> {
    const source = this.#source;
    const next = this.#next;
    const events = Math.max(0, source.lineCount - next);
    if (events === 0) return { events, bytes: 0, oldestAgeSeconds: 0 };
    const bytes = source.byteOffset && source.byteSize !== undefined
      ? source.byteSize - source.byteOffset(next)
      : 0;
    let oldestAgeSeconds = 0;
    const [line] = await source.readLines(next, 1);
    try {
      const timestamp = (JSON.parse(line) as { timestamp?: unknown }).timestamp;
      if (typeof timestamp === "number") {
        oldestAgeSeconds = Math.max(0, now / 1000 - timestamp);
      }
    } catch {
      // not an event line: the age stays unknown (0)
    }
    return { events, bytes, oldestAgeSeconds };
  }

  async #close(): Promise<PushLoggerCloseResult> {
    this.start();
    this.#flushing = true;
    this.#wake.abort();
    let timer: Timer | undefined;
    const timedOut = await Promise.race([
      this.#whenDone.then(() => false),
      new Promise<boolean>((resolve) => timer = after(this.#flushTimeoutMs, () => resolve(true))),
    ]);
    timer?.cancel();
    if (timedOut) {
      // The original's line exactly; how far it got goes on a line of its own.
      this.#logger.error(`Could not push all logs to ${this.#url} - giving up`);
      this.#logger.info(
        `${this.#next} of ${this.#source.lineCount} log lines were pushed in ` +
          formatGoDuration(this.#flushTimeoutMs),
      );
    }
    this.#stop.abort();
    await this.#loop;
    return {
      trimmed: this.#trimmed,
      complete: !this.#trimmed && this.#next >= this.#source.lineCount,
      pushedLines: this.#next,
    };
  }

  async #run(): Promise<void> {
    try {
      while (!this.#stop.signal.aborted) {
        const range = this.#flushing ? this.#flushingDelay : this.#runningDelay;
        await delay(randomBetween(range), AbortSignal.any([this.#stop.signal, this.#wake.signal]));
        if (this.#wake.signal.aborted) this.#wake = new AbortController();
        if (this.#stop.signal.aborted) break;
        if (this.#source.lineCount <= this.#next) {
          if (this.#flushing) {
            this.#logger.info("No more logs to flush - stopping");
            break;
          }
          continue;
        }
        if (!await this.#pushBatch()) break;
      }
    } finally {
      this.#resolveDone();
    }
  }

  /** Sends one batch; resolves false when pushing must stop for good (422). */
  async #pushBatch(): Promise<boolean> {
    const start = this.#next;
    let lines: readonly string[];
    try {
      lines = await this.#source.readLines(start, this.#linesPerRequest, {
        maxBytes: this.#bytesPerRequest,
      });
    } catch (error) {
      this.#logger.error(`Error pushing logs: ${(error as Error).message}`);
      return true;
    }
    if (lines.length === 0) return true;
    const url = `${this.#url}${this.#url.includes("?") ? "&" : "?"}start_from=${start}`;
    let status: number;
    let body: string;
    const started = performance.now();
    try {
      ({ status, body } = await timedFetch(url, {
        method: "POST",
        headers: {
          "Content-Type": "text/plain",
          "Authorization": `Bearer ${this.#token}`,
          "User-Agent": USER_AGENT,
        },
        body: new TextEncoder().encode(lines.join("")),
      }, { timeoutMs: this.#timeoutMs, signal: this.#stop.signal }));
    } catch (error) {
      this.#onResponse?.(undefined, (performance.now() - started) / 1000);
      if (!this.#stop.signal.aborted) {
        this.#logger.error(`Error pushing logs: ${(error as Error).message}`);
      }
      return true;
    }
    this.#onResponse?.(status, (performance.now() - started) / 1000);
    if (status === 200) {
      this.#next = start + lines.length;
      return true;
    }
    if (status === 422) {
      this.#trimmed = true;
      this.#logger.info("no more space available for logs - stopping");
      return false;
    }
    if (status === 401) {
      this.#logger.info("Refreshing token for current job logs...");
      try {
        this.#token = await this.#refreshToken();
        this.#logger.info("Successfully refreshed token for current job logs.");
      } catch (error) {
        this.#logger.error(
          `Error refreshing token for current job logs: ${(error as Error).message}`,
        );
      }
      return true;
    }
    this.#logger.error(
      `Error pushing logs: request to ${url} got HTTP ${status}: ${body.slice(0, 200)}`,
    );
    return true;
  }
}
