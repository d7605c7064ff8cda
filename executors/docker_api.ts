/**
 * A small, typed client for the Docker Engine API over the daemon's unix socket: version
 * negotiation, images (inspect, pull, push, tag, import, remove), networks, containers,
 * exec, attach and logs. Plain requests go through `fetch` with a unix-socket HTTP client;
 * attach and exec streams hijack their own connection (`Deno.connect`), as the Docker CLI
 * does, and hand back the raw stream.
 *
 * It knows nothing of jobs, job logs or Semaphore: the container executor (`docker.ts`) and
 * the tests build on it. Daemon errors are `HttpError`s carrying the daemon's own message;
 * an unreachable daemon is an error saying `Cannot connect to the Docker daemon at unix://...`.
 *
 * @module
 */

import { HttpError } from "../lib/util/errors.ts";
import { encodeBase64 } from "../lib/util/base64.ts";
import { after, formatGoDuration, type Timer } from "../lib/util/delay.ts";
import { readCappedBody } from "../lib/util/capped_read.ts";

/** Where the daemon listens unless `DOCKER_HOST` says otherwise. */
export const DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock";

/** The newest API version this client speaks; older daemons are spoken to in their version. */
export const MAX_API_VERSION = "1.45";

/** The oldest API version this client accepts (network aliases, `wait` conditions). */
export const MIN_API_VERSION = "1.30";

/**
 * The longest one Engine API call may take, its answer included: 2 minutes (a create, start
 * or forced remove takes seconds; a daemon silent for this long is wedged).
 */
export const DOCKER_CALL_TIMEOUT_MS = 120_000;

/** The longest a pull, push or import may go without a progress message: 5 minutes. */
export const DOCKER_PROGRESS_TIMEOUT_MS = 300_000;

/** The largest answer read from the daemon: 64 MiB (a list of ~40,000 containers). */
export const MAX_DOCKER_ANSWER_BYTES = 64 * 1024 * 1024;

/** The largest error answer read from the daemon: 1 MiB. */
const MAX_DOCKER_ERROR_BYTES = 1024 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The daemon's socket path: `DOCKER_HOST=unix://PATH` when set, else the default socket.
 *
 * @throws {Error} when `DOCKER_HOST` names anything but a unix socket.
 */
export function dockerSocketPath(dockerHost: string | undefined = readDockerHost()): string {
  if (dockerHost === undefined || dockerHost === "") return DEFAULT_DOCKER_SOCKET;
  if (dockerHost.startsWith("unix://") && dockerHost.length > "unix://".length) {
    return dockerHost.slice("unix://".length);
  }
  throw new Error(
    `Cannot use DOCKER_HOST '${dockerHost}': only unix sockets (unix:///path) are supported`,
  );
}

function readDockerHost(): string | undefined {
  try {
    return Deno.env.get("DOCKER_HOST");
  } catch {
    return undefined; // no env permission: the default socket
  }
}

/** Compares two `major.minor` API versions. */
export function compareApiVersions(a: string, b: string): number {
  const [a1 = 0, a2 = 0] = a.split(".").map(Number);
  const [b1 = 0, b2 = 0] = b.split(".").map(Number);
  return a1 - b1 || a2 - b2;
}

/** Credentials for one registry, sent as `X-Registry-Auth` (pull, push) or to `/auth`. */
export interface RegistryAuth {
  readonly username: string;
  readonly password: string;
  /** e.g. `https://index.docker.io/v1/`, `127.0.0.1:5000`, `https://gcr.io`. */
  readonly serveraddress: string;
}

/** Encodes registry credentials for the `X-Registry-Auth` header (base64url JSON). */
export function encodeRegistryAuth(auth: RegistryAuth): string {
  const json = JSON.stringify({
    username: auth.username,
    password: auth.password,
    serveraddress: auth.serveraddress,
  });
  return encodeBase64(json).replaceAll("+", "-").replaceAll("/", "_");
}

/** An image reference split as the pull endpoint wants it. */
export interface ImageReference {
  /** Registry and repository, e.g. `127.0.0.1:5000/team/app` or `ruby`. */
  readonly repository: string;
  /** A tag (`latest` when none is given) or a digest (`sha256:...`). */
  readonly tag: string;
  /** The registry host, `docker.io` for Docker Hub images. */
  readonly registry: string;
}

/** Splits `[registry/]repo[:tag][@digest]`; a reference without tag means `latest`. */
export function parseImageReference(reference: string): ImageReference {
  let repository = reference;
  let tag = "latest";
  const at = reference.indexOf("@");
  if (at !== -1) {
    repository = reference.slice(0, at);
    tag = reference.slice(at + 1);
  } else {
    const colon = reference.lastIndexOf(":");
    if (colon > reference.lastIndexOf("/")) {
      repository = reference.slice(0, colon);
      tag = reference.slice(colon + 1);
    }
  }
  const slash = repository.indexOf("/");
  const first = slash === -1 ? "" : repository.slice(0, slash);
  const registry = first !== "" && (first.includes(".") || first.includes(":") ||
      first === "localhost")
    ? first
    : "docker.io";
  return { repository, tag, registry };
}

