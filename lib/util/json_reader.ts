/**
 * A strict RFC 8259 JSON reader that keeps what `JSON.parse` throws away: the offset where each
 * value starts and the source text of numbers and literals. The job request decoder
 * (`job_request.ts`) needs both for Go-like messages that name a line and column, and to
 * check integer literals the way Go does. It knows nothing of job requests.
 *
 * @example Offsets and number literals
 * ```ts
 * import { readJson } from "./json_reader.ts";
 * const root = readJson('{"a": 1.50}');
 * console.assert(root.t === "map" && root.entries[0][1].o === 6);
 * console.assert(root.t === "map" && root.entries[0][1].t === "scalar");
 * ```
 *
 * @module
 */

/** A JSON value with the offset (`o`) where it starts; numbers and booleans keep their text. */
export type JsonNode =
  | { readonly t: "null"; readonly o: number }
  | { readonly t: "string"; readonly value: string; readonly o: number }
  | { readonly t: "scalar"; readonly raw: string; readonly number: boolean; readonly o: number }
  | JsonList
  | JsonMap;

/** A JSON array. */
export interface JsonList {
  readonly t: "list";
  readonly items: readonly JsonNode[];
  readonly o: number;
}

/** A JSON object: its entries in document order, duplicates kept. */
export interface JsonMap {
  readonly t: "map";
  readonly entries: readonly (readonly [string, JsonNode])[];
  readonly o: number;
}

/**
 * Deeper nesting is refused instead of overflowing the stack (Go allows 10000; no job request
 * comes anywhere near this).
 */
export const MAX_JSON_DEPTH = 1000;

/**
 * Text that is not JSON: `problem` says what is wrong (`unexpected end of input`), `offset`
 * where (UTF-16 units from the start of the text).
 */
export class JsonSyntaxError extends SyntaxError {
  /** The problem alone, without position. */
  readonly problem: string;
  /** Where the problem is, in UTF-16 units from the start of the text. */
  readonly offset: number;

  constructor(problem: string, offset: number) {
    super(`${problem} at offset ${offset}`);
    this.name = "JsonSyntaxError";
    this.problem = problem;
    this.offset = offset;
  }
}

/**
 * Reads one JSON document (whitespace around it allowed, nothing else).
 *
 * @throws {JsonSyntaxError} the text is not JSON, or nests deeper than {@linkcode MAX_JSON_DEPTH}.
 */
export function readJson(text: string): JsonNode {
  return new JsonReader(text).parse();
}

const JSON_NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const JSON_ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

class JsonReader {
  readonly #text: string;
  #pos = 0;
  #depth = 0;

  constructor(text: string) {
    this.#text = text;
  }

  parse(): JsonNode {
    this.#skipSpace();
    const value = this.#value();
    this.#skipSpace();
    if (this.#pos < this.#text.length) this.#unexpected("after the top-level value");
    return value;
  }

  #fail(offset: number, problem: string): never {
    throw new JsonSyntaxError(problem, offset);
  }

