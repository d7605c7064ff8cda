/**
 * Secret redaction (DECISIONS.md 24): every log of a job shows `[REDACTED]` where a secret
 * value, or one of the forms tools print it in, would be.
 *
 * - Which values: the job's environment variables (and its containers' and image pull
 *   credentials', and the agent's own `env-vars`) whose names match a pattern of
 *   `DEFAULT_REDACTED_VARS` (redaction_patterns.ts) or of `--redacted-vars`, plus values a job declares by
 *   printing a line `::add-mask::VALUE`. A value shorter than {@linkcode MIN_SECRET_BYTES} bytes
 *   is not redacted; a multi-line value is redacted line by line.
 * - Which forms: raw, base64 at each of the three alignments (standard and URL alphabets; also
 *   across the line breaks of base64 wrapped at 64 or 76 columns), URL-encoded (the usual
 *   escapers' variants) and JSON-string-escaped (the usual encoders').
 * - How: a Wu–Manber search over all forms at once, which skips most bytes of output that holds
 *   no form, so the cost per byte hardly grows with the number of secrets, and a table of the
 *   forms' prefixes for the end of each read. A {@linkcode RedactionStream} holds back
 *   only the bytes that may still be the start of a form, until the next bytes settle it or the
 *   stream ends; all other bytes pass on at once, unchanged.
 *
 * No form contains a newline (lines are split off, base64/URL/JSON escape it), so nothing is
 * held across a line end, except after a line exactly as wide as wrapped base64 whose end may
 * be the start of a base64 form, until the next line shows whether it goes on there.
 *
 * @module
 */

import type { EventSink, JobEvent } from "./events.ts";
import { decodeUtf8PerByte } from "./events.ts";
import type { Logger } from "../util/agent_log.ts";
import type { EnvVar, JobRequest } from "./job_request_types.ts";
import type { HostEnvVar } from "./executor.ts";
import { decodeBase64 } from "../util/base64.ts";
import { concatAll, concatBytes } from "../util/bytes.ts";
import { nameMatcher } from "./redaction_patterns.ts";

/** What replaces every match. */
export const REDACTED = "[REDACTED]";

/** Values (and lines of multi-line values) shorter than this are not redacted. */
export const MIN_SECRET_BYTES = 6;

/** How many values a job may add with `::add-mask::`; later ones are not redacted. */
export const MAX_ADDED_VALUES = 1000;

/** The line prefix by which a job declares a value to redact; the line is not logged. */
export const ADD_MASK_PREFIX = "::add-mask::";

// ---------------------------------------------------------------------------------------------
// The forms of a value

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

function base64Chars(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += BASE64[n >> 18] + BASE64[(n >> 12) & 63] + BASE64[(n >> 6) & 63] + BASE64[n & 63];
  }
  return out;
}

/**
 * The base64 characters that depend on `line` alone when it starts `align` bytes (0, 1, 2)
 * after a 3-byte boundary of the encoded data: what any base64 text holding it contains.
 */
function base64Form(line: Uint8Array, align: number): string {
  const padded = new Uint8Array(align + line.length + 2);
  padded.set(line, align);
  const all = base64Chars(padded);
  return all.slice(Math.ceil((8 * align) / 6), Math.floor((8 * (align + line.length)) / 6));
}

const RFC3986 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~";
/** Bytes each escaper leaves as they are: RFC 3986 (curl, Go, Python), JS, Python's `quote`. */
const URL_SAFE_SETS = [RFC3986, `${RFC3986}!*'()`, `${RFC3986}/`, RFC3986.replace("~", "*")];

function urlForms(line: Uint8Array): string[] {
  const forms: string[] = [];
  for (const safe of URL_SAFE_SETS) {
    for (const plus of [false, true]) {
      for (const lower of [false, true]) {
        let out = "";
        for (const b of line) {
          const c = String.fromCharCode(b);
          if (b < 0x80 && safe.includes(c)) out += c;
          else if (plus && b === 0x20) out += "+";
          else {
            const hex = b.toString(16).padStart(2, "0");
            out += `%${lower ? hex : hex.toUpperCase()}`;
          }
        }
        forms.push(out);
      }
    }
  }
  return forms;
}

function jsonForms(line: Uint8Array): string[] {
  let text: string;
  try {
    text = strictUtf8.decode(line);
  } catch {
    return []; // not text: no JSON encoder prints it as such
  }
  const plain = JSON.stringify(text).slice(1, -1);
  const go = plain.replace(/[<>&\u2028\u2029]/g, (c) => unicodeEscape(c, false));
  const ascii = plain.replace(/[\u0080-\uffff]/g, (c) => unicodeEscape(c, false));
  const asciiUpper = plain.replace(/[\u0080-\uffff]/g, (c) => unicodeEscape(c, true));
  return [plain, go, ascii, asciiUpper, plain.replaceAll("/", "\\/")];
}

function unicodeEscape(c: string, upper: boolean): string {
  let out = "";
  for (let i = 0; i < c.length; i++) {
    const hex = c.charCodeAt(i).toString(16).padStart(4, "0");
    out += `\\u${upper ? hex.toUpperCase() : hex}`;
  }
  return out;
}

/** The lines of a value that are redacted: split at `\n`, a final `\r` dropped, long enough. */
export function secretLines(value: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  while (start <= value.length) {
    let end = value.indexOf(0x0a, start);
    if (end === -1) end = value.length;
    let stop = end;
    if (stop > start && value[stop - 1] === 0x0d) stop--;
    if (stop - start >= MIN_SECRET_BYTES) lines.push(value.subarray(start, stop));
    start = end + 1;
  }
  return lines;
}