/** A device passed into a container. */
export interface DeviceMapping {
  readonly PathOnHost: string;
  readonly PathInContainer: string;
  readonly CgroupPermissions: string;
}

/** The host side of a container (the parts we use). */
export interface HostConfig {
  /** `HOST:CONTAINER[:ro]` bind mounts. */
  readonly Binds?: readonly string[];
  readonly Devices?: readonly DeviceMapping[];
  /** A network name or id to start on. */
  readonly NetworkMode?: string;
  readonly AutoRemove?: boolean;
  readonly Init?: boolean;
  /** Memory limit in bytes. */
  readonly Memory?: number;
  /** Memory plus swap in bytes (equal to `Memory`: no swap). */
  readonly MemorySwap?: number;
  /** CPU quota in 10^-9 CPUs. */
  readonly NanoCpus?: number;
  /** Most processes at once. */
  readonly PidsLimit?: number;
}

/** One network endpoint of a new container. */
export interface EndpointSettings {
  /** DNS names of the container on that network. */
  readonly Aliases?: readonly string[];
}

/** The body of `POST /containers/create` (the parts we use). */
export interface ContainerConfig {
  readonly Image: string;
  readonly Cmd?: readonly string[];
  readonly Entrypoint?: readonly string[];
  readonly User?: string;
  /** `NAME=value` entries. */
  readonly Env?: readonly string[];
  readonly WorkingDir?: string;
  readonly Tty?: boolean;
  readonly OpenStdin?: boolean;
  readonly StdinOnce?: boolean;
  readonly AttachStdin?: boolean;
  readonly AttachStdout?: boolean;
  readonly AttachStderr?: boolean;
  readonly Labels?: Readonly<Record<string, string>>;
  readonly HostConfig?: HostConfig;
  readonly NetworkingConfig?: {
    readonly EndpointsConfig: Readonly<Record<string, EndpointSettings>>;
  };
}

/** What `GET /containers/{id}/json` tells (the parts we use). */
export interface ContainerInspect {
  readonly Id: string;
  readonly Name: string;
  readonly State: {
    readonly Status: string;
    readonly Running: boolean;
    /** The container's init process on the daemon's host (0 when it is not running). */
    readonly Pid?: number;
    /** The kernel killed the container's init process for its memory limit. */
    readonly OOMKilled?: boolean;
    readonly ExitCode: number;
    readonly Error: string;
  };
  readonly Config: { readonly Labels: Readonly<Record<string, string>> | null };
}

/** One entry of `GET /containers/json`. */
export interface ContainerSummary {
  readonly Id: string;
  readonly Names: readonly string[];
  readonly Image: string;
  readonly State: string;
  readonly Labels: Readonly<Record<string, string>> | null;
}

/** One entry of `GET /networks`. */
export interface NetworkSummary {
  readonly Id: string;
  readonly Name: string;
  readonly Labels: Readonly<Record<string, string>> | null;
}

/** What `GET /images/{name}/json` tells (the parts we use). */
export interface ImageInspect {
  readonly Id: string;
  readonly RepoTags: readonly string[] | null;
  readonly Config: {
    readonly Cmd: readonly string[] | null;
    readonly Entrypoint: readonly string[] | null;
    readonly Env: readonly string[] | null;
  } | null;
}

/** The body of `POST /containers/{id}/exec`. */
export interface ExecConfig {
  readonly Cmd: readonly string[];
  readonly Tty?: boolean;
  readonly AttachStdin?: boolean;
  readonly AttachStdout?: boolean;
  readonly AttachStderr?: boolean;
  readonly Env?: readonly string[];
  readonly User?: string;
  readonly WorkingDir?: string;
}

/** What `GET /exec/{id}/json` tells (the parts we use). */
export interface ExecInspect {
  readonly Running: boolean;
  readonly ExitCode: number | null;
  readonly Pid: number;
}

/** Label and other filters for list endpoints, e.g. `{ label: ["a=b"] }`. */
export type DockerFilters = Readonly<Record<string, readonly string[]>>;

/** Options of one streamed image transfer (pull, push). */
export interface ImageTransferOptions {
  readonly auth?: RegistryAuth;
  /** Receives each progress message as a plain line, without a newline. */
  readonly onLine?: (line: string) => void;
  readonly signal?: AbortSignal;
}

/** One message of a pull/push/import progress stream. */
interface ProgressMessage {
  readonly status?: string;
  readonly id?: string;
  readonly progress?: string;
  readonly progressDetail?: { readonly current?: number; readonly total?: number };
  readonly error?: string;
  readonly errorDetail?: { readonly message?: string };
  readonly stream?: string;
}

/**
 * Turns one progress message into a plain line as the Docker CLI prints it without a
 * terminal (`<id>: <status>`); byte-count updates (`Downloading`, `Extracting` with a
 * progress bar) give `undefined`, so a log gets one line per layer step.
 */
