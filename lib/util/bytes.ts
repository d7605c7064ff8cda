/**
 * Byte-array helpers shared by the output paths (terminal reads, command output).
 *
 * @module
 */

/**
 * `a` followed by `b` in a new array; `b` itself when `a` is empty.
 *
 * @example
 * ```ts
 * import { concatBytes } from "./bytes.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(concatBytes(new Uint8Array([1]), new Uint8Array([2, 3])), new Uint8Array([1, 2, 3]));
 * ```
 */
export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * The parts one after another in a new array; the part itself when there is only one.
 *
 * @example
 * ```ts
 * import { concatAll } from "./bytes.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(concatAll([new Uint8Array([1]), new Uint8Array([2, 3])]), new Uint8Array([1, 2, 3]));
 * ```
 */
export function concatAll(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