/** The base64 forms of a value (both alphabets, three alignments, line by line). */
export function base64Forms(value: Uint8Array): Uint8Array[] {
  const forms = new Map<string, Uint8Array>();
  for (const line of secretLines(value)) {
    for (let align = 0; align < 3; align++) {
      const b64 = base64Form(line, align);
      for (const form of [b64, b64.replaceAll("+", "-").replaceAll("/", "_")]) {
        if (form.length >= MIN_SECRET_BYTES) forms.set(form, encoder.encode(form));
      }
    }
  }
  return [...forms.values()];
}

/** Every byte form of a value that is redacted (see the module comment), without duplicates. */
export function secretForms(value: Uint8Array): Uint8Array[] {
  const forms = new Map<string, Uint8Array>();
  const add = (bytes: Uint8Array) => {
    if (bytes.length >= MIN_SECRET_BYTES) forms.set(latin1.decode(bytes), bytes);
  };
  for (const line of secretLines(value)) {
    add(line);
    for (const form of base64Forms(line)) add(form);
    for (const form of urlForms(line)) add(encoder.encode(form));
    for (const form of jsonForms(line)) add(encoder.encode(form));
  }
  return [...forms.values()];
}

// ---------------------------------------------------------------------------------------------
// The matcher

const HASH_BITS = 16;
const HASH_MASK = (1 << HASH_BITS) - 1;
/** Wu–Manber block size: 3-byte blocks; every form is at least 6 bytes long. */
const BLOCK = 3;

function blockHash(b0: number, b1: number, b2: number): number {
  return ((b0 << 11) ^ (b1 << 5) ^ b2) & HASH_MASK;
}

/**
 * All forms of all secrets, searched two ways:
 *
 * - Wu–Manber over the whole stream: a window of the shortest form's length slides by the
 *   shift table of its last 3 bytes, so output that holds no form is passed over several bytes
 *   at a time, and only windows whose last block ends a form's prefix are verified;
 * - a table of the forms' prefixes (by hash and length) checked against the last bytes of
 *   each read, which tells exactly how many bytes at the end may still be the start of a form:
 *   those, and only those, are held back.
 */
export class Matcher {
  readonly patterns: readonly Uint8Array[];
  /** The shortest and longest form. */
  readonly minLength: number;
  readonly maxLength: number;
  /** Wu–Manber: how far the window may move for the hash of its last block. */
  readonly shift: Uint8Array;
  /** Wu–Manber: the forms whose length-`minLength` prefix ends with a block of that hash. */
  readonly buckets: ReadonlyArray<readonly number[] | undefined>;
  /** The forms' prefixes, for the end of each read; built when first needed. */
  #prefixes: PrefixTable | undefined;
  /** The base64 forms alone, searched across the line breaks of wrapped base64. */
  readonly wrapped: Matcher | undefined;
  /** Every 4 bytes that occur in a form, as 32-bit numbers: a quick test at a line break. */
  readonly quads: ReadonlySet<number>;

  /** @param base64 the base64 forms among `patterns`, for wrapped base64 */
  constructor(patterns: readonly Uint8Array[], base64?: readonly Uint8Array[]) {
    this.patterns = patterns;
    this.wrapped = base64 ? new Matcher(base64) : undefined;
    const quads = new Set<number>();
    if (!base64) {
      for (const p of patterns) {
        for (let i = 0; i + 4 <= p.length; i++) quads.add(quad(p, i));
      }
    }
    this.quads = quads;
    let min = Infinity, max = 0;
    for (const p of patterns) {
      min = Math.min(min, p.length);
      max = Math.max(max, p.length);
    }
    if (min < BLOCK) throw new RangeError(`forms must be at least ${BLOCK} bytes long`);
    this.minLength = min;
    this.maxLength = max;
    const shift = new Uint8Array(1 << HASH_BITS).fill(Math.min(255, min - BLOCK + 1));
    const buckets: (number[] | undefined)[] = [];
    patterns.forEach((p, index) => {
      for (let j = BLOCK - 1; j < min; j++) {
        const h = blockHash(p[j - 2], p[j - 1], p[j]);
        shift[h] = Math.min(shift[h], min - 1 - j);
        if (j === min - 1) (buckets[h] ??= []).push(index);
      }
    });
    this.shift = shift;
    this.buckets = buckets;
  }

  /**
   * Calls `onMatch(start, end)` for every form found in `bytes[from..]` (complete forms only,
   * in order of start).
   */
  search(bytes: Uint8Array, from: number, onMatch: (start: number, end: number) => void): void {
    const { shift, buckets, patterns, minLength } = this;
    const n = bytes.length;
    let pos = from + minLength - 1;
    while (pos < n) {
      const h = ((bytes[pos - 2] << 11) ^ (bytes[pos - 1] << 5) ^ bytes[pos]) & HASH_MASK;
      const step = shift[h];
      if (step !== 0) {
        pos += step;
        continue;
      }
      const start = pos - minLength + 1;
      for (const index of buckets[h]!) {
        const p = patterns[index];
        const end = start + p.length;
        if (end > n) continue;
        let k = 0;
        while (k < p.length && bytes[start + k] === p[k]) k++;
        if (k === p.length) onMatch(start, end);
      }
      pos++;
    }
  }

