/**
 * The self-hosted API client (SEMAPHORE_COMPAT.md §8.1–§8.6): register, sync, get job, refresh
 * the job log token, disconnect. Exact bodies and headers (`Authorization: Token <token>`,
 * `User-Agent`), a 30 s timeout on every request, and the original's retries (register 30×1 s,
 * get job 10×3 s, disconnect 100×1 s; sync and refresh are single attempts). It knows nothing
 * of the sync loop's state machine.
 *
 * @module
 */

import { HttpError } from "../util/errors.ts";
import { USER_AGENT } from "../util/version.ts";
import { delay, formatGoDuration } from "../util/delay.ts";
import {
  HTTP_TIMEOUT_MS,
  MAX_ANSWER_BYTES,
  type TimedAnswer,
  timedFetch,
} from "../util/timed_fetch.ts";
import { MAX_DELAY_MS } from "../util/delay.ts";
import { type Logger, silentLogger } from "../util/agent_log.ts";
import type { JobResult } from "../engine/events.ts";

/**
 * The largest job request the hub may send (`GET /jobs/<id>`): 64 MiB, as `agent serve`
 * accepts in `POST /jobs`. Every other answer is capped at `MAX_ANSWER_BYTES` (1 MiB).
 */
export const MAX_JOB_REQUEST_BYTES = 64 * 1024 * 1024;

/** The state the agent reports at each sync (§8.3). */
export type AgentState =
  | "waiting-for-jobs"
  | "starting-job"
  | "running-job"
  | "stopping-job"
  | "finished-job";

/** `POST /register` body; all fields always present, in this order (§8.2). */
export interface RegisterRequest {
  readonly name: string;
  readonly version: string;
  readonly pid: number;
  readonly os: string;
  readonly arch: string;
  readonly hostname: string;
  readonly single_job: boolean;
  readonly idle_timeout: number;
  readonly interruption_grace_period: number;
  readonly job_id: string;
}

/** `POST /register` answer: the final agent name and the access token. */
export interface RegisterResponse {
  readonly name: string;
  readonly token: string;
}

/** `POST /sync` body; all four keys always present (§8.3). */
export interface SyncRequest {
  readonly state: AgentState;
  readonly job_id: string;
  readonly job_result: JobResult | "";
  readonly interrupted_at: number;
}

/** `POST /sync` answer; missing fields read as empty strings and 0. */
export interface SyncResponse {
  readonly action: string;
  readonly job_id: string;
  readonly shutdown_reason: string;
  readonly next_sync_after: number;
}

/** Attempts and pauses of the retried calls (§3.1.7); tests shorten them. */
export interface HubRetries {
  readonly registerAttempts: number;
  readonly registerIntervalMs: number;
  readonly getJobAttempts: number;
  readonly getJobIntervalMs: number;
  readonly disconnectAttempts: number;
  readonly disconnectIntervalMs: number;
}

/** The original's retry settings. */
export const DEFAULT_HUB_RETRIES: HubRetries = Object.freeze({
  registerAttempts: 30,
  registerIntervalMs: 1000,
  getJobAttempts: 10,
  getJobIntervalMs: 3000,
  disconnectAttempts: 100,
  disconnectIntervalMs: 1000,
});

/** Options of one call. */
export interface CallOptions {
  /** Aborts this call (its requests and retry waits). */
  readonly signal?: AbortSignal;
}

/** Options of {@linkcode HubClient}. */
export interface HubClientOptions {
  /** `<scheme>://<endpoint>/api/v1/self_hosted_agents` (see {@linkcode hubBaseUrl}). */
  readonly baseUrl: string;
  /** The agent-type registration token, used for `/register` only. */
  readonly registrationToken: string;
  /** @default silentLogger */
  readonly logger?: Logger;
  /** @default DEFAULT_HUB_RETRIES */
  readonly retries?: Partial<HubRetries>;
  /** Per-request timeout. @default 30000 */
  readonly timeoutMs?: number;
  /** Aborts requests and retry waits (shutdown). */
  readonly signal?: AbortSignal;
  /**
   * Told of every request's end: the endpoint (`register`, `sync`, `job`, `refresh`,
   * `disconnect`), the HTTP status (undefined when no answer came) and the seconds it took.
   */
  readonly onResponse?: (
    endpoint: HubEndpointName,
    status: number | undefined,
    seconds: number,
  ) => void;
}

/** The endpoints of the self-hosted API the agent calls (§8). */
export type HubEndpointName = "register" | "sync" | "job" | "refresh" | "disconnect";