export function progressLine(message: ProgressMessage): string | undefined {
  if (message.progressDetail?.current !== undefined) return undefined;
  if (message.stream !== undefined) return message.stream.replace(/\r?\n$/, "");
  if (message.status === undefined) return undefined;
  return message.id ? `${message.id}: ${message.status}` : message.status;
}

/** Deadlines of the Docker client, in milliseconds. */
export interface DockerTimeouts {
  /** One call, answer included (the attach upgrade too). @default DOCKER_CALL_TIMEOUT_MS */
  readonly callMs?: number;
  /** Between two progress messages of a pull, push or import. @default DOCKER_PROGRESS_TIMEOUT_MS */
  readonly progressMs?: number;
}

/** Options of {@linkcode DockerClient.connect}. */
export interface DockerClientOptions {
  /** @default dockerSocketPath() (`DOCKER_HOST=unix://...` or `/var/run/docker.sock`) */
  readonly socketPath?: string;
  /** Cancels the version negotiation. */
  readonly signal?: AbortSignal;
  /** @default 2 minutes a call, 5 minutes between progress messages */
  readonly timeouts?: DockerTimeouts;
}

/** A daemon that did not answer within a deadline. */
export class DockerTimeoutError extends Error {
  constructor(socketPath: string, what: string, ms: number) {
    super(
      `The Docker daemon at unix://${socketPath} did not answer ${what} within ` +
        formatGoDuration(ms),
    );
    this.name = "DockerTimeoutError";
  }
}

/**
 * An abort signal that fires after `ms` with a {@linkcode DockerTimeoutError}; `restart()`
 * gives it `ms` more from now (progress streams), `clear()` stops it.
 */
class Deadline {
  readonly #controller = new AbortController();
  readonly #make: (ms: number) => Error;
  #timer: Timer | undefined;

  constructor(ms: number, make: (ms: number) => Error) {
    this.#make = make;
    this.restart(ms);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  restart(ms: number): void {
    this.#timer?.cancel();
    if (this.#controller.signal.aborted || !Number.isFinite(ms)) return;
    this.#timer = after(ms, () => this.#controller.abort(this.#make(ms)));
  }

  clear(): void {
    this.#timer?.cancel();
  }
}

/** Options of one plain request. */
interface RequestOptions {
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>;
  readonly body?: unknown;
  readonly rawBody?: BodyInit;
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
  /** This call's deadline (`Infinity`: none). @default the client's call deadline */
  readonly timeoutMs?: number;
}

/** Makes the "daemon unreachable" error for a failed connection. */
function connectionError(socketPath: string, cause: unknown): Error {
  let reason = cause instanceof Error ? cause.message : String(cause);
  const inner = cause instanceof Error && cause.cause instanceof Error ? cause.cause.message : "";
  if (inner) reason = inner;
  const connect = /\(Connect\): (.*)$/.exec(reason);
  if (connect) reason = connect[1];
  reason = reason.replace(/^error sending request for url \([^)]*\): /, "");
  return new Error(`Cannot connect to the Docker daemon at unix://${socketPath}: ${reason}`, {
    cause,
  });
}

/** Reads the daemon's `{"message": ...}` error body (at most 1 MiB) into an `HttpError`. */
async function responseError(response: Response, what: string): Promise<HttpError> {
  const body = await readCappedBody(response.body, MAX_DOCKER_ERROR_BYTES)
    .then((bytes) => decoder.decode(bytes), () => "");
  let message = body.trim();
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === "string") message = parsed.message;
  } catch {
    // not JSON: the raw body is the best message there is
  }
  if (message === "") message = `${what}: HTTP ${response.status}`;
  return new HttpError(message, { status: response.status, body });
}

function buildQuery(query: RequestOptions["query"]): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

/** Splits a byte stream into text lines (without `\r\n`). */
async function* readLines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += value;
      let nl: number;
      while ((nl = pending.indexOf("\n")) !== -1) {
        const line = pending.slice(0, nl).replace(/\r$/, "");
        pending = pending.slice(nl + 1);
        if (line !== "") yield line;
      }
    }
    if (pending.trim() !== "") yield pending.trim();
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/**
 * A connection the daemon handed over after `101 UPGRADED`: the raw stream of an attach or
 * exec (TTY: the terminal's bytes; no TTY: the multiplexed frames, see
 * {@linkcode demultiplex}). Owns the connection: cancelling the readable or disposing closes
 * it.
 */
export class HijackedStream implements AsyncDisposable {
  /** What the container writes. Ends when the process ends or the stream is closed. */
  readonly readable: ReadableStream<Uint8Array>;
  readonly #conn: Deno.UnixConn;
  #closed = false;