  /** How many bytes at the end of `bytes` may still be the start of a form. */
  pendingTail(bytes: Uint8Array): number {
    this.#prefixes ??= new PrefixTable(this.patterns, this.maxLength);
    return this.#prefixes.pendingTail(bytes);
  }
}

/** The 4 bytes at `bytes[i]` as one 32-bit number. */
function quad(bytes: Uint8Array, i: number): number {
  return (bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) | bytes[i + 3];
}

const PREFIX_BASE = 0x01000193;

/**
 * Every prefix of every form, by a polynomial hash and its length: which suffix of a read is
 * the start of a form is found with one lookup per byte of the suffix, and the table is built
 * in time linear in the forms' length.
 */
class PrefixTable {
  readonly #patterns: readonly Uint8Array[];
  readonly #maxLength: number;
  /** (hash of a prefix) XOR (its length × a constant) → the forms having such a prefix. */
  readonly #forms = new Map<number, number[]>();

  constructor(patterns: readonly Uint8Array[], maxLength: number) {
    this.#patterns = patterns;
    this.#maxLength = maxLength;
    patterns.forEach((p, index) => {
      let h = 0;
      for (let k = 1; k <= p.length; k++) {
        h = (Math.imul(h, PREFIX_BASE) + p[k - 1]) | 0;
        const key = (h ^ Math.imul(k, 0x9e3779b1)) | 0;
        const list = this.#forms.get(key);
        if (list === undefined) this.#forms.set(key, [index]);
        else if (!list.includes(index)) list.push(index);
      }
    });
  }

  /** The length of the longest suffix of `bytes` that is the start of a form (0 when none). */
  pendingTail(bytes: Uint8Array): number {
    const n = bytes.length;
    const lowest = Math.max(0, n - this.#maxLength);
    let best = 0;
    let h = 0, power = 1;
    for (let s = n - 1; s >= lowest; s--) {
      h = (h + Math.imul(bytes[s], power)) | 0;
      power = Math.imul(power, PREFIX_BASE);
      const list = this.#forms.get((h ^ Math.imul(n - s, 0x9e3779b1)) | 0);
      if (list === undefined) continue;
      for (const index of list) {
        const p = this.#patterns[index];
        let k = 0;
        while (s + k < n && bytes[s + k] === p[k]) k++;
        if (s + k === n) {
          best = n - s;
          break;
        }
      }
    }
    return best;
  }
}

// ---------------------------------------------------------------------------------------------
// The redactor of one job

/** A variable considered for redaction. */
export interface CandidateVar {
  readonly name: string;
  readonly value: Uint8Array;
}

/**
 * The secrets of one job and the matcher of their forms. Values declared with
 * `::add-mask::` while the job runs are added to it.
 */
export class Redactor {
  readonly #values = new Map<string, Uint8Array>();
  #matcher: Matcher | undefined;
  #stale = false;
  #added = 0;
  #note: string | undefined;