/** The API base URL for an endpoint such as `myorg.semaphoreci.com` (§8.1). */
export function hubBaseUrl(endpoint: string, noHttps: boolean): string {
  return `${noHttps ? "http" : "https"}://${endpoint}/api/v1/self_hosted_agents`;
}

/** Talks to the self-hosted API; holds the access token once registered. */
export class HubClient {
  readonly #baseUrl: string;
  readonly #registrationToken: string;
  readonly #logger: Logger;
  readonly #retries: HubRetries;
  readonly #timeoutMs: number;
  readonly #signal?: AbortSignal;
  readonly #onResponse: HubClientOptions["onResponse"];
  #accessToken = "";

  constructor(options: HubClientOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.#registrationToken = options.registrationToken;
    this.#logger = options.logger ?? silentLogger;
    this.#retries = { ...DEFAULT_HUB_RETRIES, ...options.retries };
    this.#timeoutMs = options.timeoutMs ?? HTTP_TIMEOUT_MS;
    this.#signal = options.signal;
    this.#onResponse = options.onResponse;
  }

  /** The access token returned by registration (empty before). */
  get accessToken(): string {
    return this.#accessToken;
  }

  /**
   * `POST /register`, retried; keeps the returned access token for later calls.
   *
   * @throws {Error} the last attempt's error once every attempt failed.
   */
  async register(
    request: RegisterRequest,
    options: CallOptions = {},
  ): Promise<RegisterResponse> {
    const url = `${this.#baseUrl}/register`;
    const body: RegisterRequest = {
      name: request.name,
      version: request.version,
      pid: request.pid,
      os: request.os,
      arch: request.arch,
      hostname: request.hostname,
      single_job: request.single_job,
      idle_timeout: request.idle_timeout,
      interruption_grace_period: request.interruption_grace_period,
      job_id: request.job_id,
    };
    const answer = await this.#retry(
      "register",
      this.#retries.registerAttempts,
      this.#retries.registerIntervalMs,
      async () => {
        const res = await this.#send(
          "POST",
          url,
          this.#registrationToken,
          JSON.stringify(body),
          options.signal,
        );
        if (res.status < 200 || res.status > 299) {
          throw new HttpError(
            `register request to ${url} got HTTP ${res.status}: ${res.body}`,
            res,
          );
        }
        const what = `register response from ${url}`;
        const parsed = parseObject(res.body, what);
        return {
          name: optionalField(parsed, "name", "string", what) ?? "",
          token: optionalField(parsed, "token", "string", what) ?? "",
        };
      },
      options.signal,
    );
    this.#accessToken = answer.token;
    return answer;
  }

  /**
   * `POST /sync`, one attempt.
   *
   * @throws {HttpError} on an answer other than 200; {Error} on a network failure or bad JSON.
   */
  async sync(request: SyncRequest, options: CallOptions = {}): Promise<SyncResponse> {
    const url = `${this.#baseUrl}/sync`;
    const body = JSON.stringify({
      state: request.state,
      job_id: request.job_id,
      job_result: request.job_result,
      interrupted_at: request.interrupted_at,
    });
    const res = await this.#send("POST", url, this.#accessToken, body, options.signal);
    if (res.status !== 200) {
      throw new HttpError(`sync request to ${url} got HTTP ${res.status}: ${res.body}`, res);
    }
    const what = `sync response from ${url}`;
    const parsed = parseObject(res.body, what);
    const next = optionalField(parsed, "next_sync_after", "number", what) ?? 0;
    return {
      action: optionalField(parsed, "action", "string", what) ?? "",
      job_id: optionalField(parsed, "job_id", "string", what) ?? "",
      shutdown_reason: optionalField(parsed, "shutdown_reason", "string", what) ?? "",
      // The longest wait the agent takes (2^31 - 1 ms, about 24.8 days).
      next_sync_after: Number.isFinite(next) ? Math.min(next, MAX_DELAY_MS) : 0,
    };
  }

  /**
   * `GET /jobs/<id>`, retried; resolves with the job request JSON text.
   *
   * @throws {Error} the last attempt's error once every attempt failed.
   */
  getJob(jobId: string, options: CallOptions = {}): Promise<string> {
    const url = `${this.#baseUrl}/jobs/${encodeURIComponent(jobId)}`;
    return this.#retry(
      `get job ${jobId}`,
      this.#retries.getJobAttempts,
      this.#retries.getJobIntervalMs,
      async () => {
        const res = await this.#send(
          "GET",
          url,
          this.#accessToken,
          undefined,
          options.signal,
          MAX_JOB_REQUEST_BYTES,
        );
        if (res.status !== 200) {
          throw new HttpError(`failed to describe job, got HTTP ${res.status}`, res);
        }
        return res.body;
      },
      options.signal,
    );
  }

  /**
   * `POST /refresh`, one attempt; resolves with the new job log token.
   *
   * @throws {HttpError} on an answer other than 200; {Error} on a network failure or bad JSON.
   */
  async refreshLogToken(): Promise<string> {
    const url = `${this.#baseUrl}/refresh`;
    const res = await this.#send("POST", url, this.#accessToken);
    if (res.status !== 200) {
      throw new HttpError(`refresh request to ${url} got HTTP ${res.status}: ${res.body}`, res);
    }
    const parsed = parseObject(res.body, `refresh response from ${url}`);
    if (typeof parsed.token !== "string") {
      throw new Error(`Cannot read refresh response from ${url}: no 'token' string`);
    }
    return parsed.token;
  }

  /**
   * `POST /disconnect`, retried.
   *
   * @throws {Error} the last attempt's error once every attempt failed.
   */
  async disconnect(): Promise<void> {
    const url = `${this.#baseUrl}/disconnect`;
    await this.#retry(
      "disconnect",
      this.#retries.disconnectAttempts,
      this.#retries.disconnectIntervalMs,
      async () => {
        const res = await this.#send("POST", url, this.#accessToken);
        if (res.status !== 200) {
          throw new HttpError(
            `error while disconnecting, status: ${res.status}, body: ${res.body}`,
            res,
          );
        }
      },
    );
  }

  async #retry<T>(
    task: string,
    attempts: number,
    intervalMs: number,
    fn: () => Promise<T>,
    callSignal?: AbortSignal,
  ): Promise<T> {
    const signal = this.#combined(callSignal);
    for (let attempt = 1;; attempt++) {
      try {
        return await fn();
      } catch (error) {
        if (attempt >= attempts || signal?.aborted) throw error;
        this.#logger.warn(
          `[${task}] attempt ${attempt} failed: ${(error as Error).message} - ` +
            `retrying in ${formatGoDuration(intervalMs)}`,
        );
        await delay(intervalMs, signal);
        if (signal?.aborted) throw error;
      }
    }
  }

  #combined(callSignal?: AbortSignal): AbortSignal | undefined {
    if (!callSignal) return this.#signal;
    return this.#signal ? AbortSignal.any([this.#signal, callSignal]) : callSignal;
  }

  /** One request with the 30 s timeout. */
  async #send(
    method: string,
    url: string,
    token: string,
    body?: string,
    callSignal?: AbortSignal,
    maxBodyBytes = MAX_ANSWER_BYTES,
  ): Promise<TimedAnswer> {
    const started = performance.now();
    let status: number | undefined;
    try {
      // A byte body keeps fetch from adding a Content-Type the original never sends (§8.1).
      const answer = await timedFetch(url, {
        method,
        headers: { "Authorization": `Token ${token}`, "User-Agent": USER_AGENT },
        body: body === undefined ? undefined : new TextEncoder().encode(body),
      }, { timeoutMs: this.#timeoutMs, signal: this.#combined(callSignal), maxBodyBytes });
      status = answer.status;
      return answer;
    } finally {
      const path = url.slice(this.#baseUrl.length + 1);
      const endpoint = (path.startsWith("jobs/") ? "job" : path) as HubEndpointName;
      this.#onResponse?.(endpoint, status, (performance.now() - started) / 1000);
    }
  }
}

/**
 * A field that may be missing or `null` (Go leaves the zero value then) but, when present,
 * must have the JSON type Go's decoder expects.
 *
 * @throws {Error} `Cannot parse <what>: '<key>' must be a <type>, got <type>`
 */
function optionalField<T extends "string" | "number">(
  object: Record<string, unknown>,
  key: string,
  type: T,
  what: string,
): (T extends "string" ? string : number) | undefined {
  const value = object[key];
  if (value === undefined || value === null) return undefined;
  const actual: string = typeof value;
  if (actual !== type) {
    const got = Array.isArray(value) ? "array" : actual;
    throw new Error(`Cannot parse ${what}: '${key}' must be a ${type}, got ${got}`);
  }
  return value as T extends "string" ? string : number;
}

function parseObject(text: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`Cannot parse ${what}: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`Cannot parse ${what}: not a JSON object`);
  }
  return value as Record<string, unknown>;
}
