/**
 * The on-disk JSONL job log (SEMAPHORE_COMPAT.md §6.4): `<tmpdir>/job_log_<unix-ns>.json`, one
 * {@linkcode encodeEvent} line per event. The pull server streams it from a line index (§6.5)
 * and the push logger reads batches from it (§8.7), both while the job keeps writing.
 *
 * `write()` is synchronous: it encodes the line into an in-memory batch and records the line's
 * byte offset, so line lookups are O(1); one write loop drains the batches to disk in order,
 * started on the next microtask, so a burst of events becomes a single large write. Readers
 * call `flush()` (done for them by `readLines()` and `stream()`) and then read the file.
 * This module knows nothing about HTTP, jobs or executors.
 *
 * Back-pressure: when more than `maxPendingBytes` wait for a slow disk, `ready()` returns a
 * promise that settles once they are down to the bound again. The engine awaits it before it
 * reads more of a command's output ({@linkcode EventSink.ready}), so the job's output slows down
 * instead of the batches growing: memory stays bounded whatever the job prints.
 *
 * @module
 */

import { encodeEvent, type EventSink, type JobEvent } from "./events.ts";
import { osTempDir } from "../util/temp_dir.ts";

/** Options of {@linkcode EventLog.create}. */
export interface EventLogOptions {
  /** Directory of the log file. @default the OS temp dir (`$TMPDIR`, else `/tmp`) */
  readonly dir?: string;
  /**
   * Receives the first disk error, the first `write()` after `close()`, and any error thrown by
   * a `subscribe()` listener; `write()` itself never throws. @default errors are only kept in
   * {@linkcode EventLog.error}
   */
  readonly onError?: (error: Error) => void;
  /**
   * Bytes that may wait for the disk before `ready()` asks the output path to wait.
   * @default 1 MiB
   */
  readonly maxPendingBytes?: number;
  /**
   * Creates the new file at `path`, failing with `Deno.errors.AlreadyExists` when it exists.
   * @default `Deno.open` with `createNew` and mode 0600
   */
  readonly open?: (path: string) => Promise<EventLogFile>;
}

/** What the log writes through: the `Deno.FsFile` of its file. */
export interface EventLogFile {
  /** Writes some of `bytes` (at least one) and resolves with how many. */
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
}

/** The default of {@linkcode EventLogOptions.maxPendingBytes}. */
export const MAX_PENDING_BYTES = 1024 * 1024;

/** Options of {@linkcode EventLog.readLines}. */
export interface ReadLinesOptions {
  /** The most bytes to read; the first line is read whatever its size. @default Infinity */
  readonly maxBytes?: number;
}

/** Size of the in-memory batch buffers and of the chunks `stream()` reads. */
const CHUNK_SIZE = 256 * 1024;

const encoder = new TextEncoder();

function unixNanoseconds(): bigint {
  // Microsecond precision fits a double; the name only needs to be unique and increasing.
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}

function toError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function checkIndex(name: string, value: number): void {
  if (!(Number.isInteger(value) && value >= 0) && value !== Infinity) {
    throw new RangeError(
      `Cannot read job log: ${name} must be a non-negative integer, got ${value}`,
    );
  }
}