  /**
   * @param vars the variables whose names matched a pattern; values shorter than
   *   {@linkcode MIN_SECRET_BYTES} are skipped, and named once by {@linkcode takeShortValueNote}.
   */
  constructor(vars: readonly CandidateVar[] = []) {
    const short = new Set<string>();
    for (const v of vars) {
      if (v.value.length >= MIN_SECRET_BYTES) this.#values.set(latin1.decode(v.value), v.value);
      else if (v.value.length > 0) short.add(v.name);
    }
    if (short.size > 0) {
      this.#note = `Values shorter than ${MIN_SECRET_BYTES} bytes are not redacted: ${
        [...short].sort().join(", ")
      }\n`;
    }
    this.#rebuild();
  }

  /** The matcher of every form of every value; `undefined` when there is no value. */
  get matcher(): Matcher | undefined {
    if (this.#stale) this.#rebuild();
    return this.#matcher;
  }

  /**
   * Adds a value (`::add-mask::`); false when it is too short or already known, or when
   * {@linkcode MAX_ADDED_VALUES} values were added already. The matcher is rebuilt when it is
   * next used, so a burst of `::add-mask::` lines costs one rebuild.
   */
  add(value: Uint8Array): boolean {
    if (secretLines(value).length === 0 || this.#added >= MAX_ADDED_VALUES) return false;
    const key = latin1.decode(value);
    if (this.#values.has(key)) return false;
    this.#values.set(key, value.slice());
    this.#added++;
    this.#stale = true;
    return true;
  }

  /** The job log line naming the variables too short to redact, the first time only. */
  takeShortValueNote(): string | undefined {
    const note = this.#note;
    this.#note = undefined;
    return note;
  }

  /** `text` with every secret form replaced (for directives and lines the agent writes). */
  redactText(text: string): string {
    const matcher = this.matcher;
    // Six UTF-8 bytes take at least two UTF-16 units (three bytes per unit at most).
    if (matcher === undefined || text.length < 2) return text;
    const parts: Uint8Array[] = [];
    const stream = new ScanStream(matcher, (bytes) => parts.push(bytes));
    stream.write(encoder.encode(text));
    if (!stream.end()) return text;
    return decodeUtf8PerByte(concatAll(parts));
  }

  /**
   * A stream for one command's output: bytes in, redacted bytes out to `onBytes`, with
   * `::add-mask::` lines taken out and their values added.
   */
  openStream(onBytes: (bytes: Uint8Array) => void): RedactionStream {
    return new RedactionStream(this, onBytes);
  }

  #rebuild(): void {
    this.#stale = false;
    const forms = new Map<string, Uint8Array>();
    const wrapped = new Map<string, Uint8Array>();
    for (const value of this.#values.values()) {
      for (const form of secretForms(value)) forms.set(latin1.decode(form), form);
      for (const form of base64Forms(value)) wrapped.set(latin1.decode(form), form);
    }
    this.#matcher = forms.size > 0
      ? new Matcher([...forms.values()], wrapped.size > 0 ? [...wrapped.values()] : undefined)
      : undefined;
  }
}

const EMPTY = new Uint8Array(0);
const REDACTED_BYTES = encoder.encode(REDACTED);

/**
 * The matcher run over a stream: matches become `[REDACTED]` (overlapping matches one
 * `[REDACTED]`, adjacent ones one each), and only the bytes that may still be the start of a
 * form are held back.
 */
class ScanStream {
  readonly #matcher: Matcher;
  readonly #onBytes: (bytes: Uint8Array) => void;
  /** Bytes scanned but not passed on; the first is at stream offset `#heldAt`. */
  #held: Uint8Array = EMPTY;
  #heldAt = 0;
  /** Matched ranges not passed on yet: [start, end) stream offsets, sorted and merged. */
  #ranges: number[] = [];
  #matched = false;
  /** Matches of the current `write()`, as offsets in its buffer. */
  readonly #found: number[] = [];
  readonly #onMatch = (start: number, end: number) => this.#found.push(start, end);
  /** Wrapped base64: where the current line starts, and whether the last byte was a CR. */
  #lineStart = 0;
  #lastWasCR = false;
  /** Line breaks after a line of a wrapping width: [start, end) pairs, in order. */
  #junctions: number[] = [];
  /** The start of the last line break searched across. */
  #junctionDone = -1;

  constructor(matcher: Matcher, onBytes: (bytes: Uint8Array) => void) {
    this.#matcher = matcher;
    this.#onBytes = onBytes;
  }

  write(bytes: Uint8Array): void {
    const n = bytes.length;
    if (n === 0) return;
    const held = this.#held;
    const at = this.#heldAt;
    const matcher = this.#matcher;
    if (matcher.wrapped) this.#findJunctions(bytes, at + held.length);
    if (
      held.length > 0 && n >= matcher.maxLength && this.#ranges.length === 0 &&
      this.#junctionsSettled() && this.#passApart(held, bytes)
    ) return;
    const buffer = concatBytes(held, bytes);
    const found = this.#found;
    this.#matcher.search(buffer, 0, this.#onMatch);
    if (found.length > 0) {
      for (let i = 0; i < found.length; i++) found[i] += at;
      this.#addRanges(found);
      found.length = 0;
    }
    const end = at + buffer.length;
    let safe = end - this.#matcher.pendingTail(buffer);
    if (this.#matcher.wrapped) {
      safe = Math.min(safe, this.#searchJunctions(buffer, at, false));
      if (this.#lastWasCR && WRAP_WIDTHS.includes(end - 1 - this.#lineStart)) {
        // A wrapped line's CR, its LF still to come: a form may go on after them.
        const span = this.#matcher.wrapped.maxLength - 1;
        safe = Math.min(safe, this.#backFrom(buffer, at, end - 1, span));
      }
    }
    const ranges = this.#ranges;
    for (let r = 0; r < ranges.length; r += 2) {
      if (ranges[r + 1] > safe) {
        safe = Math.min(safe, ranges[r]);
        break;
      }
    }
    if (ranges.length === 0) {
      // The common case: nothing matched, pass on all but a possible start of a form.
      const cut = safe - at;
      if (cut > 0) this.#onBytes(cut === buffer.length ? buffer : buffer.subarray(0, cut));
      // A copy: the caller may reuse `bytes` (the terminal is read into one buffer).
      this.#held = cut === buffer.length ? EMPTY : buffer.slice(cut);
      this.#heldAt = safe;
      return;
    }
    this.#held = buffer === bytes ? bytes.slice() : buffer;
    this.#passOn(safe);
  }

  /** No line break waits for a search across it, and no wrapped line's CR for its LF. */
  #junctionsSettled(): boolean {
    if (!this.#matcher.wrapped) return true;
    const junctions = this.#junctions;
    if (junctions.length > 0 && junctions[junctions.length - 2] > this.#junctionDone) return false;
    const end = this.#heldAt + this.#held.length;
    return !(this.#lastWasCR && WRAP_WIDTHS.includes(end - 1 - this.#lineStart));
  }

  /**
   * The common case without copying the read: the held bytes (a possible start of a form)
   * are settled by the first bytes of a read at least as long as the longest form. When no
   * form runs from them into the read and none is in the read, they and the read (but for a
   * possible start of a form at its end) pass on as they are. False when that does not hold:
   * nothing was done.
   */
  #passApart(held: Uint8Array, bytes: Uint8Array): boolean {
    const matcher = this.#matcher;
    let hit = false;
    const mark = () => hit = true;
    matcher.search(concatBytes(held, bytes.subarray(0, matcher.maxLength - 1)), 0, mark);
    if (!hit) matcher.search(bytes, 0, mark);
    if (hit) return false;
    const keep = matcher.pendingTail(bytes);
    const cut = bytes.length - keep;
    this.#onBytes(held);
    if (cut > 0) this.#onBytes(bytes.subarray(0, cut));
    this.#held = keep > 0 ? bytes.slice(cut) : EMPTY;
    this.#heldAt += held.length + cut;
    return true;
  }

  /** Passes every byte on; returns whether anything was redacted since the start. */
  end(): boolean {
    if (this.#matcher.wrapped) this.#searchJunctions(this.#held, this.#heldAt, true);
    this.#passOn(this.#heldAt + this.#held.length);
    return this.#matched;
  }

  /**
   * Notes the line breaks in `bytes` (at stream offset `abs`) that end a line of a width at
   * which tools wrap base64: a form may continue after them.
   */
  #findJunctions(bytes: Uint8Array, abs: number): void {
    // Four bytes at a time, as indexOfByte() does, in one pass over the read; only a break
    // after a line of a wrapping width is noted.
    const n = bytes.length;
    let lineStart = this.#lineStart - abs; // relative to bytes (may be negative)
    const noteBreak = (i: number) => {
      const cr = i > 0 ? bytes[i - 1] === CR : this.#lastWasCR;
      const width = i - (cr ? 1 : 0) - lineStart;
      if (width === 64 || width === 76) this.#junctions.push(abs + i - (cr ? 1 : 0), abs + i + 1);
    };
    let i = 0;
    for (; i < n && ((bytes.byteOffset + i) & 3) !== 0; i++) {
      if (bytes[i] === NL) {
        noteBreak(i);
        lineStart = i + 1;
      }
    }
    const words = (n - i) >> 2;
    if (words > 0) {
      const view = new Int32Array(bytes.buffer, bytes.byteOffset + i, words);
      for (let w = 0; w < words; w++) {
        const x = view[w] ^ NEWLINES;
        if ((((x - ONES) | 0) & ~x & HIGHS) === 0) continue;
        for (let k = i + w * 4, stop = k + 4; k < stop; k++) {
          if (bytes[k] !== NL) continue;
          // Only a line of 64 or 76 bytes (77 or 78 with its CR) is worth a closer look.
          const width = k - lineStart;
          if (width >= 64 && width <= 77) noteBreak(k);
          lineStart = k + 1;
        }
      }
      i += words * 4;
    }
    for (; i < n; i++) {
      if (bytes[i] === NL) {
        noteBreak(i);
        lineStart = i + 1;
      }
    }
    this.#lineStart = abs + lineStart;
    this.#lastWasCR = bytes[n - 1] === CR;
  }

  /**
   * Searches the base64 forms across each noted line break that has enough bytes after it
   * (or all of them at the end); returns the offset from which bytes must stay held for a
   * break still waiting for its next line (Infinity when none waits).
   */
  #searchJunctions(buffer: Uint8Array, at: number, final: boolean): number {
    const junctions = this.#junctions;
    let gone = 0;
    while (
      gone < junctions.length && junctions[gone + 1] <= at && junctions[gone] <= this.#junctionDone
    ) {
      gone += 2;
    }
    if (gone > 0) junctions.splice(0, gone);
    const wrapped = this.#matcher.wrapped!;
    const span = wrapped.maxLength - 1;
    const end = at + buffer.length;
    for (let j = 0; j < junctions.length; j += 2) {
      const breakStart = junctions[j], breakEnd = junctions[j + 1];
      if (breakStart <= this.#junctionDone) continue;
      const ready = final || end - breakEnd >= span ||
        buffer.indexOf(NL, Math.max(0, breakEnd - at)) !== -1;
      if (!ready) return this.#backFrom(buffer, at, breakStart, span);
      // A form across the break has 4 of its bytes right before it or right after it.
      const before = breakStart - 4 - at, after = breakEnd - at;
      const quads = wrapped.quads;
      if (
        before < 0 || after + 4 > buffer.length || quads.has(quad(buffer, before)) ||
        quads.has(quad(buffer, after))
      ) {
        this.#searchAcross(buffer, at, breakStart, breakEnd, span);
      }
      this.#junctionDone = breakStart;
    }
    return Infinity;
  }

  /**
   * The stream offset up to `count` base64 characters before `pos` (line breaks of wrapped
   * lines skipped, no further back than a byte outside the base64 alphabets or the buffer).
   */
  #backFrom(buffer: Uint8Array, at: number, pos: number, count: number): number {
    const junctions = this.#junctions;
    let p = pos;
    for (let k = this.#firstJunctionFrom(p) - 2; count > 0 && p > at;) {
      while (k >= 0 && junctions[k] >= p) k -= 2;
      if (k >= 0 && junctions[k + 1] === p) {
        if (junctions[k] <= at) break;
        p = junctions[k];
        continue;
      }
      if (!IS_BASE64[buffer[p - 1 - at]]) break;
      p--;
      count--;
    }
    return p;
  }

  /** The index in `#junctions` of the first break that starts at or after `p`. */
  #firstJunctionFrom(p: number): number {
    const junctions = this.#junctions;
    let lo = 0, hi = junctions.length / 2;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (junctions[mid * 2] < p) lo = mid + 1;
      else hi = mid;
    }
    return lo * 2;
  }

  /** Finds base64 forms that run across the line break [breakStart, breakEnd). */
  #searchAcross(
    buffer: Uint8Array,
    at: number,
    breakStart: number,
    breakEnd: number,
    span: number,
  ): void {
    const junctions = this.#junctions;
    // Positions only grow in each walk: a cursor over the (ordered) breaks finds those to skip.
    let k = 0;
    const breakAt = (p: number) => {
      while (k < junctions.length && junctions[k] < p) k += 2;
      return k < junctions.length && junctions[k] === p ? junctions[k + 1] : -1;
    };
    const positions: number[] = [];
    const first = this.#backFrom(buffer, at, breakStart, span);
    k = this.#firstJunctionFrom(first);
    for (let p = first; p < breakStart;) {
      const skip = breakAt(p);
      if (skip !== -1) {
        p = skip;
        continue;
      }
      positions.push(p++);
    }
    const joint = positions.length;
    const end = at + buffer.length;
    k = this.#firstJunctionFrom(breakEnd);
    for (let p = breakEnd, count = 0; count < span && p < end;) {
      const skip = breakAt(p);
      if (skip !== -1) {
        p = skip;
        continue;
      }
      if (!IS_BASE64[buffer[p - at]]) break;
      positions.push(p++);
      count++;
    }
    const joined = Uint8Array.from(positions, (p) => buffer[p - at]);
    const found: number[] = [];
    this.#matcher.wrapped!.search(joined, 0, (start, stop) => {
      if (start >= joint || stop <= joint) return; // not across this break
      // One range per line, so that the line breaks stay.
      let from = positions[start];
      for (let i = start + 1; i <= stop; i++) {
        if (i === stop || positions[i] !== positions[i - 1] + 1) {
          found.push(from, positions[i - 1] + 1);
          if (i < stop) from = positions[i];
        }
      }
    });
    if (found.length > 0) this.#addRanges(found);
  }

  /** Merges new [start, end) pairs (sorted by start) into the ranges. */
  #addRanges(found: number[]): void {
    this.#matched = true;
    const all: [number, number][] = [];
    const old = this.#ranges;
    for (let i = 0; i < old.length; i += 2) all.push([old[i], old[i + 1]]);
    for (let i = 0; i < found.length; i += 2) all.push([found[i], found[i + 1]]);
    all.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    const merged: number[] = [];
    for (const [start, end] of all) {
      const last = merged.length - 1;
      if (last > 0 && start < merged[last]) merged[last] = Math.max(merged[last], end);
      else merged.push(start, end);
    }
    this.#ranges = merged;
  }

  /** Passes on the held bytes before stream offset `upTo`, matched ranges replaced. */
  #passOn(upTo: number): void {
    if (upTo <= this.#heldAt) return;
    const held = this.#held;
    const at = this.#heldAt;
    const ranges = this.#ranges;
    const out: Uint8Array[] = [];
    let from = at;
    let used = 0;
    while (used < ranges.length && ranges[used + 1] <= upTo) {
      const start = ranges[used], end = ranges[used + 1];
      if (start > from) out.push(held.subarray(from - at, start - at));
      out.push(REDACTED_BYTES);
      from = end;
      used += 2;
    }
    ranges.splice(0, used);
    if (upTo > from) out.push(held.subarray(from - at, upTo - at));
    this.#held = held.slice(upTo - at);
    this.#heldAt = upTo;
    if (out.length > 0) this.#onBytes(concatAll(out));
  }
}

