/**
 * Parsing of Semaphore job requests (SEMAPHORE_COMPAT.md §4) into the typed `JobRequest` of
 * `job_request_types.ts`.
 *
 * - JSON (`POST /jobs`, self-hosted `GET /jobs/{id}`) follows Go `encoding/json`: keys match
 *   case-insensitively, unknown keys are ignored, missing keys and `null` give zero values,
 *   a value of the wrong type is an error, numbers for integers must be integer literals.
 *   Our own JSON reader (`json_reader.ts`) keeps positions and number literals for the messages.
 *   Where we differ from Go, on purpose: a top level `null` is an error (Go gives an empty
 *   request), a duplicate key replaces the whole earlier value (Go merges objects), nesting
 *   stops at 1000 levels (Go: 10000).
 * - YAML (`agent run JOB.yaml`) follows Go's YAML decoding: keys match exactly; any scalar is
 *   accepted for a string field as the text the user wrote (`job_id: 42` gives `"42"`); files
 *   come from `file:` (the original's key) and `files:` (DECISIONS.md item 1), in that order.
 *   `mode: 0644` written as a number keeps its digits, read as octal later as chmod reads them;
 *   YAML 1.2 octal `0o644` gives `"0644"` and hex gives its octal spelling. Anchors, aliases
 *   and `<<` merge keys work (each aliased node is decoded once: no alias bombs). The `yaml`
 *   package reads `process.env`, so parsing YAML needs env permission.
 *
 * Errors that make a request unusable are one line naming the field path
 * (`commands[2].directive: expected a string`), thrown as {@linkcode JobRequestError}. What the
 * original checks only when it builds the job (executor, logger) is left to
 * {@linkcode validateForJob}. This module knows nothing of HTTP, executors or the job engine.
 *
 * @example Parse a request and check that a job can be built from it
 * ```ts
 * import { parseJobRequestJson, validateForJob } from "./job_request.ts";
 * const request = parseJobRequestJson('{"Job_ID": "1", "commands": [{"directive": "true"}]}');
 * console.assert(request.executor === "shell" && validateForJob(request) === undefined);
 * ```
 *
 * @module
 */

import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  type Node as YamlNode,
  parseDocument,
  visit,
} from "yaml";
import type {
  Callbacks,
  Command,
  Compose,
  Container,
  EnvVar,
  ImagePullCredentials,
  JobFile,
  JobRequest,
  LoggerConfig,
} from "./job_request_types.ts";
import { type JsonNode, JsonSyntaxError, readJson } from "../util/json_reader.ts";
import { BodyTooLargeError, readFileCapped } from "../util/capped_read.ts";
import { MAX_JOB_FILE_BYTES } from "./job_request_types.ts";

/** The log size threshold used when `logger.max_size_in_bytes` is 0 or absent (§4.5). */
export const DEFAULT_MAX_LOG_SIZE = 16777216;

/** Where a {@linkcode JobRequestError} happened; every field is optional. */
export interface JobRequestErrorOptions {
  /** The field path (`commands[2].directive`); "" or absent for the whole document. */
  readonly field?: string;
  /** The job file, as the user named it. */
  readonly file?: string;
  /** 1-based line of the problem, when known. */
  readonly line?: number;
  /** 1-based column (UTF-16 units) of the problem, when known. */
  readonly column?: number;
  /** Treat as a syntax error: the message shows `file:line:col` instead of the field. */
  readonly syntax?: boolean;
  readonly cause?: unknown;
}

/**
 * A job request that cannot be used: invalid JSON/YAML, or a value of the wrong type.
 * The message is one line: `<file>: <field>: <problem>` or, for syntax errors,
 * `<file>:<line>:<col>: <problem>` (without a file: `<field>: <problem>` and
 * `<problem> at line L, column C`).
 */
export class JobRequestError extends SyntaxError {
  /** The field path (`env_vars[0].name`), "" for the whole document. */
  readonly field: string;
  /** The problem alone, without file, field or position. */
  readonly problem: string;
  readonly file?: string;
  readonly line?: number;
  readonly column?: number;