async function writeAll(file: EventLogFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

function openNew(path: string): Promise<EventLogFile> {
  // 0600 from the start (DECISIONS.md 20); createNew: never a file someone else placed.
  return Deno.open(path, { write: true, createNew: true, mode: 0o600 });
}

interface FlushWaiter {
  readonly target: number;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/**
 * The job's JSONL event log file. Create it with {@linkcode EventLog.create}; release it with
 * `close()` (keeps the file) or `remove()` (deletes it).
 */
export class EventLog implements EventSink, AsyncDisposable {
  /** Absolute or dir-relative path of the log file. */
  readonly path: string;
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #maxPending: number;
  #file: EventLogFile | undefined;

  /** Byte offset of each line's start; entries [0, #count) are used. */
  #starts = new Float64Array(1024);
  #count = 0;
  #byteSize = 0;

  /** Encoded lines not yet handed to the write loop: sealed buffers, then #buf[#bufFrom, #bufUsed). */
  #sealed: Uint8Array[] = [];
  #buf = new Uint8Array(CHUNK_SIZE);
  #bufFrom = 0;
  #bufUsed = 0;

  /** Bytes already written to the file. */
  #diskBytes = 0;
  #drain: Promise<void> | undefined;
  #waiters: FlushWaiter[] = [];
  #error: Error | undefined;

  #listeners = new Set<(event: JobEvent) => void>();
  #closed = false;
  #reportedWriteAfterClose = false;
  #closing: Promise<void> | undefined;
  #removing: Promise<void> | undefined;

  // `private` (not #): a constructor cannot be #private; use EventLog.create().
  private constructor(path: string, file: EventLogFile, options: EventLogOptions) {
    this.path = path;
    this.#file = file;
    this.#onError = options.onError;
    this.#maxPending = options.maxPendingBytes ?? MAX_PENDING_BYTES;
  }

  /**
   * Creates the empty file `<dir>/job_log_<unix-nanoseconds>.json` (the next free number if
   * that name exists), readable by the agent's user alone (0600), and returns the log writing
   * to it.
   *
   * @throws {Deno.errors.NotFound} and other file-system errors, if the file cannot be created
   */
  static async create(options: EventLogOptions = {}): Promise<EventLog> {
    const { dir = osTempDir(), open = openNew } = options;
    let ns = unixNanoseconds();
    for (;;) {
      const path = `${dir}/job_log_${ns}.json`;
      try {
        const file = await open(path);
        return new EventLog(path, file, options);
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
        ns += 1n;
      }
    }
  }

  /** The first disk error; once set, later events are dropped and reads reject with it. */
  get error(): Error | undefined {
    return this.#error;
  }

  /** Number of events accepted by `write()`. */
  get lineCount(): number {
    return this.#count;
  }

  /** Bytes of all accepted lines (the file's size once flushed). */
  get byteSize(): number {
    return this.#byteSize;
  }

  /** Where line `index` starts in the file (the byte size for an index past the end). */
  byteOffset(index: number): number {
    return this.#offset(index);
  }

  /** Bytes accepted but not on disk yet. */
  get pendingBytes(): number {
    return this.#error ? 0 : this.#byteSize - this.#diskBytes;
  }

  /**
   * Back-pressure ({@linkcode EventSink.ready}): `undefined` while at most `maxPendingBytes`
   * wait for the disk, else a promise that resolves once that many or fewer do (or the log
   * failed). Never rejects.
   */
  ready(): Promise<void> | undefined {
    if (this.pendingBytes <= this.#maxPending) return undefined;
    const target = this.#byteSize - this.#maxPending;
    return new Promise((resolve) =>
      this.#waiters.push({ target, resolve, reject: () => resolve() })
    );
  }

  /**
   * Appends one event: calls the live listeners, then queues its line for the disk. Never
   * throws; ignored after `close()` or after a disk error (listeners still hear of it then).
   */
  write(event: JobEvent): void {
    if (this.#closed) {
      if (!this.#reportedWriteAfterClose) {
        this.#reportedWriteAfterClose = true;
        this.#report(
          new Error(`Cannot write event to job log "${this.path}": the log is closed`),
        );
      }
      return;
    }
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#report(toError(error));
      }
    }
    if (this.#error) return;
    this.#append(encodeEvent(event));
  }

  /**
   * Registers a listener called synchronously by each accepted `write()`, in order.
   *
   * @returns a function that unsubscribes the listener
   */
  subscribe(listener: (event: JobEvent) => void): () => void {
    const wrapped = (event: JobEvent) => listener(event);
    this.#listeners.add(wrapped);
    return () => this.#listeners.delete(wrapped);
  }

  /**
   * Resolves once every line accepted so far is in the file.
   *
   * @throws {Error} the recorded disk error, if writing failed
   */
  flush(): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    const target = this.#byteSize;
    if (this.#diskBytes >= target) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ target, resolve, reject }));
  }

  /**
   * Reads the lines with index >= `start` (at most `max`, and no more than `maxBytes` bytes in
   * all but always at least one line), each ending in `\n`, after flushing.
   *
   * @throws {RangeError} if `start` or `max` is not a non-negative integer
   * @throws {Error} "Cannot read job log ..." if the file is gone or writing failed
   */
  async readLines(
    start: number,
    max: number = Infinity,
    options: ReadLinesOptions = {},
  ): Promise<string[]> {
    const { maxBytes = Infinity } = options;
    checkIndex("start", start);
    checkIndex("max", max);
    let end = Math.min(this.#count, start + max);
    const from = this.#offset(start);
    if (end > start + 1 && this.#offset(end) - from > maxBytes) {
      // The last end that keeps the bytes within maxBytes, one line at least.
      let low = start + 1;
      let high = end - 1;
      while (low < high) {
        const mid = Math.ceil((low + high) / 2);
        if (this.#offset(mid) - from <= maxBytes) low = mid;
        else high = mid - 1;
      }
      end = low;
    }
    const to = this.#offset(end);
    await this.#flushForRead();
    let file: Deno.FsFile | undefined;
    const bytes = new Uint8Array(to - from);
    try {
      file = await Deno.open(this.path, { read: true });
      if (from > 0) await file.seek(from, Deno.SeekMode.Start);
      let done = 0;
      while (done < bytes.length) {
        const n = await file.read(bytes.subarray(done));
        if (n === null) throw new Error(`the file ends at byte ${from + done}, expected ${to}`);
        done += n;
      }
    } catch (error) {
      throw this.#readError(error);
    } finally {
      file?.close();
    }
    if (bytes.length === 0) return [];
    const lines = new TextDecoder().decode(bytes).split("\n");
    lines.pop(); // the empty string after the last "\n"
    return lines.map((line) => line + "\n");
  }

  /**
   * For a log no event will be written to any more: the bytes of the lines with index >=
   * `start` as the file's own stream, which Deno sends without copying through JavaScript
   * buffers (memory stays flat while a 100 MB log streams), and their exact length.
   *
   * @throws {Error} `Cannot read job log "<path>": ...` when the file is gone.
   */
  async streamFile(start: number): Promise<{ body: ReadableStream<Uint8Array>; length: number }> {
    checkIndex("start", start);
    const from = this.#offset(start);
    const to = this.#byteSize;
    await this.#flushForRead();
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.path, { read: true });
    } catch (error) {
      throw this.#readError(error);
    }
    try {
      if (from > 0) await file.seek(from, Deno.SeekMode.Start);
    } catch (error) {
      file.close();
      throw this.#readError(error);
    }
    return { body: file.readable, length: to - from };
  }

  /**
   * Streams the bytes of the lines with index >= `start` that exist now. The first read flushes,
   * then the file is read in 256 KiB chunks on demand, so memory stays constant for any size.
   * The stream errors ("Cannot read job log ...") if the file is gone; cancel it if unread.
   *
   * @throws {RangeError} if `start` is not a non-negative integer
   */
  stream(start: number): ReadableStream<Uint8Array> {
    checkIndex("start", start);
    const from = this.#offset(start);
    const to = this.#byteSize;
    let file: Deno.FsFile | undefined;
    let opened = false;
    let position = from;
    const release = () => {
      const open = file;
      file = undefined;
      open?.close();
    };
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          if (!opened) {
            opened = true;
            await this.#flushForRead();
            file = await Deno.open(this.path, { read: true });
            if (from > 0) await file.seek(from, Deno.SeekMode.Start);
          }
          if (!file || position >= to) {
            release();
            controller.close();
            return;
          }
          const chunk = new Uint8Array(Math.min(CHUNK_SIZE, to - position));
          const n = await file.read(chunk);
          if (n === null) throw new Error(`the file ends at byte ${position}, expected ${to}`);
          position += n;
          controller.enqueue(n === chunk.length ? chunk : chunk.subarray(0, n));
          if (position >= to) {
            release();
            controller.close();
          }
        } catch (error) {
          release();
          controller.error(this.#readError(error));
        }
      },
      cancel: () => {
        opened = true;
        release();
      },
    }, { highWaterMark: 0 });
  }

  /**
   * Flushes and closes the file handle; later writes are ignored. Idempotent. A disk error is
   * not thrown here (see {@linkcode EventLog.error}).
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /**
   * Closes the log and deletes its file (already missing is fine). Idempotent.
   *
   * @throws {Error} "Cannot remove job log ..." if the file cannot be deleted
   */
  remove(): Promise<void> {
    this.#removing ??= this.#remove();
    return this.#removing;
  }

  /** Same as `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    try {
      await this.flush();
    } catch {
      // Already recorded in #error and reported through onError.
    }
    await this.#drain;
    const file = this.#file;
    this.#file = undefined;
    try {
      file?.close();
    } catch (error) {
      this.#fail(error);
    }
  }

  async #remove(): Promise<void> {
    await this.close();
    try {
      await Deno.remove(this.path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw new Error(`Cannot remove job log "${this.path}": ${toError(error).message}`, {
        cause: error,
      });
    }
  }

  #offset(index: number): number {
    return index < this.#count ? this.#starts[index] : this.#byteSize;
  }

  async #flushForRead(): Promise<void> {
    try {
      await this.flush();
    } catch (error) {
      throw this.#readError(error);
    }
  }

  #readError(error: unknown): Error {
    const message = toError(error).message;
    if (message.startsWith("Cannot read job log")) return toError(error);
    return new Error(`Cannot read job log "${this.path}": ${message}`, { cause: error });
  }

  #report(error: Error): void {
    try {
      this.#onError?.(error);
    } catch {
      // The error callback must not break write(); nothing else can be told.
    }
  }

  #append(line: string): void {
    if (this.#count === this.#starts.length) {
      const grown = new Float64Array(this.#starts.length * 2);
      grown.set(this.#starts);
      this.#starts = grown;
    }
    this.#starts[this.#count++] = this.#byteSize;
    // A UTF-16 code unit takes at most 3 UTF-8 bytes, so this much room always suffices.
    const room = line.length * 3;
    if (this.#buf.length - this.#bufUsed < room) {
      this.#seal();
      this.#buf = new Uint8Array(Math.max(CHUNK_SIZE, room));
      this.#bufFrom = 0;
      this.#bufUsed = 0;
    }
    const { written } = encoder.encodeInto(line, this.#buf.subarray(this.#bufUsed));
    this.#bufUsed += written;
    this.#byteSize += written;
    this.#drain ??= Promise.resolve().then(() => this.#drainLoop());
  }

  /** Moves the unhanded part of the current buffer to the sealed list. */
  #seal(): void {
    if (this.#bufUsed > this.#bufFrom) {
      this.#sealed.push(this.#buf.subarray(this.#bufFrom, this.#bufUsed));
    }
    this.#bufFrom = this.#bufUsed;
  }

  async #drainLoop(): Promise<void> {
    try {
      for (;;) {
        this.#seal();
        const chunks = this.#sealed;
        if (chunks.length === 0 || !this.#file) break;
        this.#sealed = [];
        for (const chunk of chunks) {
          await writeAll(this.#file, chunk);
          this.#diskBytes += chunk.length;
          this.#settleWaiters();
        }
      }
    } catch (error) {
      this.#fail(error);
    } finally {
      this.#drain = undefined;
    }
  }

  #settleWaiters(): void {
    if (this.#waiters.length === 0) return;
    const disk = this.#diskBytes;
    const waiting = this.#waiters.filter((waiter) => waiter.target > disk);
    const settled = this.#waiters.filter((waiter) => waiter.target <= disk);
    this.#waiters = waiting;
    for (const waiter of settled) waiter.resolve();
  }

  #fail(cause: unknown): void {
    if (this.#error) return;
    const error = new Error(
      `Cannot write job log "${this.path}": ${toError(cause).message}`,
      { cause },
    );
    this.#error = error;
    this.#sealed = [];
    this.#bufFrom = this.#bufUsed;
    for (const waiter of this.#waiters) waiter.reject(error);
    this.#waiters = [];
    this.#report(error);
  }
}