const NL = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
/** The bytes of both base64 alphabets (without `=`, which no form holds). */
const IS_BASE64 = new Uint8Array(256);
for (const c of encoder.encode(BASE64 + "-_")) IS_BASE64[c] = 1;
/**
 * Line widths at which tools wrap base64: PEM and `openssl base64` 64, `base64` and MIME 76
 * (also tested as literals in `#newline`).
 */
const WRAP_WIDTHS = [64, 76];
const ONES = 0x01010101;
const NEWLINES = 0x0a0a0a0a;
const HIGHS = 0x80808080 | 0;

/**
 * The index of the first `byte` in `bytes` from `from`, or -1. Four bytes at a time (the
 * zero-byte test on the word XOR the byte repeated): `Uint8Array.prototype.indexOf` is several
 * times slower.
 */
export function indexOfByte(bytes: Uint8Array, from: number, byte: number): number {
  const n = bytes.length;
  const repeated = (byte * ONES) | 0;
  let i = from;
  // A byte at a time up to an aligned word, and over the first 32 bytes (a near hit is common).
  const head = Math.min(n, from + 32);
  while (i < n && (i < head || ((bytes.byteOffset + i) & 3) !== 0)) {
    if (bytes[i] === byte) return i;
    i++;
  }
  const words = (n - i) >> 2;
  if (words > 0) {
    const view = new Int32Array(bytes.buffer, bytes.byteOffset + i, words);
    for (let w = 0; w < words; w++) {
      const x = view[w] ^ repeated;
      if ((((x - ONES) | 0) & ~x & HIGHS) !== 0) {
        const at = i + w * 4;
        for (let k = 0; k < 4; k++) if (bytes[at + k] === byte) return at + k;
      }
    }
    i += words * 4;
  }
  for (; i < n; i++) if (bytes[i] === byte) return i;
  return -1;
}