  constructor(conn: Deno.UnixConn, leftover: Uint8Array) {
    this.#conn = conn;
    let first: Uint8Array | undefined = leftover.length > 0 ? leftover : undefined;
    const buffer = new Uint8Array(64 * 1024);
    this.readable = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (first) {
          controller.enqueue(first);
          first = undefined;
          return;
        }
        let n: number | null = null;
        try {
          n = this.#closed ? null : await conn.read(buffer);
        } catch {
          n = null; // closed under us (stop) or reset by the daemon: the stream just ends
        }
        if (n === null) {
          this.close();
          controller.close();
          return;
        }
        controller.enqueue(buffer.slice(0, n));
      },
      cancel: () => this.close(),
    }, { highWaterMark: 1 }); // one read ahead: the socket is read while a chunk is handled
  }

  /** Writes all of `bytes` to the process's stdin. */
  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      if (this.#closed) throw new Error("Cannot write to the container: the stream is closed");
      offset += await this.#conn.write(bytes.subarray(offset));
    }
  }

  /** Closes the stdin side only (the process sees end of input). */
  async closeWrite(): Promise<void> {
    if (!this.#closed) await this.#conn.closeWrite();
  }

  /** Closes the connection; idempotent. A pending read ends the readable. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  /** Whether {@linkcode close} ran (or the daemon ended the stream). */
  get closed(): boolean {
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}

/** One frame of a multiplexed (non-TTY) attach/exec/logs stream. */
export interface StreamFrame {
  /** 0 stdin, 1 stdout, 2 stderr. */
  readonly stream: number;
  readonly bytes: Uint8Array;
}

/** Reads the 8-byte-header frames of a non-TTY stream (`stream, 0, 0, 0, size32be`). */
export async function* demultiplex(
  readable: ReadableStream<Uint8Array>,
): AsyncGenerator<StreamFrame> {
  const reader = readable.getReader();
  let buffer = new Uint8Array(0);
  try {
    while (true) {
      while (buffer.length >= 8) {
        const size = new DataView(buffer.buffer, buffer.byteOffset, 8).getUint32(4);
        if (buffer.length < 8 + size) break;
        yield { stream: buffer[0], bytes: buffer.slice(8, 8 + size) };
        buffer = buffer.slice(8 + size);
      }
      const { value, done } = await reader.read();
      if (done) break;
      const next = new Uint8Array(buffer.length + value.length);
      next.set(buffer);
      next.set(value, buffer.length);
      buffer = next;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** Finds `\r\n\r\n` in `bytes`; -1 when absent. */
function headEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

/** A Docker Engine API client on one unix socket. Dispose it to close its HTTP client. */
export class DockerClient implements AsyncDisposable {
  /** The daemon's socket. */
  readonly socketPath: string;
  /** The negotiated API version (`1.41`, ...). */
  readonly apiVersion: string;
  readonly #http: Deno.HttpClient;
  readonly #callMs: number;
  readonly #progressMs: number;
  #closed = false;

  private constructor(
    socketPath: string,
    apiVersion: string,
    http: Deno.HttpClient,
    timeouts: Required<DockerTimeouts>,
  ) {
    this.socketPath = socketPath;
    this.apiVersion = apiVersion;
    this.#http = http;
    this.#callMs = timeouts.callMs;
    this.#progressMs = timeouts.progressMs;
  }

  /**
   * Connects to the daemon and negotiates the API version (the lower of the daemon's and
   * {@linkcode MAX_API_VERSION}).
   *
   * @throws {Error} `Cannot connect to the Docker daemon at unix://PATH: <reason>` when the
   * socket is missing or refuses; a {@linkcode DockerTimeoutError} when the daemon does not
   * answer; an `HttpError` when the daemon answers with an error.
   */
  static async connect(options: DockerClientOptions = {}): Promise<DockerClient> {
    const { socketPath = dockerSocketPath(), signal, timeouts = {} } = options;
    const { callMs = DOCKER_CALL_TIMEOUT_MS, progressMs = DOCKER_PROGRESS_TIMEOUT_MS } = timeouts;
    const http = Deno.createHttpClient({ proxy: { transport: "unix", path: socketPath } });
    const deadline = new Deadline(
      callMs,
      (ms) => new DockerTimeoutError(socketPath, "GET /version", ms),
    );
    const combined = signal ? AbortSignal.any([signal, deadline.signal]) : deadline.signal;
    try {
      let response: Response;
      try {
        response = await fetch("http://docker/version", { client: http, signal: combined });
      } catch (error) {
        if (deadline.signal.aborted) throw deadline.signal.reason;
        if (signal?.aborted) throw error;
        throw connectionError(socketPath, error);
      }
      let info: { ApiVersion?: string; MinAPIVersion?: string };
      try {
        if (!response.ok) throw await responseError(response, "Cannot read the daemon version");
        info = JSON.parse(
          decoder.decode(await readCappedBody(response.body, MAX_DOCKER_ERROR_BYTES)),
        );
      } catch (error) {
        if (deadline.signal.aborted) throw deadline.signal.reason;
        throw error;
      }
      const daemonVersion = info.ApiVersion ?? MIN_API_VERSION;
      if (compareApiVersions(daemonVersion, MIN_API_VERSION) < 0) {
        throw new Error(
          `Cannot use the Docker daemon at unix://${socketPath}: its API version ` +
            `${daemonVersion} is older than ${MIN_API_VERSION}`,
        );
      }
      const version = compareApiVersions(daemonVersion, MAX_API_VERSION) < 0
        ? daemonVersion
        : MAX_API_VERSION;
      return new DockerClient(socketPath, version, http, { callMs, progressMs });
    } catch (error) {
      http.close();
      throw error;
    } finally {
      deadline.clear();
    }
  }

  /** Closes the HTTP client; idempotent. Hijacked streams are owned by their callers. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#http.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  // ---- plain requests ------------------------------------------------------------------

  /**
   * Sends one request and hands its answer to `read`, all within the call deadline (which
   * `read` may extend for progress streams); a daemon that does not answer in time gives a
   * {@linkcode DockerTimeoutError}.
   */
  async #call<T>(
    method: string,
    path: string,
    options: RequestOptions,
    read: (response: Response, deadline: Deadline) => Promise<T>,
  ): Promise<T> {
    const { query, body, rawBody, headers = {}, signal, timeoutMs = this.#callMs } = options;
    const url = `http://docker/v${this.apiVersion}${path}${buildQuery(query)}`;
    const deadline = new Deadline(
      timeoutMs,
      (ms) => new DockerTimeoutError(this.socketPath, `${method} ${path}`, ms),
    );
    const init: RequestInit & { client: Deno.HttpClient } = {
      method,
      client: this.#http,
      headers: body !== undefined ? { "Content-Type": "application/json", ...headers } : headers,
      body: body !== undefined ? JSON.stringify(body) : rawBody,
      signal: signal ? AbortSignal.any([signal, deadline.signal]) : deadline.signal,
    };
    try {
      let response: Response;
      try {
        response = await fetch(url, init);
      } catch (error) {
        if (deadline.signal.aborted) throw deadline.signal.reason;
        if (signal?.aborted) throw error;
        throw connectionError(this.socketPath, error);
      }
      try {
        return await read(response, deadline);
      } catch (error) {
        await response.body?.cancel().catch(() => {});
        if (deadline.signal.aborted) throw deadline.signal.reason;
        throw error;
      }
    } finally {
      deadline.clear();
    }
  }

  /** Sends a request; throws the daemon's error for a non-2xx answer, else parses its JSON. */
  #json<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    return this.#call(method, path, options, async (response) => {
      if (!response.ok) throw await responseError(response, `Cannot ${method} ${path}`);
      return JSON.parse(
        decoder.decode(await readCappedBody(response.body, MAX_DOCKER_ANSWER_BYTES)),
      ) as T;
    });
  }

  /** Sends a request; throws the daemon's error for a non-2xx answer, else drops the body. */
  #discard(method: string, path: string, options: RequestOptions = {}): Promise<void> {
    return this.#call(method, path, options, async (response) => {
      if (!response.ok) throw await responseError(response, `Cannot ${method} ${path}`);
      await response.body?.cancel();
    });
  }

  /**
   * Sends a request whose answer is a progress stream and reads it to its end, reporting
   * plain lines; the deadline restarts with each message. Throws a stream error.
   */
  #transfer(
    method: string,
    path: string,
    options: RequestOptions,
    onLine?: (line: string) => void,
  ): Promise<void> {
    return this.#call(method, path, options, async (response, deadline) => {
      if (!response.ok) throw await responseError(response, `Cannot ${method} ${path}`);
      if (!response.body) return;
      deadline.restart(this.#progressMs);
      for await (const line of readLines(response.body)) {
        deadline.restart(this.#progressMs);
        let message: ProgressMessage;
        try {
          message = JSON.parse(line) as ProgressMessage;
        } catch {
          onLine?.(line);
          continue;
        }
        if (message.error !== undefined || message.errorDetail?.message !== undefined) {
          throw new Error(message.errorDetail?.message ?? message.error ?? "unknown error");
        }
        const text = progressLine(message);
        if (text !== undefined) onLine?.(text);
      }
    });
  }

  /** `GET /version`: the daemon's version details. */
  async version(): Promise<{ Version: string; ApiVersion: string; Os: string }> {
    return await this.#json("GET", "/version");
  }

  // ---- registries and images -----------------------------------------------------------

  /**
   * `POST /auth`: checks credentials against a registry as `docker login` does.
   *
   * @returns the daemon's status line, e.g. `Login Succeeded`.
   * @throws {HttpError} with the daemon's message when the registry refuses them.
   */
  async checkAuth(auth: RegistryAuth, signal?: AbortSignal): Promise<string> {
    const result = await this.#json<{ Status?: string }>("POST", "/auth", {
      body: { username: auth.username, password: auth.password, serveraddress: auth.serveraddress },
      signal,
    });
    return result.Status ?? "Login Succeeded";
  }

  /** `GET /images/{name}/json`; `undefined` when the image is not present. */
  inspectImage(reference: string): Promise<ImageInspect | undefined> {
    return this.#inspect<ImageInspect>(`/images/${encodeURIComponent(reference)}/json`, "image");
  }

  /** `GET path`: the parsed answer, `undefined` for a 404. */
  #inspect<T>(path: string, what: string): Promise<T | undefined> {
    return this.#call("GET", path, {}, async (response) => {
      if (response.status === 404) {
        await response.body?.cancel();
        return undefined;
      }
      if (!response.ok) throw await responseError(response, `Cannot inspect ${what}`);
      return JSON.parse(
        decoder.decode(await readCappedBody(response.body, MAX_DOCKER_ANSWER_BYTES)),
      ) as T;
    });
  }

  /**
   * `POST /images/create?fromImage=...`: pulls one image, reporting progress as plain lines.
   *
   * @throws {HttpError} when the daemon refuses the pull; {Error} with the daemon's message
   * when the pull fails midway (unknown image, bad credentials, ...).
   */
  async pullImage(reference: string, options: ImageTransferOptions = {}): Promise<void> {
    const { auth, onLine, signal } = options;
    const { repository, tag } = parseImageReference(reference);
    await this.#transfer("POST", "/images/create", {
      query: { fromImage: repository, tag },
      headers: auth ? { "X-Registry-Auth": encodeRegistryAuth(auth) } : {},
      signal,
    }, onLine);
  }

  /** `POST /images/{name}/push`: pushes one tag, reporting progress as plain lines. */
  async pushImage(reference: string, options: ImageTransferOptions = {}): Promise<void> {
    const { auth, onLine, signal } = options;
    const { repository, tag } = parseImageReference(reference);
    await this.#transfer("POST", `/images/${encodeURIComponent(repository)}/push`, {
      query: { tag },
      // The daemon wants the header even for anonymous pushes.
      headers: { "X-Registry-Auth": encodeRegistryAuth(auth ?? emptyAuth) },
      signal,
    }, onLine);
  }

  /** `POST /images/{name}/tag`: adds the tag `target` to image `source`. */
  async tagImage(source: string, target: string): Promise<void> {
    const { repository, tag } = parseImageReference(target);
    await this.#discard("POST", `/images/${encodeURIComponent(source)}/tag`, {
      query: { repo: repository, tag },
    });
  }

  /** `DELETE /images/{name}`: untags (and removes when unused); a missing image is fine. */
  async removeImage(reference: string, options: { force?: boolean } = {}): Promise<void> {
    await this.#call("DELETE", `/images/${encodeURIComponent(reference)}`, {
      query: { force: options.force ?? false },
    }, async (response) => {
      if (!response.ok && response.status !== 404) {
        throw await responseError(response, "Cannot remove image");
      }
      await response.body?.cancel();
    });
  }

  /**
   * `POST /images/create?fromSrc=-`: imports a root filesystem tarball as image `reference`
   * (`docker import`), with Dockerfile `changes` such as `CMD ["bash"]`.
   */
  async importImage(
    tarball: ReadableStream<Uint8Array>,
    reference: string,
    options: { changes?: readonly string[] } = {},
  ): Promise<void> {
    const { repository, tag } = parseImageReference(reference);
    const params = new URLSearchParams({ fromSrc: "-", repo: repository, tag });
    for (const change of options.changes ?? []) params.append("changes", change);
    await this.#transfer("POST", `/images/create?${params}`, {
      rawBody: tarball,
      headers: { "Content-Type": "application/x-tar" },
    });
  }

  // ---- networks ------------------------------------------------------------------------

  /** `POST /networks/create`: a bridge network; returns its id. */
  async createNetwork(
    name: string,
    options: { labels?: Readonly<Record<string, string>> } = {},
  ): Promise<string> {
    const result = await this.#json<{ Id: string }>("POST", "/networks/create", {
      body: { Name: name, Driver: "bridge", CheckDuplicate: true, Labels: options.labels ?? {} },
    });
    return result.Id;
  }

  /** `GET /networks`, optionally filtered (e.g. `{ label: ["semaphore-agent.job"] }`). */
  async listNetworks(filters?: DockerFilters): Promise<NetworkSummary[]> {
    return await this.#json("GET", "/networks", {
      query: { filters: filters ? JSON.stringify(filters) : undefined },
    });
  }

  /** `DELETE /networks/{id}`; a network that is already gone is fine. */
  async removeNetwork(id: string): Promise<void> {
    await this.#call("DELETE", `/networks/${encodeURIComponent(id)}`, {}, async (response) => {
      await response.body?.cancel();
      if (!response.ok && response.status !== 404) {
        throw new HttpError(`Cannot remove network ${id}: HTTP ${response.status}`, {
          status: response.status,
        });
      }
    });
  }

  // ---- containers ----------------------------------------------------------------------

  /** `POST /containers/create?name=...`; returns the new container's id. */
  async createContainer(name: string | undefined, config: ContainerConfig): Promise<string> {
    const result = await this.#json<{ Id: string }>("POST", "/containers/create", {
      query: { name },
      body: config,
    });
    return result.Id;
  }

  /** `POST /containers/{id}/start`. */
  async startContainer(id: string): Promise<void> {
    await this.#discard("POST", `/containers/${encodeURIComponent(id)}/start`);
  }

  /** `POST /containers/{id}/kill`; a container that is gone or not running is fine. */
  async killContainer(id: string, signal = "SIGKILL"): Promise<void> {
    await this.#call("POST", `/containers/${encodeURIComponent(id)}/kill`, {
      query: { signal },
    }, async (response) => {
      await response.body?.cancel();
    });
  }

  /**
   * `POST /containers/{id}/wait`: resolves with the exit status once the container is not
   * running (`not-running`) or after its next exit (`next-exit`).
   */
  async waitContainer(
    id: string,
    options: { condition?: "not-running" | "next-exit" | "removed"; signal?: AbortSignal } = {},
  ): Promise<number> {
    const result = await this.#json<{ StatusCode: number }>(
      "POST",
      `/containers/${encodeURIComponent(id)}/wait`,
      // It waits for the container to exit, which takes as long as the job: no deadline.
      {
        query: { condition: options.condition ?? "not-running" },
        signal: options.signal,
        timeoutMs: Infinity,
      },
    );
    return result.StatusCode;
  }

  /** `GET /containers/{id}/json`; `undefined` when there is no such container. */
  inspectContainer(id: string): Promise<ContainerInspect | undefined> {
    return this.#inspect<ContainerInspect>(
      `/containers/${encodeURIComponent(id)}/json`,
      "container",
    );
  }

  /** `GET /containers/json`, all states, optionally filtered by label. */
  async listContainers(filters?: DockerFilters): Promise<ContainerSummary[]> {
    return await this.#json("GET", "/containers/json", {
      query: { all: true, filters: filters ? JSON.stringify(filters) : undefined },
    });
  }

  /**
   * `DELETE /containers/{id}?force=1&v=1`: kills and removes a container and its anonymous
   * volumes; one that is gone or already being removed is fine.
   */
  async removeContainer(id: string): Promise<void> {
    await this.#call("DELETE", `/containers/${encodeURIComponent(id)}`, {
      query: { force: true, v: true },
    }, async (response) => {
      if (response.ok || response.status === 404 || response.status === 409) {
        await response.body?.cancel();
        return;
      }
      throw await responseError(response, "Cannot remove container");
    });
  }

  /** `GET /containers/{id}/logs`: everything a non-TTY container printed, both streams. */
  async containerLogs(id: string): Promise<string> {
    const bytes = await this.#call("GET", `/containers/${encodeURIComponent(id)}/logs`, {
      query: { stdout: true, stderr: true },
    }, async (response) => {
      if (!response.ok) throw await responseError(response, "Cannot read container logs");
      return await readCappedBody(response.body, MAX_DOCKER_ANSWER_BYTES);
    });
    let text = "";
    for await (const frame of demultiplex(new Blob([bytes]).stream())) {
      text += decoder.decode(frame.bytes);
    }
    return text;
  }

  /**
   * `POST /containers/{id}/attach` on a hijacked connection: the container's stdio as one
   * raw stream (TTY containers) or multiplexed frames. Attach before start to miss nothing.
   */
  async attachContainer(
    id: string,
    options: { stdin?: boolean; stdout?: boolean; stderr?: boolean } = {},
  ): Promise<HijackedStream> {
    const { stdin = true, stdout = true, stderr = true } = options;
    const query = buildQuery({ stream: true, stdin, stdout, stderr });
    return await this.#hijack(`/containers/${encodeURIComponent(id)}/attach${query}`);
  }

  /** `POST /containers/{id}/resize`: the TTY size. */
  async resizeContainer(id: string, size: { width: number; height: number }): Promise<void> {
    await this.#discard("POST", `/containers/${encodeURIComponent(id)}/resize`, {
      query: { w: size.width, h: size.height },
    });
  }

  // ---- exec ----------------------------------------------------------------------------

  /** `POST /containers/{id}/exec`; returns the exec id. */
  async createExec(containerId: string, config: ExecConfig): Promise<string> {
    const result = await this.#json<{ Id: string }>(
      "POST",
      `/containers/${encodeURIComponent(containerId)}/exec`,
      {
        body: {
          AttachStdin: false,
          AttachStdout: true,
          AttachStderr: true,
          ...config,
        },
      },
    );
    return result.Id;
  }

  /** `POST /exec/{id}/start` on a hijacked connection: the exec's stdio stream. */
  async startExec(execId: string, options: { tty?: boolean } = {}): Promise<HijackedStream> {
    return await this.#hijack(`/exec/${encodeURIComponent(execId)}/start`, {
      Detach: false,
      Tty: options.tty ?? false,
    });
  }

  /** `GET /exec/{id}/json`. */
  async inspectExec(execId: string): Promise<ExecInspect> {
    return await this.#json("GET", `/exec/${encodeURIComponent(execId)}/json`);
  }

  /**
   * Runs a command in a running container without a TTY and collects its output (for
   * diagnostics and tests).
   */
  async exec(
    containerId: string,
    cmd: readonly string[],
    options: { user?: string; env?: readonly string[] } = {},
  ): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const execId = await this.createExec(containerId, {
      Cmd: cmd,
      User: options.user,
      Env: options.env,
    });
    await using stream = await this.startExec(execId);
    let stdout = "";
    let stderr = "";
    for await (const frame of demultiplex(stream.readable)) {
      if (frame.stream === 2) stderr += decoder.decode(frame.bytes);
      else stdout += decoder.decode(frame.bytes);
    }
    const info = await this.inspectExec(execId);
    return { exitCode: info.ExitCode ?? -1, stdout, stderr };
  }

  // ---- hijacking -----------------------------------------------------------------------

  /**
   * Sends `POST path` with `Connection: Upgrade` / `Upgrade: tcp` on a fresh connection and
   * returns the connection once the daemon answers `101 UPGRADED` (or `200` on old daemons).
   */
  async #hijack(path: string, body?: unknown): Promise<HijackedStream> {
    if (this.#closed) throw new Error("Cannot use the Docker client: it is closed");
    // The connection, the request and the daemon's answer head share one call deadline.
    const deadline = new Deadline(
      this.#callMs,
      (ms) => new DockerTimeoutError(this.socketPath, `POST ${path.split("?")[0]}`, ms),
    );
    const timedOut = new Promise<never>((_, reject) => {
      deadline.signal.addEventListener("abort", () => reject(deadline.signal.reason), {
        once: true,
      });
    });
    timedOut.catch(() => {});
    let conn: Deno.UnixConn | undefined;
    try {
      const connecting = Deno.connect({ transport: "unix", path: this.socketPath });
      // A connection made after the deadline is closed at once.
      connecting.then((late) => deadline.signal.aborted && late.close(), () => {});
      try {
        conn = await Promise.race([connecting, timedOut]);
      } catch (error) {
        if (deadline.signal.aborted) throw error;
        throw connectionError(this.socketPath, error);
      }
      // Closing the connection ends a read or write the daemon never lets finish.
      const open = conn;
      deadline.signal.addEventListener("abort", () => {
        try {
          open.close();
        } catch {
          // already closed
        }
      }, { once: true });
      return await Promise.race([this.#upgrade(conn, path, body), timedOut]);
    } catch (error) {
      try {
        conn?.close();
      } catch {
        // closed above
      }
      throw deadline.signal.aborted ? deadline.signal.reason : error;
    } finally {
      deadline.clear();
    }
  }

  /** Sends the upgrade request on `conn` and reads the daemon's answer head. */
  async #upgrade(conn: Deno.UnixConn, path: string, body?: unknown): Promise<HijackedStream> {
    const payload = body === undefined ? "" : JSON.stringify(body);
    const head = `POST /v${this.apiVersion}${path} HTTP/1.1\r\n` +
      "Host: docker\r\n" +
      "Connection: Upgrade\r\n" +
      "Upgrade: tcp\r\n" +
      (body === undefined ? "" : "Content-Type: application/json\r\n") +
      `Content-Length: ${encoder.encode(payload).length}\r\n\r\n`;
    const request = encoder.encode(head + payload);
    for (let offset = 0; offset < request.length;) {
      offset += await conn.write(request.subarray(offset));
    }
    let received = new Uint8Array(0);
    const chunk = new Uint8Array(16 * 1024);
    let end = -1;
    while ((end = headEnd(received)) === -1) {
      const n = await conn.read(chunk);
      if (n === null) throw new Error(`Cannot hijack ${path}: the daemon closed the connection`);
      const next = new Uint8Array(received.length + n);
      next.set(received);
      next.set(chunk.subarray(0, n), received.length);
      received = next;
      if (received.length > 1024 * 1024) throw new Error(`Cannot hijack ${path}: head too long`);
    }
    const headText = decoder.decode(received.subarray(0, end));
    let rest = received.slice(end + 4);
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(headText)?.[1] ?? 0);
    if (status === 101 || status === 200) return new HijackedStream(conn, rest);
    // An error answer: read its body (Content-Length, else until the daemon closes), capped.
    const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(headText)?.[1] ?? -1);
    while ((length < 0 || rest.length < length) && rest.length <= MAX_DOCKER_ERROR_BYTES) {
      const n = await conn.read(chunk);
      if (n === null) break;
      const next = new Uint8Array(rest.length + n);
      next.set(rest);
      next.set(chunk.subarray(0, n), rest.length);
      rest = next;
    }
    conn.close();
    const response = new Response(rest.subarray(0, length < 0 ? rest.length : length), {
      status: status >= 200 && status <= 599 ? status : 500,
    });
    throw await responseError(response, `Cannot hijack ${path}`);
  }
}

const emptyAuth: RegistryAuth = { username: "", password: "", serveraddress: "" };