  constructor(problem: string, options: JobRequestErrorOptions = {}) {
    const { field = "", file, line, column, syntax = false, cause } = options;
    super(formatMessage(problem, field, file, syntax ? line : undefined, column), { cause });
    this.name = "JobRequestError";
    this.problem = problem;
    this.field = field;
    if (file !== undefined) this.file = file;
    if (line !== undefined) this.line = line;
    if (column !== undefined) this.column = column;
  }
}

function formatMessage(
  problem: string,
  field: string,
  file: string | undefined,
  line: number | undefined,
  column: number | undefined,
): string {
  if (line !== undefined) {
    return file === undefined
      ? `${problem} at line ${line}, column ${column ?? 1}`
      : `${file}:${line}:${column ?? 1}: ${problem}`;
  }
  const parts = [file, field === "" ? undefined : field, problem];
  return parts.filter((part) => part !== undefined).join(": ");
}

/** Options of the `parseJobRequest*` functions. */
export interface ParseJobRequestOptions {
  /** The file the text came from, named in error messages. @default none */
  readonly file?: string;
}

/**
 * Parses a JSON job request with Go `encoding/json` semantics and applies the defaults
 * (`executor` → `shell`, `logger.method` → `pull`).
 *
 * @throws {JobRequestError} invalid JSON, a top level that is not an object, a wrong type.
 */
export function parseJobRequestJson(
  text: string,
  options: ParseJobRequestOptions = {},
): JobRequest {
  const source = { text, file: options.file };
  const root = readJsonRequest(source);
  return withDefaults(decodeRequest(new Decoder<JsonNode>(jsonAccess, source), root, false));
}

/**
 * Parses a YAML job request (`file:` and `files:` both accepted) and applies the defaults.
 *
 * @throws {JobRequestError} invalid YAML, a top level that is not a mapping, a wrong type.
 */
export function parseJobRequestYaml(
  text: string,
  options: ParseJobRequestOptions = {},
): JobRequest {
  const source = { text, file: options.file };
  const doc = parseDocument(text, { prettyErrors: false });
  const error = doc.errors[0];
  if (error !== undefined) {
    const problem = error.code === "MULTIPLE_DOCS"
      ? "invalid YAML: more than one document (only one job per file)"
      : `invalid YAML: ${firstLine(error.message)}`;
    throw positionedError(source, error.pos[0], problem, { syntax: true, cause: error });
  }
  const contents = doc.contents;
  if (contents === null || (isScalar(contents) && contents.source === "")) {
    throw new JobRequestError("expected an object at the top level, found an empty document", {
      file: options.file,
    });
  }
  const access = new YamlAccess(doc, source);
  return withDefaults(decodeRequest(new Decoder<YamlValue>(access, source), contents, true));
}

/**
 * Reads and parses a YAML job file (`agent run`), at most {@linkcode MAX_JOB_FILE_BYTES}.
 * `contents` are the file's bytes when the caller has read them already (through the same cap).
 * Synchronous, as {@linkcode readFileCapped} is.
 *
 * @throws {JobRequestError} the file cannot be read, is not UTF-8, or is not a valid request.
 */