/** {@linkcode indexOfByte} for `:`. */
export function indexOfColon(bytes: Uint8Array, from: number): number {
  return indexOfByte(bytes, from, COLON);
}
const ADD_MASK = encoder.encode(ADD_MASK_PREFIX);
/** An `::add-mask::` line longer than this is dropped without adding its value. */
const MAX_MASK_LINE = 64 * 1024;

/**
 * One command's output through the redactor: `::add-mask::` lines are taken out (their values
 * added to the job's redactor), and the rest is scanned for secret forms.
 */
export class RedactionStream {
  readonly #redactor: Redactor;
  readonly #onBytes: (bytes: Uint8Array) => void;
  /** What one `write()` passes on, handed over at its end in one piece. */
  readonly #out: Uint8Array[] = [];
  readonly #collect = (bytes: Uint8Array) => this.#out.push(bytes);
  #scan: ScanStream | undefined;
  #scanMatcher: Matcher | undefined;
  /** At the start of a line (nothing of the current line passed on yet). */
  #lineStart = true;
  /** Bytes of a line start that may still be `::add-mask::`. */
  #maybeMask: Uint8Array = EMPTY;
  /** Inside an `::add-mask::` line: its value so far (undefined when not in one). */
  #mask: Uint8Array | undefined;
  #maskTooLong = false;

