/**
 * Semaphore's condition language (`when`, renderedtext/when; PIPELINES.md §5): parsing into a
 * small tree and evaluating it on a pipeline's git facts. `and`/`or` are left-associative with
 * no precedence. `change_in` is the only function; its value comes from the caller.
 *
 * @module
 */

/** A literal value of the language. */
export type WhenValue =
  | string
  | boolean
  | number
  | WhenValue[]
  | { readonly [key: string]: WhenValue };

/** A parsed condition. */
export type WhenNode =
  | {
    readonly t: "bool";
    readonly op: "and" | "or";
    readonly left: WhenNode;
    readonly right: WhenNode;
  }
  | { readonly t: "cmp"; readonly keyword: string; readonly op: string; readonly value: string }
  | { readonly t: "value"; readonly value: WhenValue }
  | {
    readonly t: "fun";
    readonly name: string;
    readonly args: readonly WhenValue[];
    readonly text: string;
  }
  | { readonly t: "funcmp"; readonly fun: WhenNode; readonly op: string; readonly right: WhenNode };

/** A condition that does not parse. */
export class ConditionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConditionError";
  }
}

const KEYWORDS = ["branch", "tag", "pull_request", "result", "result_reason"];
const FUNCTIONS = ["change_in"];

type Token =
  | { k: "(" | ")" | "[" | "]" | "{" | "}" | ","; at: number }
  | { k: "op"; v: string; at: number }
  | { k: "boolop"; v: "and" | "or"; at: number }
  | { k: "bool"; v: boolean; at: number }
  | { k: "kw"; v: string; at: number }
  | { k: "str"; v: string; at: number }
  | { k: "num"; v: number; at: number }
  | { k: "fun"; v: string; at: number }
  | { k: "key"; v: string; at: number };

function lex(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if ("()[]{},".includes(c)) {
      tokens.push({ k: c as "(", at: i });
      i++;
      continue;
    }
    const two = text.slice(i, i + 2);
    if (two === "!=" || two === "=~" || two === "!~") {
      tokens.push({ k: "op", v: two, at: i });
      i += 2;
      continue;
    }
    if (c === "=") {
      tokens.push({ k: "op", v: "=", at: i });
      i++;
      continue;
    }
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end === -1) throw new ConditionError(`unterminated string at position ${i + 1}`);
      if (end === i + 1) throw new ConditionError(`empty string at position ${i + 1}`);
      tokens.push({ k: "str", v: text.slice(i + 1, end), at: i });
      i = end + 1;
      continue;
    }
    const number = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?/.exec(text.slice(i));
    if (number) {
      tokens.push({ k: "num", v: Number(number[0]), at: i });
      i += number[0].length;
      continue;
    }
    const ident = /^[a-zA-Z][a-zA-Z0-9_-]*/.exec(text.slice(i));
    if (ident) {
      const word = ident[0];
      const after = text.slice(i + word.length);
      if (/^\s*\(/.test(after) && !["and", "or", "AND", "OR"].includes(word)) {
        if (!FUNCTIONS.includes(word)) throw new ConditionError(`unknown function '${word}'`);
        tokens.push({ k: "fun", v: word, at: i });
      } else if (after.startsWith(":")) {
        tokens.push({ k: "key", v: word, at: i });
        i++; // the colon
      } else if (["and", "AND"].includes(word)) tokens.push({ k: "boolop", v: "and", at: i });
      else if (["or", "OR"].includes(word)) tokens.push({ k: "boolop", v: "or", at: i });
      else if (["true", "TRUE"].includes(word)) tokens.push({ k: "bool", v: true, at: i });
      else if (["false", "FALSE"].includes(word)) tokens.push({ k: "bool", v: false, at: i });
      else if (KEYWORDS.includes(word) || KEYWORDS.includes(word.toLowerCase())) {
        if (word !== word.toLowerCase() && word !== word.toUpperCase()) {
          throw new ConditionError(`unknown keyword '${word}'`);
        }
        tokens.push({ k: "kw", v: word.toLowerCase(), at: i });
      } else throw new ConditionError(`unknown keyword '${word}' at position ${i + 1}`);
      i += word.length;
      continue;
    }
    if (c === '"') {
      throw new ConditionError(
        `unexpected '"' at position ${i + 1} (strings use single quotes)`,
      );
    }
    throw new ConditionError(`unexpected '${c}' at position ${i + 1}`);
  }
  return tokens;
}