export function parseJobRequestFile(path: string, contents?: Uint8Array): JobRequest {
  let bytes: Uint8Array;
  try {
    // Read through a cap: /dev/zero or a huge file fails instead of filling the memory.
    bytes = contents ?? readFileCapped(path, MAX_JOB_FILE_BYTES);
  } catch (error) {
    throw new JobRequestError(`Cannot read job file: ${describeReadError(error)}`, {
      file: path,
      cause: error,
    });
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (error) {
    throw new JobRequestError("Cannot read job file: the file is not valid UTF-8", {
      file: path,
      cause: error,
    });
  }
  return parseJobRequestYaml(text, { file: path });
}

function describeReadError(error: unknown): string {
  if (error instanceof BodyTooLargeError) return `the file is larger than ${error.limit} bytes`;
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory";
  return firstLine(error instanceof Error ? error.message : String(error));
}

/** The log size threshold of a request: `logger.max_size_in_bytes`, or 16 MiB when 0. */
export function maxLogSize(request: JobRequest): number {
  const size = request.logger.max_size_in_bytes;
  return size === 0 ? DEFAULT_MAX_LOG_SIZE : size;
}

/**
 * What the original reports when it builds a job from this request (§5.1, §4.5), checked in its
 * order (logger first, then executor): `unknown logger type`, `HTTP logger needs a URL`,
 * `unknown executor type`, or a clear line for a `dockercompose` job with no containers.
 * Returns `undefined` when a job can be built. Empty `executor`/`logger.method` count as
 * `shell`/`pull`.
 */
export function validateForJob(request: JobRequest): string | undefined {
  const method = request.logger.method === "" ? "pull" : request.logger.method;
  if (method !== "pull" && method !== "push") return "unknown logger type";
  if (method === "push" && request.logger.url === "") return "HTTP logger needs a URL";
  const executor = request.executor === "" ? "shell" : request.executor;
  if (executor !== "shell" && executor !== "dockercompose") return "unknown executor type";
  if (executor === "dockercompose" && request.compose.containers.length === 0) {
    return "compose.containers: a dockercompose job needs at least one container";
  }
  return undefined;
}

// --- The typed decoding, shared by JSON and YAML ---

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** One value of the source document, whatever the format. */
type Item<N> =
  | { readonly t: "null" }
  | { readonly t: "string"; readonly value: string }
  /** A number or boolean; `raw` is the source text, `value` the YAML number if any. */
  | {
    readonly t: "scalar";
    readonly raw: string;
    readonly number: boolean;
    readonly value?: number;
  }
  | { readonly t: "list"; readonly items: readonly N[] }
  | { readonly t: "map"; readonly entries: readonly (readonly [string, N])[] };

/** How the decoder sees the nodes of one format. */
interface Access<N> {
  read(node: N): Item<N>;
  /** Source offset of a node, when known. */
  offset(node: N): number | undefined;
  /** A stable identity for nodes reached through a YAML alias (memoised: no alias bombs). */
  shared(node: N): object | undefined;
  /** JSON: keys match case-insensitively. YAML: exactly. */
  readonly foldKeys: boolean;
  /** YAML: any scalar is accepted for a string field, as its source text. */
  readonly scalarsAsText: boolean;
}

interface Source {
  readonly text: string;
  readonly file: string | undefined;
}

type Handlers<N> = Readonly<Record<string, (node: N, path: string) => void>>;
/** Decodes one composite value; module-level functions, so that they can key the alias memo. */
type DecodeFn<N, T> = (d: Decoder<N>, node: N, path: string) => T;

class Decoder<N> {
  readonly #access: Access<N>;
  readonly #source: Source;
  /** Values decoded from nodes reached through YAML aliases, per node and decode function. */
  readonly #values = new Map<object, Map<unknown, unknown>>();
  readonly #lists = new Map<object, Map<unknown, unknown>>();

  constructor(access: Access<N>, source: Source) {
    this.#access = access;
    this.#source = source;
  }

  fail(node: N, path: string, problem: string): never {
    throw positionedError(this.#source, this.#access.offset(node), problem, { field: path });
  }

  isMap(node: N): boolean {
    return this.#access.read(node).t === "map";
  }

  string(node: N, path: string, mode = false): string {
    const item = this.#access.read(node);
    if (item.t === "string") return item.value;
    if (item.t === "null") return "";
    if (item.t === "scalar" && this.#access.scalarsAsText) {
      return mode && item.value !== undefined ? modeFromYamlNumber(item.raw, item.value) : item.raw;
    }
    return this.fail(node, path, "expected a string");
  }

  integer(node: N, path: string): number {
    const item = this.#access.read(node);
    if (item.t === "null") return 0;
    if (item.t === "scalar" && item.number) {
      if (item.value !== undefined) {
        if (Number.isSafeInteger(item.value)) return item.value;
      } else if (/^-?(?:0|[1-9][0-9]*)$/.test(item.raw)) {
        // Go decodes into an int64: any integer literal in range, nothing else.
        const value = BigInt(item.raw);
        if (value >= -(2n ** 63n) && value < 2n ** 63n) return Number(value);
        return this.fail(node, path, "integer out of range");
      }
    }
    return this.fail(node, path, "expected an integer");
  }

  list<T>(node: N, path: string, decodeItem: DecodeFn<N, T>): T[] {
    return this.#memoised(this.#lists, node, decodeItem, () => {
      const item = this.#access.read(node);
      if (item.t === "null") return [];
      if (item.t !== "list") return this.fail(node, path, "expected a list");
      const out = new Array<T>(item.items.length);
      for (let i = 0; i < item.items.length; i++) {
        out[i] = this.value(item.items[i], `${path}[${i}]`, decodeItem);
      }
      return out;
    });
  }

  /** Decodes a composite value. */
  value<T>(node: N, path: string, decode: DecodeFn<N, T>): T {
    return this.#memoised(this.#values, node, decode, () => decode(this, node, path));
  }

  /** Calls the handler of each known key in document order (a later duplicate wins). */
  object(node: N, path: string, handlers: Handlers<N>): void {
    const item = this.#access.read(node);
    if (item.t === "null") return;
    if (item.t !== "map") return this.fail(node, path, "expected an object");
    const prefix = path === "" ? "" : `${path}.`;
    for (const [key, value] of item.entries) {
      let name = key;
      if (!Object.hasOwn(handlers, name)) {
        if (!this.#access.foldKeys) continue;
        name = foldKey(key);
        if (!Object.hasOwn(handlers, name)) continue;
      }
      handlers[name](value, prefix + name);
    }
  }

  /**
   * A node reached through a YAML alias is decoded once per decode function: a document of
   * aliases to aliases costs what its text costs (no "billion laughs").
   */
  #memoised<T>(
    memo: Map<object, Map<unknown, unknown>>,
    node: N,
    key: unknown,
    decode: () => T,
  ): T {
    const shared = this.#access.shared(node);
    if (shared === undefined) return decode();
    let byKey = memo.get(shared);
    if (byKey === undefined) memo.set(shared, byKey = new Map());
    if (byKey.has(key)) return byKey.get(key) as T;
    const value = decode();
    byKey.set(key, value);
    return value;
  }
}

