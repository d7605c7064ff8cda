/**
 * Cuts a command's raw terminal output into `cmd_output` texts (SEMAPHORE_COMPAT.md §6.3 with
 * DECISIONS.md 17): no UTF-8 sequence and no CRLF is split, `\r\n` becomes `\n`, no byte waits
 * more than about 100 ms (output that trickles, a byte every 50 ms, still shows as it comes),
 * and `close()` flushes every byte.
 *
 * Unlike the original's fixed 100-byte chunks, whatever has arrived is emitted as soon as at
 * least 100 bytes are waiting, so sustained output costs one event per terminal read instead
 * of one per 100 bytes.
 *
 * Bytes that wait when more arrive are decoded on their own when they end at a character
 * boundary and not in a CR, instead of being copied in front of the new bytes: the text is the
 * same, and a large read that follows a few waiting bytes is not copied.
 *
 * @module
 */

import { decodeUtf8PerByte } from "./events.ts";
import { concatBytes } from "../util/bytes.ts";
import { after, type Timer } from "../util/delay.ts";

/** Options of {@linkcode OutputBuffer}. */
export interface OutputBufferOptions {
  /** Receives each chunk, already decoded and with `\r\n` turned into `\n`. */
  readonly onOutput: (text: string) => void;
  /** Emit as soon as this many bytes wait. @default 100 */
  readonly minChunk?: number;
  /** Flush what waits once its oldest byte is this old. @default 100 */
  readonly maxAgeMs?: number;
}

const EMPTY = new Uint8Array(0);
const CR = 0x0d;

/** How many bytes at the end of `bytes` form an incomplete UTF-8 sequence (0 when none). */
function incompleteTail(bytes: Uint8Array): number {
  const n = bytes.length;
  for (let back = 1; back <= 3 && back <= n; back++) {
    const b = bytes[n - back];
    if ((b & 0xc0) === 0x80) continue; // continuation byte: keep looking for the lead
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

/** Buffers one command's output; owns one idle timer, which `close()` clears. */
export class OutputBuffer {
  readonly #onOutput: (text: string) => void;
  readonly #minChunk: number;
  readonly #maxAgeMs: number;
  #pending: Uint8Array = EMPTY;
  /** When the oldest waiting byte (of `#prefix` or `#pending`) arrived. */
  #pendingSince = 0;
  /** Text of bytes that came before `#pending` and wait with it, and their number. */
  #prefix = "";
  #prefixBytes = 0;
  #timer: Timer | undefined;
  #closed = false;

  constructor(options: OutputBufferOptions) {
    const { onOutput, minChunk = 100, maxAgeMs = 100 } = options;
    this.#onOutput = onOutput;
    this.#minChunk = minChunk;
    this.#maxAgeMs = maxAgeMs;
  }

  /**
   * Adds raw output bytes. Ignored after `close()`. Keeps no reference to `bytes` (what waits
   * is copied), so the caller may reuse its buffer.
   */
  append(bytes: Uint8Array): void {
    if (this.#closed || bytes.length === 0) return;
    const pending = this.#pending;
    if (pending.length === 0) {
      if (this.#prefixBytes === 0) this.#pendingSince = performance.now();
      this.#pending = bytes;
    } else if (incompleteTail(pending) === 0 && pending[pending.length - 1] !== CR) {
      this.#prefix += decodeUtf8PerByte(pending);
      this.#prefixBytes += pending.length;
      this.#pending = bytes;
    } else {
      this.#pending = concatBytes(pending, bytes);
    }
    if (this.#pending.length + this.#prefixBytes >= this.#minChunk) this.#emit("complete");
    if (this.#pending === bytes) this.#pending = bytes.slice();
    if (this.#pending.length + this.#prefixBytes > 0) this.#armTimer();
  }

  /** Emits everything that waits now, keeping nothing back. */
  flush(): void {
    this.#emit("all");
  }

  /** Flushes every byte and stops the timer; later appends are ignored. */
  close(): void {
    if (this.#closed) return;
    this.#emit("all");
    this.#closed = true;
    this.#clearTimer();
  }

  /**
   * Emits what waits. `all`: every byte. `complete`: keeps back a split UTF-8 sequence and a
   * final CR (its `\n` may be in the next read). `aged`: keeps back only a split UTF-8
   * sequence, which waits for its last bytes or for `close()`.
   */
  #emit(mode: "all" | "complete" | "aged"): void {
    const bytes = this.#pending;
    if (bytes.length === 0 && this.#prefixBytes === 0) return;
    let cut = bytes.length;
    if (mode !== "all") cut -= incompleteTail(bytes);
    if (mode === "complete" && cut > 0 && bytes[cut - 1] === CR) cut--;
    if (cut === 0 && this.#prefixBytes === 0) return;
    this.#pending = cut === bytes.length ? EMPTY : bytes.slice(cut);
    this.#pendingSince = performance.now(); // what stays back starts waiting now
    let text = cut === 0
      ? ""
      : decodeUtf8PerByte(cut === bytes.length ? bytes : bytes.subarray(0, cut));
    if (this.#prefixBytes > 0) {
      text = this.#prefix + text;
      this.#prefix = "";
      this.#prefixBytes = 0;
    }
    this.#onOutput(text.includes("\r\n") ? text.replaceAll("\r\n", "\n") : text);
  }

  #armTimer(): void {
    if (this.#timer !== undefined) return;
    const wait = this.#pendingSince + this.#maxAgeMs - performance.now();
    this.#timer = after(wait, () => this.#onTimer());
  }

  #onTimer(): void {
    this.#timer = undefined;
    if (this.#closed || this.#pending.length + this.#prefixBytes === 0) return;
    if (performance.now() - this.#pendingSince < this.#maxAgeMs) return this.#armTimer();
    // A split UTF-8 sequence stays until its last bytes come (or `close()`): not re-armed.
    this.#emit("aged");
  }

  #clearTimer(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }
}