  constructor(redactor: Redactor, onBytes: (bytes: Uint8Array) => void) {
    this.#redactor = redactor;
    this.#onBytes = onBytes;
  }

  /** Adds raw output bytes; what can be passed on now is, in one piece. */
  write(bytes: Uint8Array): void {
    this.#write(bytes);
    this.#handOver();
  }

  #write(bytes: Uint8Array): void {
    const n = bytes.length;
    let from = 0;
    while (from < n) {
      if (this.#mask !== undefined) {
        // Inside an `::add-mask::` line: collect its value up to the newline.
        const nl = bytes.indexOf(NL, from);
        this.#growMask(bytes.subarray(from, nl === -1 ? n : nl));
        if (nl === -1) return;
        this.#finishMask();
        from = nl + 1;
        this.#lineStart = true;
        continue;
      }
      if (this.#maybeMask.length > 0) {
        // A line start that may still grow into `::add-mask::`.
        from = this.#matchMaskPrefix(bytes, from, this.#maybeMask.length);
        continue;
      }
      // Pass on everything up to the next ':' that starts a line (the next candidate).
      let colon = indexOfColon(bytes, from);
      while (colon !== -1 && !(colon === from ? this.#lineStart : bytes[colon - 1] === NL)) {
        colon = indexOfColon(bytes, colon + 1);
      }
      const stop = colon === -1 ? n : colon;
      if (stop > from) {
        this.#pass(bytes.subarray(from, stop));
        this.#lineStart = bytes[stop - 1] === NL;
      }
      if (colon === -1) return;
      from = this.#matchMaskPrefix(bytes, colon, 0);
    }
  }

  /**
   * Compares the bytes at a line start (`have` of them already held) with `::add-mask::`;
   * returns where to go on from.
   */
  #matchMaskPrefix(bytes: Uint8Array, from: number, have: number): number {
    const n = bytes.length;
    let k = 0;
    while (have + k < ADD_MASK.length && from + k < n && bytes[from + k] === ADD_MASK[have + k]) {
      k++;
    }
    if (have + k === ADD_MASK.length) {
      this.#maybeMask = EMPTY;
      this.#mask = EMPTY;
      return from + k;
    }
    if (from + k === n) {
      this.#maybeMask = concatBytes(this.#maybeMask, bytes.slice(from));
      return n;
    }
    // Not `::add-mask::`: what was held and the first byte here are ordinary output.
    const held = this.#maybeMask;
    this.#maybeMask = EMPTY;
    this.#pass(held);
    this.#pass(bytes.subarray(from, from + 1));
    this.#lineStart = bytes[from] === NL;
    return from + 1;
  }

  /** Passes every held byte on (the command ended). */
  end(): void {
    if (this.#mask !== undefined) this.#finishMask();
    if (this.#maybeMask.length > 0) {
      const held = this.#maybeMask;
      this.#maybeMask = EMPTY;
      this.#pass(held);
    }
    this.#scan?.end();
    this.#lineStart = true;
    this.#handOver();
  }

  /**
   * Hands what was collected to `onBytes`: pieces that are consecutive views of one buffer
   * (output without secrets) as one view, without copying; other pieces one by one (the
   * output buffer joins them without copying a large read either).
   */
  #handOver(): void {
    const out = this.#out;
    let run: Uint8Array | undefined;
    for (const p of out) {
      if (p.length === 0) continue;
      if (run && p.buffer === run.buffer && p.byteOffset === run.byteOffset + run.length) {
        run = new Uint8Array(run.buffer, run.byteOffset, run.length + p.length);
        continue;
      }
      if (run) this.#onBytes(run);
      run = p;
    }
    out.length = 0;
    if (run) this.#onBytes(run);
  }

  #pass(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const matcher = this.#redactor.matcher;
    if (matcher === undefined) {
      this.#out.push(bytes);
      return;
    }
    if (matcher !== this.#scanMatcher) {
      // A value was added (at a line start): the old scan passes on what it holds.
      this.#scan?.end();
      this.#scan = new ScanStream(matcher, this.#collect);
      this.#scanMatcher = matcher;
    }
    this.#scan!.write(bytes);
  }

  #growMask(bytes: Uint8Array): void {
    if (this.#maskTooLong || bytes.length === 0) return;
    if (this.#mask!.length + bytes.length > MAX_MASK_LINE) {
      this.#maskTooLong = true;
      this.#mask = EMPTY;
      return;
    }
    this.#mask = concatBytes(this.#mask!, bytes.slice());
  }

  #finishMask(): void {
    const value = this.#mask!;
    this.#mask = undefined;
    if (this.#maskTooLong) {
      this.#maskTooLong = false;
      return;
    }
    const end = value.length > 0 && value[value.length - 1] === 0x0d
      ? value.length - 1
      : value.length;
    this.#redactor.add(value.subarray(0, end));
  }
}