/**
 * Go's `encoding/json` matches keys with Unicode simple folding; the only non-ASCII characters
 * that fold onto our ASCII field names are the Kelvin sign (lowercases to `k`) and long s (`ſ`).
 */
function foldKey(key: string): string {
  return key.toLowerCase().replaceAll("ſ", "s");
}

/**
 * What a user means by `mode: <number>` in YAML, where YAML 1.2 already read it as an int:
 * `0644`/`644`/`755` keep their digits (octal, as chmod reads them, and as the original gets
 * them); `0o644` is explicit octal and becomes `0644`; `0x1a4` becomes its octal `0644`.
 * Anything else keeps its text, so the consumer's error names what the user wrote.
 */
function modeFromYamlNumber(raw: string, value: number): string {
  if (/^0o[0-7]+$/.test(raw)) return `0${raw.slice(2)}`;
  if (/^0x[0-9a-fA-F]+$/.test(raw) && Number.isSafeInteger(value)) return `0${value.toString(8)}`;
  return raw;
}

function decodeRequest<N>(d: Decoder<N>, root: N, yaml: boolean): JobRequest {
  if (!d.isMap(root)) d.fail(root, "", "expected an object at the top level");
  const request: Mutable<JobRequest> = {
    job_id: "",
    executor: "",
    compose: { containers: [], image_pull_credentials: [], host_setup_commands: [] },
    commands: [],
    epilogue_always_commands: [],
    epilogue_on_pass_commands: [],
    epilogue_on_fail_commands: [],
    env_vars: [],
    files: [],
    ssh_public_keys: [],
    callbacks: { finished: "", teardown_finished: "", token: "" },
    logger: { method: "", url: "", token: "", max_size_in_bytes: 0 },
  };
  // YAML: `file:` (the original's key) then `files:` (DECISIONS.md item 1).
  let singular: JobFile[] = [], plural: JobFile[] = [];
  const handlers: Record<string, (n: N, p: string) => void> = {
    job_id: (n, p) => request.job_id = d.string(n, p),
    executor: (n, p) => request.executor = d.string(n, p),
    compose: (n, p) => request.compose = d.value(n, p, decodeCompose),
    commands: (n, p) => request.commands = d.list(n, p, decodeCommand),
    epilogue_always_commands: (n, p) =>
      request.epilogue_always_commands = d.list(n, p, decodeCommand),
    epilogue_on_pass_commands: (n, p) =>
      request.epilogue_on_pass_commands = d.list(n, p, decodeCommand),
    epilogue_on_fail_commands: (n, p) =>
      request.epilogue_on_fail_commands = d.list(n, p, decodeCommand),
    env_vars: (n, p) => request.env_vars = d.list(n, p, decodeJobEnvVar),
    files: (n, p) => plural = d.list(n, p, decodeFile),
    ssh_public_keys: (n, p) => request.ssh_public_keys = d.list(n, p, decodeString),
    callbacks: (n, p) => request.callbacks = d.value(n, p, decodeCallbacks),
    logger: (n, p) => request.logger = d.value(n, p, decodeLogger),
  };
  if (yaml) handlers.file = (n, p) => singular = d.list(n, p, decodeFile);
  d.object(root, "", handlers);
  request.files = singular.length === 0 ? plural : [...singular, ...plural];
  return request;
}

