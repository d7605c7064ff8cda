/**
 * Base64 as the job request carries it (SEMAPHORE_COMPAT.md §4): decoding with the exact rules
 * and error offsets of Go's `base64.StdEncoding` (pkg/api/job_request.go), and encoding text
 * the way the hub does (UTF-8, standard alphabet, padded). It knows nothing of job requests.
 *
 * @example Round trip
 * ```ts
 * import { decodeBase64Text, encodeBase64 } from "./base64.ts";
 * console.assert(encodeBase64("héllo") === "aMOpbGxv");
 * console.assert(decodeBase64Text("aMOpbGxv") === "héllo");
 * ```
 *
 * @module
 */

const BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_VALUES = new Int8Array(128).fill(-1);
for (let i = 0; i < BASE64_ALPHABET.length; i++) BASE64_VALUES[BASE64_ALPHABET.charCodeAt(i)] = i;
const PAD = 0x3d; // "="

/**
 * Decodes standard base64 as Go's `base64.StdEncoding` does (a port of its `decodeQuantum`):
 * padding required, nothing after it, no other alphabet, `\r` and `\n` skipped anywhere,
 * non-zero trailing bits accepted.
 *
 * @throws {SyntaxError} `illegal base64 data at input byte N`, N as Go counts it.
 */
export function decodeBase64(value: string): Uint8Array {
  const length = value.length;
  const out = new Uint8Array(Math.floor(length / 4) * 3);
  const fail = (index: number): never => {
    throw new SyntaxError(`illegal base64 data at input byte ${index}`);
  };
  const skipNewlines = (index: number): number => {
    while (index < length && isNewline(value.charCodeAt(index))) index++;
    return index;
  };
  let si = 0, o = 0;
  for (;;) {
    let bits = 0, j = 0, count = 4;
    for (; j < 4; j++) {
      if (si === length) {
        if (j === 0) return out.subarray(0, o);
        return fail(si - j);
      }
      const code = value.charCodeAt(si++);
      const sextet = code < 128 ? BASE64_VALUES[code] : -1;
      if (sextet >= 0) {
        bits |= sextet << (18 - 6 * j);
        continue;
      }
      if (isNewline(code)) {
        j--;
        continue;
      }
      if (code !== PAD || j < 2) return fail(si - 1);
      if (j === 2) {
        // "==" is expected; the first "=" is consumed.
        si = skipNewlines(si);
        if (si === length) return fail(length);
        if (value.charCodeAt(si) !== PAD) return fail(si - 1);
        si++;
      }
      si = skipNewlines(si);
      if (si < length) return fail(si);
      count = j;
      break;
    }
    out[o++] = bits >>> 16;
    if (count >= 3) out[o++] = (bits >>> 8) & 0xff;
    if (count === 4) out[o++] = bits & 0xff;
    if (count < 4) return out.subarray(0, o);
  }
}

function isNewline(code: number): boolean {
  return code === 0x0a || code === 0x0d;
}

const lossyUtf8 = new TextDecoder();

/**
 * Decodes base64 ({@linkcode decodeBase64}) into text; bytes that are not UTF-8 become U+FFFD,
 * as Go's `string(bytes)` shows them once printed.
 *
 * @throws {SyntaxError} `illegal base64 data at input byte N`.
 */
export function decodeBase64Text(value: string): string {
  return lossyUtf8.decode(decodeBase64(value));
}

/** How many bytes go to one `String.fromCharCode` call (its argument count is limited). */
const CHUNK = 0x8000;

/** Encodes text as UTF-8 in standard, padded base64 (what the hub sends in env var values). */
export function encodeBase64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (let i = 0; i < bytes.length; i += CHUNK) {
    binary += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return btoa(binary);
}