  /** Fails on the character at the current position (or the end of input). */
  #unexpected(context: string): never {
    if (this.#pos >= this.#text.length) this.#fail(this.#pos, "unexpected end of input");
    const char = String.fromCodePoint(this.#text.codePointAt(this.#pos)!);
    this.#fail(this.#pos, `unexpected character ${describeChar(char)} ${context}`);
  }

  #skipSpace(): void {
    const text = this.#text;
    let pos = this.#pos;
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++;
      else break;
    }
    this.#pos = pos;
  }

  #value(): JsonNode {
    const o = this.#pos;
    const c = this.#text.charCodeAt(o);
    switch (c) {
      case 0x7b: // {
        return this.#object();
      case 0x5b: // [
        return this.#array();
      case 0x22: // "
        return { t: "string", value: this.#string(), o };
      case 0x74: // t
        return this.#literal("true", { t: "scalar", raw: "true", number: false, o });
      case 0x66: // f
        return this.#literal("false", { t: "scalar", raw: "false", number: false, o });
      case 0x6e: // n
        return this.#literal("null", { t: "null", o });
    }
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      JSON_NUMBER.lastIndex = o;
      const match = JSON_NUMBER.exec(this.#text);
      if (match === null) {
        this.#pos++;
        this.#unexpected("in a number");
      }
      this.#pos = o + match[0].length;
      return { t: "scalar", raw: match[0], number: true, o };
    }
    return this.#unexpected("where a value was expected");
  }

  #literal(word: string, node: JsonNode): JsonNode {
    const text = this.#text;
    for (let i = 0; i < word.length; i++) {
      if (text.charCodeAt(this.#pos) !== word.charCodeAt(i)) this.#unexpected(`in '${word}'`);
      this.#pos++;
    }
    return node;
  }

  #enter(): void {
    if (++this.#depth > MAX_JSON_DEPTH) {
      this.#fail(this.#pos, `nesting deeper than ${MAX_JSON_DEPTH} levels`);
    }
    this.#pos++;
    this.#skipSpace();
  }

  #object(): JsonNode {
    const o = this.#pos;
    this.#enter();
    const entries: (readonly [string, JsonNode])[] = [];
    if (this.#text.charCodeAt(this.#pos) === 0x7d) {
      this.#pos++;
      this.#depth--;
      return { t: "map", entries, o };
    }
    for (;;) {
      if (this.#text.charCodeAt(this.#pos) !== 0x22) this.#unexpected("where a key was expected");
      const key = this.#string();
      this.#skipSpace();
      if (this.#text.charCodeAt(this.#pos) !== 0x3a) this.#unexpected("where ':' was expected");
      this.#pos++;
      this.#skipSpace();
      entries.push([key, this.#value()]);
      this.#skipSpace();
      const c = this.#text.charCodeAt(this.#pos);
      if (c === 0x2c) {
        this.#pos++;
        this.#skipSpace();
      } else if (c === 0x7d) {
        this.#pos++;
        this.#depth--;
        return { t: "map", entries, o };
      } else {
        this.#unexpected("where ',' or '}' was expected");
      }
    }
  }

  #array(): JsonNode {
    const o = this.#pos;
    this.#enter();
    const items: JsonNode[] = [];
    if (this.#text.charCodeAt(this.#pos) === 0x5d) {
      this.#pos++;
      this.#depth--;
      return { t: "list", items, o };
    }
    for (;;) {
      items.push(this.#value());
      this.#skipSpace();
      const c = this.#text.charCodeAt(this.#pos);
      if (c === 0x2c) {
        this.#pos++;
        this.#skipSpace();
      } else if (c === 0x5d) {
        this.#pos++;
        this.#depth--;
        return { t: "list", items, o };
      } else {
        this.#unexpected("where ',' or ']' was expected");
      }
    }
  }

  /** Reads a string starting at the opening quote. */
  #string(): string {
    const text = this.#text;
    const length = text.length;
    let i = this.#pos + 1;
    let chunkStart = i;
    let out = "";
    for (;;) {
      if (i >= length) this.#fail(length, "unexpected end of input in a string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        this.#pos = i + 1;
        return out + text.slice(chunkStart, i);
      }
      if (c === 0x5c) {
        out += text.slice(chunkStart, i);
        const escape = text.charAt(i + 1);
        if (escape === "u") {
          const hex = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.#fail(i, "invalid \\u escape in a string");
          out += String.fromCharCode(parseInt(hex, 16));
          i += 6;
        } else if (Object.hasOwn(JSON_ESCAPES, escape)) {
          out += JSON_ESCAPES[escape];
          i += 2;
        } else {
          if (i + 1 >= length) this.#fail(length, "unexpected end of input in a string");
          this.#fail(i, `invalid escape '\\${escape}' in a string`);
        }
        chunkStart = i;
        continue;
      }
      if (c < 0x20) this.#fail(i, `control character ${describeChar(text[i])} in a string`);
      i++;
    }
  }
}

function describeChar(char: string): string {
  const code = char.codePointAt(0)!;
  if (code > 0x20 && code < 0x7f) return `'${char}'`;
  return `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
}