function decodeString<N>(d: Decoder<N>, node: N, path: string): string {
  return d.string(node, path);
}

function decodeCommand<N>(d: Decoder<N>, node: N, path: string): Command {
  const command: Mutable<Command> = { directive: "", alias: "" };
  d.object(node, path, {
    directive: (n, p) => command.directive = d.string(n, p),
    alias: (n, p) => command.alias = d.string(n, p),
  });
  return command;
}

function decodeEnvVar<N>(d: Decoder<N>, node: N, path: string): EnvVar {
  const envVar: Mutable<EnvVar> = { name: "", value: "" };
  d.object(node, path, {
    name: (n, p) => envVar.name = d.string(n, p),
    value: (n, p) => envVar.value = d.string(n, p),
  });
  return envVar;
}

/**
 * What the name of a job variable must be (DECISIONS.md 19): it goes unquoted into the
 * `export NAME=VALUE` line the job shell sources, so anything else could run shell code.
 */
const ENV_VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Longest name, in characters, quoted in full in the error. */
const QUOTED_NAME_LIMIT = 100;

/** A job variable (`env_vars[i]`): its name must be a shell variable name. */
function decodeJobEnvVar<N>(d: Decoder<N>, node: N, path: string): EnvVar {
  const envVar = decodeEnvVar(d, node, path);
  if (!ENV_VAR_NAME.test(envVar.name)) {
    const shown = envVar.name.length > QUOTED_NAME_LIMIT
      ? `${JSON.stringify(envVar.name.slice(0, QUOTED_NAME_LIMIT)).slice(0, -1)}..."`
      : JSON.stringify(envVar.name);
    d.fail(node, `${path}.name`, `${shown} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)`);
  }
  return envVar;
}

function decodeFile<N>(d: Decoder<N>, node: N, path: string): JobFile {
  const file: Mutable<JobFile> = { path: "", content: "", mode: "" };
  d.object(node, path, {
    path: (n, p) => file.path = d.string(n, p),
    content: (n, p) => file.content = d.string(n, p),
    mode: (n, p) => file.mode = d.string(n, p, true),
  });
  return file;
}

