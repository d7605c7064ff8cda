/**
 * Reading a whole body or file through a size cap, so that an endless or huge answer (a hostile
 * hub, a wedged daemon, `agent run /dev/zero`) fails instead of filling the memory
 * (DECISIONS.md 22).
 *
 * @module
 */

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

/**
 * Reads a whole file, at most `maxBytes` of it: a regular file larger than that fails before
 * any read, a device or pipe that goes on (`/dev/zero`) once past it. Synchronous, with
 * `readSync()`: it reads a job file once, before anything else runs, and each of the four
 * asynchronous calls it would take is a thread-pool round trip (~0.3 ms here); and not through
 * a stream, which Deno sets up on first use (~5 ms). `agent run` spends both before it starts
 * the job's shell.
 *
 * @throws {BodyTooLargeError} the file is larger than `maxBytes`; {Deno.errors.NotFound}, ...
 */
export function readFileCapped(path: string, maxBytes: number): Uint8Array<ArrayBuffer> {
  using file = Deno.openSync(path, { read: true });
  const info = file.statSync();
  if (info.isFile && info.size > maxBytes) throw new BodyTooLargeError(maxBytes);
  // One byte more than the cap: filling it means the file goes on past the cap.
  const room = maxBytes + 1;
  let buffer = new Uint8Array(Math.min(room, info.isFile ? info.size + 1 : 64 * 1024));
  let size = 0;
  for (;;) {
    if (size === buffer.length) {
      if (size === room) throw new BodyTooLargeError(maxBytes);
      const grown = new Uint8Array(Math.min(room, buffer.length * 2));
      grown.set(buffer);
      buffer = grown;
    }
    const read = file.readSync(buffer.subarray(size));
    if (read === null) break;
    size += read;
  }
  return buffer.subarray(0, size);
}
