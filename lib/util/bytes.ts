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