function decodeCompose<N>(d: Decoder<N>, node: N, path: string): Compose {
  const compose: Mutable<Compose> = {
    containers: [],
    image_pull_credentials: [],
    host_setup_commands: [],
  };
  d.object(node, path, {
    containers: (n, p) => compose.containers = d.list(n, p, decodeContainer),
    image_pull_credentials: (n, p) =>
      compose.image_pull_credentials = d.list(n, p, decodeCredentials),
    host_setup_commands: (n, p) => compose.host_setup_commands = d.list(n, p, decodeCommand),
  });
  return compose;
}

function decodeContainer<N>(d: Decoder<N>, node: N, path: string): Container {
  const container: Mutable<Container> = {
    name: "",
    image: "",
    command: "",
    entrypoint: "",
    user: "",
    env_vars: [],
  };
  d.object(node, path, {
    name: (n, p) => container.name = d.string(n, p),
    image: (n, p) => container.image = d.string(n, p),
    command: (n, p) => container.command = d.string(n, p),
    entrypoint: (n, p) => container.entrypoint = d.string(n, p),
    user: (n, p) => container.user = d.string(n, p),
    env_vars: (n, p) => container.env_vars = d.list(n, p, decodeEnvVar),
  });
  return container;
}

function decodeCredentials<N>(d: Decoder<N>, node: N, path: string): ImagePullCredentials {
  const credentials: Mutable<ImagePullCredentials> = { env_vars: [], files: [] };
  d.object(node, path, {
    env_vars: (n, p) => credentials.env_vars = d.list(n, p, decodeEnvVar),
    files: (n, p) => credentials.files = d.list(n, p, decodeFile),
  });
  return credentials;
}

function decodeCallbacks<N>(d: Decoder<N>, node: N, path: string): Callbacks {
  const callbacks: Mutable<Callbacks> = { finished: "", teardown_finished: "", token: "" };
  d.object(node, path, {
    finished: (n, p) => callbacks.finished = d.string(n, p),
    teardown_finished: (n, p) => callbacks.teardown_finished = d.string(n, p),
    token: (n, p) => callbacks.token = d.string(n, p),
  });
  return callbacks;
}

function decodeLogger<N>(d: Decoder<N>, node: N, path: string): LoggerConfig {
  const logger: Mutable<LoggerConfig> = { method: "", url: "", token: "", max_size_in_bytes: 0 };
  d.object(node, path, {
    method: (n, p) => logger.method = d.string(n, p),
    url: (n, p) => logger.url = d.string(n, p),
    token: (n, p) => logger.token = d.string(n, p),
    max_size_in_bytes: (n, p) => logger.max_size_in_bytes = d.integer(n, p),
  });
  return logger;
}

/** §5.1 steps 1–2: an empty executor is `shell`, an empty logger method is `pull`. */
function withDefaults(request: JobRequest): JobRequest {
  if (request.executor !== "" && request.logger.method !== "") return request;
  return {
    ...request,
    executor: request.executor === "" ? "shell" : request.executor,
    logger: {
      ...request.logger,
      method: request.logger.method === "" ? "pull" : request.logger.method,
    },
  };
}

// --- Errors with positions ---