class Parser {
  #tokens: Token[];
  #i = 0;
  #text: string;
  constructor(text: string) {
    this.#text = text;
    this.#tokens = lex(text);
  }

  parse(): WhenNode {
    if (this.#tokens.length === 0) throw new ConditionError("empty condition");
    const node = this.#expression();
    const rest = this.#tokens[this.#i];
    if (rest) throw new ConditionError(`unexpected ${this.#describe(rest)}`);
    return node;
  }

  #peek(): Token | undefined {
    return this.#tokens[this.#i];
  }

  #next(): Token {
    const t = this.#tokens[this.#i++];
    if (!t) throw new ConditionError("unexpected end of condition");
    return t;
  }

  #describe(t: Token): string {
    return `'${this.#text.slice(t.at).split(/\s/)[0]}' at position ${t.at + 1}`;
  }

  #expression(): WhenNode {
    let left = this.#term();
    for (let t = this.#peek(); t?.k === "boolop"; t = this.#peek()) {
      this.#i++;
      left = { t: "bool", op: t.v, left, right: this.#term() };
    }
    return left;
  }

  #term(): WhenNode {
    const t = this.#next();
    if (t.k === "(") {
      const inner = this.#expression();
      const close = this.#next();
      if (close.k !== ")") {
        throw new ConditionError(`expected ')' but found ${this.#describe(close)}`);
      }
      return inner;
    }
    if (t.k === "kw") {
      const op = this.#next();
      if (op.k !== "op") throw new ConditionError(`expected an operator after '${t.v}'`);
      const value = this.#next();
      if (value.k !== "str") {
        throw new ConditionError(`expected a quoted string after '${t.v} ${op.v}'`);
      }
      if (op.v === "=~" || op.v === "!~") regex(value.v); // a bad pattern fails the file
      return { t: "cmp", keyword: t.v, op: op.v, value: value.v };
    }
    if (t.k === "str" && this.#peek()?.k === "op") {
      const op = this.#next() as { v: string };
      const kw = this.#next();
      if (kw.k !== "kw") throw new ConditionError(`expected a keyword after '${t.v}' ${op.v}`);
      if (op.v === "=~" || op.v === "!~") regex(t.v);
      return { t: "cmp", keyword: kw.v, op: op.v, value: t.v };
    }
    if (t.k === "fun") {
      const start = t.at;
      const args = this.#args();
      const end = this.#tokens[this.#i - 1].at + 1;
      const fun: WhenNode = { t: "fun", name: t.v, args, text: this.#text.slice(start, end) };
      if (this.#peek()?.k === "op") {
        const op = this.#next() as { v: string };
        return { t: "funcmp", fun, op: op.v, right: this.#term() };
      }
      return fun;
    }
    this.#i--;
    return { t: "value", value: this.#value() };
  }

  #args(): WhenValue[] {
    if (this.#next().k !== "(") throw new ConditionError("expected '('");
    const args: WhenValue[] = [];
    if (this.#peek()?.k === ")") {
      this.#i++;
      return args;
    }
    for (;;) {
      args.push(this.#value());
      const t = this.#next();
      if (t.k === ")") return args;
      if (t.k !== ",") {
        throw new ConditionError(`expected ',' or ')' but found ${this.#describe(t)}`);
      }
    }
  }

  #value(): WhenValue {
    const t = this.#next();
    switch (t.k) {
      case "str":
      case "bool":
      case "num":
        return t.v;
      case "[": {
        const items: WhenValue[] = [];
        if (this.#peek()?.k === "]") {
          this.#i++;
          return items;
        }
        for (;;) {
          items.push(this.#value());
          const sep = this.#next();
          if (sep.k === "]") return items;
          if (sep.k !== ",") {
            throw new ConditionError(`expected ',' or ']' but found ${this.#describe(sep)}`);
          }
        }
      }
      case "{": {
        const map: Record<string, WhenValue> = {};
        if (this.#peek()?.k === "}") {
          this.#i++;
          return map;
        }
        for (;;) {
          const key = this.#next();
          if (key.k !== "key") {
            throw new ConditionError(`expected 'key:' but found ${this.#describe(key)}`);
          }
          map[key.v] = this.#value();
          const sep = this.#next();
          if (sep.k === "}") return map;
          if (sep.k !== ",") {
            throw new ConditionError(`expected ',' or '}' but found ${this.#describe(sep)}`);
          }
        }
      }
      default:
        throw new ConditionError(`unexpected ${this.#describe(t)}`);
    }
  }
}

/**
 * Parses a condition.
 *
 * @throws {ConditionError} text that does not parse, naming the problem.
 */
export function parseCondition(text: string): WhenNode {
  return new Parser(text).parse();
}

/** The keyword values of a pipeline (§5.2). */
export interface KeywordValues {
  readonly branch: string;
  readonly tag: string;
  readonly pull_request: string;
  readonly result?: string;
  readonly result_reason?: string;
}

/** What evaluating needs: keyword values and `change_in`'s answer. */
export interface EvaluateOptions {
  readonly keywords: KeywordValues;
  /** Value of one `change_in(...)` call; `text` is the call as written. */
  readonly changeIn: (args: readonly WhenValue[], text: string) => boolean;
}

function truthy(value: WhenValue): boolean {
  if (typeof value === "boolean") return value;
  if (typeof value === "string") return value !== "false";
  if (typeof value === "number") return value >= 0;
  if (Array.isArray(value)) return value.length > 0;
  return true;
}

/** A PCRE pattern as a JS RegExp: a leading `(?i)` becomes the `i` flag. */
function regex(pattern: string): RegExp {
  const insensitive = pattern.startsWith("(?i)");
  try {
    return new RegExp(insensitive ? pattern.slice(4) : pattern, insensitive ? "i" : "");
  } catch {
    throw new ConditionError(`invalid regular expression '${pattern}'`);
  }
}

function compare(left: string, op: string, right: string): boolean {
  switch (op) {
    case "=":
      return left === right;
    case "!=":
      return left !== right;
    case "=~":
      return left !== "" && regex(right).test(left);
    case "!~":
      return left === "" || !regex(right).test(left);
  }
  throw new ConditionError(`unknown operator '${op}'`);
}

/**
 * Evaluates a parsed condition.
 *
 * @throws {ConditionError} `result`/`result_reason` outside promotions, a bad regex.
 */
export function evaluateCondition(node: WhenNode, options: EvaluateOptions): boolean {
  switch (node.t) {
    case "bool": {
      const left = evaluateCondition(node.left, options);
      const right = evaluateCondition(node.right, options);
      return node.op === "and" ? left && right : left || right;
    }
    case "cmp": {
      const value = options.keywords[node.keyword as keyof KeywordValues];
      if (value === undefined) {
        throw new ConditionError(`Missing value of keyword parameter '${node.keyword}'`);
      }
      return compare(value, node.op, node.value);
    }
    case "value":
      return truthy(node.value);
    case "fun":
      return options.changeIn(node.args, node.text);
    case "funcmp": {
      const left = String(evaluateCondition(node.fun, options));
      const right = String(evaluateCondition(node.right, options));
      return compare(left, node.op, right);
    }
  }
}

/** Every `change_in` call of a condition, in order. */
export function changeInCalls(node: WhenNode): Extract<WhenNode, { t: "fun" }>[] {
  switch (node.t) {
    case "bool":
      return [...changeInCalls(node.left), ...changeInCalls(node.right)];
    case "fun":
      return [node];
    case "funcmp":
      return [...changeInCalls(node.fun), ...changeInCalls(node.right)];
    default:
      return [];
  }
}