/**
 * The redactor of a job: the values of its variables (job, containers, image pull credentials,
 * then the agent's `env-vars`) whose names match `patterns`, and `values` whatever their names.
 * `undefined` when `patterns` and `values` are empty: redaction is off, `::add-mask::` lines
 * included.
 */
export function jobRedactor(
  request: JobRequest,
  hostEnvVars: readonly HostEnvVar[],
  patterns: readonly string[],
  values: readonly string[] = [],
): Redactor | undefined {
  if (patterns.length === 0 && values.length === 0) return undefined;
  const matches = nameMatcher(patterns);
  const candidates: CandidateVar[] = [];
  const addEncoded = (vars: readonly EnvVar[]) => {
    for (const v of vars) {
      if (!matches(v.name)) continue;
      try {
        candidates.push({ name: v.name, value: decodeBase64(v.value) });
      } catch {
        // Not base64: the export step fails the job, and the value never reaches the shell.
      }
    }
  };
  addEncoded(request.env_vars);
  for (const container of request.compose.containers) addEncoded(container.env_vars);
  for (const credentials of request.compose.image_pull_credentials) {
    addEncoded(credentials.env_vars);
  }
  for (const v of hostEnvVars) {
    if (matches(v.name)) candidates.push({ name: v.name, value: encoder.encode(v.value) });
  }
  // Values given as such are not named in the note about short values.
  for (const value of values) {
    if (value.length >= MIN_SECRET_BYTES) {
      candidates.push({ name: "", value: encoder.encode(value) });
    }
  }
  return new Redactor(candidates);
}

/**
 * The redactor of the agent's own `env-vars` whose names match `patterns`, for what the agent
 * logs outside any job (a shutdown hook's output); `undefined` when there is nothing to redact.
 */
export function hostRedactor(
  hostEnvVars: readonly HostEnvVar[],
  patterns: readonly string[],
): Redactor | undefined {
  const matches = nameMatcher(patterns);
  const vars = hostEnvVars.filter((v) => matches(v.name));
  const redactor = new Redactor(
    vars.map((v) => ({ name: v.name, value: encoder.encode(v.value) })),
  );
  return redactor.matcher ? redactor : undefined;
}

// ---------------------------------------------------------------------------------------------
// Sinks and loggers

/**
 * An event sink that redacts every event's text before `inner` sees it. `CommandLog` streams
 * command output through {@linkcode RedactingSink.redactor} itself and writes the redacted
 * chunks to {@linkcode RedactingSink.inner}, so that a secret split across reads is caught.
 */
export class RedactingSink implements EventSink {
  readonly inner: EventSink;
  readonly redactor: Redactor;

  constructor(inner: EventSink, redactor: Redactor) {
    this.inner = inner;
    this.redactor = redactor;
  }

  write(event: JobEvent): void {
    // A command that masks a literal value shows it in its directive, logged before it runs.
    if (event.event === "cmd_started") addLiteralMasks(event.directive, this.redactor);
    this.inner.write(redactEvent(event, this.redactor));
  }

  /** The inner sink's back-pressure, passed on. */
  ready(): Promise<void> | undefined {
    return this.inner.ready?.();
  }
}

/**
 * Adds the literal values of `::add-mask::VALUE` in a command's text (`echo '::add-mask::x'`):
 * quoted up to the closing quote, else up to a space or shell operator. Values with an
 * expansion (`$`, a backquote, a backslash) are left to the line the command prints.
 */
export function addLiteralMasks(command: string, redactor: Redactor): void {
  for (let at = command.indexOf(ADD_MASK_PREFIX); at !== -1;) {
    const from = at + ADD_MASK_PREFIX.length;
    const quote = command[at - 1];
    let end: number;
    if (quote === "'" || quote === '"') {
      end = command.indexOf(quote, from);
      if (end === -1) end = command.length;
    } else {
      end = from;
      while (end < command.length && !/[\s;|&()<>'"]/.test(command[end])) end++;
    }
    const value = command.slice(from, end);
    if (!/[$`\\]/.test(value)) redactor.add(encoder.encode(value));
    at = command.indexOf(ADD_MASK_PREFIX, from);
  }
}

/** `event` with its directive or output redacted (the same object when nothing changed). */
export function redactEvent(event: JobEvent, redactor: Redactor): JobEvent {
  switch (event.event) {
    case "cmd_started":
    case "cmd_finished": {
      const directive = redactor.redactText(event.directive);
      return directive === event.directive ? event : { ...event, directive };
    }
    case "cmd_output": {
      const output = redactor.redactText(event.output);
      return output === event.output ? event : { ...event, output };
    }
    default:
      return event;
  }
}

/** A logger that redacts every message before `inner` writes it. */
export function redactingLogger(inner: Logger, redactor: Redactor): Logger {
  const logger: Logger = {
    error: (message) => inner.error(redactor.redactText(message)),
    warn: (message) => inner.warn(redactor.redactText(message)),
    info: (message) => inner.info(redactor.redactText(message)),
    debug: (message) => inner.debug(redactor.redactText(message)),
    get debugEnabled() {
      return inner.debugEnabled;
    },
  };
  if (inner.raw) {
    const raw = inner.raw.bind(inner);
    logger.raw = (line) => raw(redactor.redactText(line));
  }
  return logger;
}