function positionedError(
  source: Source,
  offset: number | undefined,
  problem: string,
  options: { field?: string; syntax?: boolean; cause?: unknown },
): JobRequestError {
  const position = offset === undefined ? undefined : lineColumn(source.text, offset);
  return new JobRequestError(problem, {
    ...options,
    file: source.file,
    line: position?.line,
    column: position?.column,
  });
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1, lineStart = 0;
  for (let i = text.indexOf("\n"); i !== -1 && i < offset; i = text.indexOf("\n", i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

function firstLine(message: string): string {
  const end = message.indexOf("\n");
  return (end === -1 ? message : message.slice(0, end)).trim();
}

// --- JSON: the nodes of lib/json_reader.ts ---

const jsonAccess: Access<JsonNode> = {
  read: (node) => node,
  offset: (node) => node.o,
  shared: () => undefined,
  foldKeys: true,
  scalarsAsText: false,
};

/** Reads the JSON text of a request; syntax errors name the line and column. */
function readJsonRequest(source: Source): JsonNode {
  try {
    return readJson(source.text);
  } catch (error) {
    if (!(error instanceof JsonSyntaxError)) throw error;
    throw positionedError(source, error.offset, `invalid JSON: ${error.problem}`, {
      syntax: true,
    });
  }
}
// --- YAML: the `yaml` package's document nodes, aliases resolved ---

type YamlValue = unknown;

class YamlAccess implements Access<YamlValue> {
  readonly foldKeys = false;
  readonly scalarsAsText = true;
  readonly #doc: Document;
  readonly #source: Source;
  #aliases: Map<unknown, YamlNode | undefined> | undefined;

  constructor(doc: Document, source: Source) {
    this.#doc = doc;
    this.#source = source;
  }

  read(value: YamlValue): Item<YamlValue> {
    const node = this.#resolve(value);
    if (isScalar(node)) {
      const scalar = node.value;
      if (scalar === null || scalar === undefined) return { t: "null" };
      if (typeof scalar === "string") return { t: "string", value: scalar };
      const raw = typeof node.source === "string" ? node.source : String(scalar);
      if (typeof scalar === "number") return { t: "scalar", raw, number: true, value: scalar };
      if (typeof scalar === "bigint") {
        return { t: "scalar", raw, number: true, value: Number(scalar) };
      }
      return { t: "scalar", raw, number: false };
    }
    if (isSeq(node)) return { t: "list", items: node.items };
    if (isMap(node)) return { t: "map", entries: this.#entries(node.items) };
    return { t: "null" }; // an empty value (`key:` with nothing, `? key`)
  }

  offset(value: YamlValue): number | undefined {
    if (isScalar(value) || isMap(value) || isSeq(value) || isAlias(value)) return value.range?.[0];
    return undefined;
  }

  shared(value: YamlValue): object | undefined {
    if (!isAlias(value)) return undefined;
    return this.#resolve(value) ?? undefined;
  }

  /** String keys in order; `<<` merge keys (as Go's YAML has them) put merged keys first. */
  #entries(pairs: readonly { key: unknown; value: unknown }[]): (readonly [string, unknown])[] {
    const own: (readonly [string, unknown])[] = [];
    let merged: (readonly [string, unknown])[] = [];
    for (const pair of pairs) {
      const key = this.#resolve(pair.key);
      if (!isScalar(key) || typeof key.value !== "string") continue;
      if (key.value === "<<" && key.type === "PLAIN") {
        const source = this.#resolve(pair.value);
        // Each source goes before the ones already merged: with the decoder's "later wins",
        // earlier sources win over later ones, and the map's own keys over all of them.
        for (const one of isSeq(source) ? source.items : [source]) {
          const map = this.#resolve(one);
          if (isMap(map)) merged = [...this.#entries(map.items), ...merged];
        }
        continue;
      }
      own.push([key.value, pair.value]);
    }
    return merged.length === 0 ? own : [...merged, ...own];
  }

  #resolve(value: unknown): unknown {
    if (!isAlias(value)) return value;
    if (this.#aliases === undefined) this.#aliases = this.#collectAliases();
    const target = this.#aliases.get(value);
    if (target === undefined) {
      const problem = `invalid YAML: unknown alias *${value.source}`;
      throw positionedError(this.#source, value.range?.[0], problem, { syntax: true });
    }
    return target;
  }

  /** One pass over the document: each alias to the last anchor of that name before it. */
  #collectAliases(): Map<unknown, YamlNode | undefined> {
    const anchors = new Map<string, YamlNode>();
    const aliases = new Map<unknown, YamlNode | undefined>();
    visit(this.#doc, {
      Node: (_key, node) => {
        if (isAlias(node)) aliases.set(node, anchors.get(node.source));
        else if (node.anchor !== undefined) anchors.set(node.anchor, node);
      },
    });
    return aliases;
  }
}
