/**
 * A fake Semaphore control plane for `agent start` tests: a real HTTP server on 127.0.0.1
 * implementing the reference logic of SEMAPHORE_COMPAT.md §8.3 and the mocks of §14.4
 * (register, sync state machine, jobs, refresh, disconnect) plus the log sink of §8.7 (401 for
 * `expired-token`, 422 past a max event count). Faults on demand: go down (the port refuses
 * connections) and come back on the same port, answer slowly, answer 500 every Nth request,
 * reject the first N register / get-job attempts. Tests await its events (`waitUntil...`)
 * instead of sleeping.
 *
 * @module
 */

import { USER_AGENT } from "../../lib/util/version.ts";

/** A job request as the hub stores it (plain JSON). */
export type JobJson = Record<string, unknown>;

/** What a test may give to {@linkcode FakeHub.assignJob}; missing fields get defaults. */
export interface AssignJobOptions {
  /** @default a random id */
  readonly id?: string;
  /** Shell commands (as directives). */
  readonly commands?: readonly string[];
  readonly epilogueAlways?: readonly string[];
  /** Job env vars, plain values (the hub base64-encodes them). */
  readonly envVars?: Readonly<Record<string, string>>;
  /** The job log token. @default "log-token" */
  readonly logToken?: string;
  /** Overrides/extra fields merged into the JSON last. */
  readonly extra?: JobJson;
  /** Serve this text instead of the JSON (malformed requests). */
  readonly rawBody?: string;
}

/** One job known to the hub. */
export interface HubJob {
  readonly id: string;
  readonly body: string;
  /** assigned → running → (stopping) → finished */
  state: "assigned" | "running" | "stopping" | "finished";
  result: string;
  /** Number of `finished-job` syncs seen for it. */
  finishedReports: number;
  logToken: string;
  stopRequested: boolean;
}

/** The log received for one job. */
export interface HubJobLog {
  /** Event lines, without `\n`, in index order. */
  readonly events: string[];
  /** Lines per accepted request. */
  readonly batches: number[];
  /** `start_from` values that did not continue the log exactly (resends, gaps). */
  readonly anomalies: string[];
}

/** One request the hub received. */
export interface HubRequest {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  readonly body: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** Options of {@linkcode FakeHub.start}. */
export interface FakeHubOptions {
  /** @default "reg-token" */
  readonly registrationToken?: string;
  /** The access token returned by register. @default "token" */
  readonly accessToken?: string;
  /** `next_sync_after` of every sync answer, in ms. @default 1000 */
  readonly nextSyncAfterMs?: number;
  /** Requests with another User-Agent get 500. @default USER_AGENT */
  readonly userAgent?: string;
  /** The name returned by register. @default the requested name */
  readonly registeredName?: string;
  /**
   * Answers `finished-job` with `run-job` for the next queued job instead of `wait-for-jobs`
   * (the action table of §8.3 allows it; the reference logic does not do it). @default false
   */
  readonly runJobAfterFinished?: boolean;
  /**
   * Answers `running-job` syncs with `wait-for-jobs` (a hub that does not follow the reference
   * logic): an agent must not drop the result of a job that ended while such a sync was in
   * flight. @default false
   */
  readonly waitForJobsWhileRunning?: boolean;
}

interface Waiter {
  readonly check: () => boolean;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

function b64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  return btoa(String.fromCharCode(...bytes));
}

function json(status: number, value: unknown): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** An answer whose body never ends (1 MiB chunks, made as they are read): a hostile hub. */
export function endlessAnswer(status = 200): Response {
  const chunk = new Uint8Array(1024 * 1024).fill(0x20);
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
  return new Response(body, { status });
}

/** The fake hub. Start it with {@linkcode FakeHub.start}; close it with `close()`. */
export class FakeHub implements AsyncDisposable {
  readonly port: number;
  readonly #options: Required<Omit<FakeHubOptions, "registeredName">> & {
    registeredName?: string;
  };
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #down = false;
  #closed = false;
  /** Aborted when the server goes down or closes: ends slow answers at once. */
  #downSignal = new AbortController();
  readonly #waiters = new Set<Waiter>();

  // Switches.
  #rejectRegister = 0;
  #rejectGetJob = 0;
  #slowMs = 0;
  #failEvery = 0;
  #requestCount = 0;
  #shutdownRequested = false;
  readonly #rawAnswers = new Map<string, () => Response>();
  #maxLogEvents: number | undefined;
  nextSyncAfterMs: number;

  // Observations.
  /** Every request, in order of arrival. */
  readonly requests: HubRequest[] = [];
  /** Bodies of the register requests that were answered 2xx or rejected. */
  readonly registrations: Record<string, unknown>[] = [];
  registered = false;
  disconnected = false;
  /** Sync request bodies, in order. */
  readonly syncs: Record<string, unknown>[] = [];
  /** Sync answers, in order. */
  readonly syncAnswers: Record<string, unknown>[] = [];
  /** The state of the last sync. */
  agentState = "";
  #lastStateChange = Date.now();
  interruptedAt = 0;
  #singleJob = false;
  #idleTimeout = 0;
  #gracePeriod = 0;
  /** Jobs by id, in order of assignment. */
  readonly jobs = new Map<string, HubJob>();
  readonly #queue: string[] = [];
  readonly #logs = new Map<string, HubJobLog>();
  #logHold: Promise<void> | undefined;
  /** Shutdown reasons the hub sent. */
  readonly shutdowns: string[] = [];

  private constructor(port: number, options: FakeHubOptions) {
    this.port = port;
    this.#options = {
      registrationToken: options.registrationToken ?? "reg-token",
      accessToken: options.accessToken ?? "token",
      nextSyncAfterMs: options.nextSyncAfterMs ?? 1000,
      userAgent: options.userAgent ?? USER_AGENT,
      registeredName: options.registeredName,
      runJobAfterFinished: options.runJobAfterFinished ?? false,
      waitForJobsWhileRunning: options.waitForJobsWhileRunning ?? false,
    };
    this.nextSyncAfterMs = this.#options.nextSyncAfterMs;
  }

  /** Starts a hub on a free port of 127.0.0.1. */
  static async start(options: FakeHubOptions = {}): Promise<FakeHub> {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const hub = new FakeHub(port, options);
    await hub.#listen();
    return hub;
  }

  /** `127.0.0.1:<port>`, what `--endpoint` takes (with `--no-https`). */
  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The registration token the hub accepts. */
  get registrationToken(): string {
    return this.#options.registrationToken;
  }

  /** The log sink URL of a job. */
  logUrl(jobId: string): string {
    return `http://127.0.0.1:${this.port}/api/v1/logs/${jobId}`;
  }

  // --- Control ------------------------------------------------------------------------------

  /** Queues a job; the next `waiting-for-jobs` sync gets `run-job` for it. Returns its id. */
  assignJob(options: AssignJobOptions = {}): string {
    const id = options.id ?? `job-${crypto.randomUUID()}`;
    const logToken = options.logToken ?? "log-token";
    const cmds = (list: readonly string[] = []) => list.map((directive) => ({ directive }));
    const request: JobJson = {
      job_id: id,
      executor: "shell",
      compose: { containers: [], image_pull_credentials: [], host_setup_commands: [] },
      commands: cmds(options.commands ?? ["echo hello"]),
      epilogue_always_commands: cmds(options.epilogueAlways),
      epilogue_on_pass_commands: [],
      epilogue_on_fail_commands: [],
      env_vars: Object.entries(options.envVars ?? {}).map(([name, value]) => ({
        name,
        value: b64(value),
      })),
      files: [],
      ssh_public_keys: [],
      callbacks: { finished: "", teardown_finished: "", token: "" },
      logger: { method: "push", url: this.logUrl(id), token: logToken },
      ...options.extra,
    };
    this.jobs.set(id, {
      id,
      body: options.rawBody ?? JSON.stringify(request),
      state: "assigned",
      result: "",
      finishedReports: 0,
      logToken,
      stopRequested: false,
    });
    this.#queue.push(id);
    this.#logs.set(id, { events: [], batches: [], anomalies: [] });
    return id;
  }

  /** Queues a `run-job` for an id the hub does not know (`GET /jobs/<id>` answers 404). */
  assignUnknownJob(id: string): void {
    this.#queue.push(id);
  }

  /** The operator stops a job: the next `running-job` sync gets `stop-job`. */
  stopJob(id: string): void {
    const job = this.jobs.get(id);
    if (job) job.stopRequested = true;
  }

  /** The operator asks the agent to shut down (§8.3 reference logic). */
  scheduleShutdown(): void {
    this.#shutdownRequested = true;
  }

  /** Answers the next `n` register requests with 500. */
  rejectRegisterAttempts(n: number): void {
    this.#rejectRegister = n;
  }

  /** Answers the next `n` get-job requests with 500. */
  rejectGetJobAttempts(n: number): void {
    this.#rejectGetJob = n;
  }

  /** The log sink answers 422 once this many events are stored for a job. */
  setMaxLogEvents(n: number | undefined): void {
    this.#maxLogEvents = n;
  }

  /**
   * Answers every request whose path ends with `pathEnd` (`/sync`, `/refresh`, `/jobs/<id>`)
   * with what `answer()` makes instead of the reference logic (a hostile hub: wrong types,
   * endless bodies); `undefined` goes back to the reference logic.
   */
  setRawAnswer(pathEnd: string, answer: (() => Response) | undefined): void {
    if (answer) this.#rawAnswers.set(pathEnd, answer);
    else this.#rawAnswers.delete(pathEnd);
  }

  /** Delays every answer by `ms` (0 to stop). */
  setSlowness(ms: number): void {
    this.#slowMs = ms;
  }

  /**
   * Holds every log push unanswered until the returned function is called (or the hub goes
   * down or closes), so that a job's events pile up in the agent.
   */
  holdLogPushes(): () => void {
    const held = Promise.withResolvers<void>();
    this.#logHold = held.promise;
    return () => {
      this.#logHold = undefined;
      held.resolve();
    };
  }

  /** Answers every `n`th request with 500 without handling it (0 to stop). */
  setFailEvery(n: number): void {
    this.#failEvery = n;
    this.#requestCount = 0;
  }

  /** Stops listening: connections to the port are refused until {@linkcode comeUp}. */
  async goDown(): Promise<void> {
    if (this.#down || this.#closed) return;
    this.#down = true;
    this.#downSignal.abort();
    const server = this.#server;
    this.#server = undefined;
    await server?.shutdown();
  }

  /** Listens again on the same port. */
  async comeUp(): Promise<void> {
    if (!this.#down || this.#closed) return;
    this.#down = false;
    this.#downSignal = new AbortController();
    await this.#listen();
  }

  // --- Observation --------------------------------------------------------------------------

  /** The log received for a job (events without `\n`). */
  jobLog(id: string): HubJobLog {
    return this.#logs.get(id) ?? { events: [], batches: [], anomalies: [] };
  }

  /** The `event` names of a job's log, in order. */
  eventNames(id: string): string[] {
    return this.jobLog(id).events.map((line) => JSON.parse(line).event);
  }

  /** The result reported in `finished-job` for a job ("" before). */
  jobResult(id: string): string {
    return this.jobs.get(id)?.result ?? "";
  }

  /** Resolves when `check()` holds (re-checked after every request). */
  waitFor(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
    if (check()) return Promise.resolve();
    if (this.#closed) return Promise.reject(new Error(`Cannot wait for ${what}: hub closed`));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        check,
        resolve: () => {
          clearTimeout(waiter.timer);
          this.#waiters.delete(waiter);
          resolve();
        },
        reject: (error) => {
          clearTimeout(waiter.timer);
          this.#waiters.delete(waiter);
          reject(error);
        },
        timer: setTimeout(
          () => waiter.reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`)),
          timeoutMs,
        ),
      };
      this.#waiters.add(waiter);
    });
  }

  /** Resolves once an agent registered. */
  waitUntilRegistered(timeoutMs?: number): Promise<void> {
    return this.waitFor("registration", () => this.registered, timeoutMs);
  }

  /** Resolves once the agent reported `running-job` for the job. */
  waitUntilRunningJob(id: string, timeoutMs?: number): Promise<void> {
    return this.waitFor(
      `job ${id} running`,
      () => this.jobs.get(id)?.state === "running" || this.jobs.get(id)?.state === "finished",
      timeoutMs,
    );
  }

  /** Resolves with the job's result once the agent reported `finished-job` for it. */
  async waitUntilFinishedJob(id: string, timeoutMs?: number): Promise<string> {
    await this.waitFor(
      `job ${id} finished`,
      () => this.jobs.get(id)?.state === "finished" || this.#unknownFinished.has(id),
      timeoutMs,
    );
    return this.jobs.get(id)?.result ?? this.#unknownFinished.get(id) ?? "";
  }

  /** Resolves once the agent disconnected. */
  waitUntilDisconnected(timeoutMs?: number): Promise<void> {
    return this.waitFor("disconnect", () => this.disconnected, timeoutMs);
  }

  /** Resolves once at least `n` log events arrived for the job. */
  waitUntilLogEvents(id: string, n: number, timeoutMs?: number): Promise<void> {
    return this.waitFor(
      `${n} log events of job ${id}`,
      () => this.jobLog(id).events.length >= n,
      timeoutMs,
    );
  }

  /** Resolves once the hub received `n` more requests than now. */
  waitForRequests(n: number, timeoutMs?: number): Promise<void> {
    const target = this.requests.length + n;
    return this.waitFor(`${n} requests`, () => this.requests.length >= target, timeoutMs);
  }

  /** Stops the server and rejects pending waits. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#downSignal.abort();
    for (const waiter of [...this.#waiters]) waiter.reject(new Error("hub closed"));
    const server = this.#server;
    this.#server = undefined;
    await server?.shutdown();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // --- Server -------------------------------------------------------------------------------

  readonly #unknownFinished = new Map<string, string>();

  async #listen(): Promise<void> {
    for (let attempt = 0;; attempt++) {
      try {
        this.#server = Deno.serve(
          { hostname: "127.0.0.1", port: this.port, onListen() {} },
          (req) => this.#handle(req),
        );
        return;
      } catch (error) {
        // The port may linger for a moment after going down.
        if (!(error instanceof Deno.errors.AddrInUse) || attempt >= 50) throw error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  #notify(): void {
    for (const waiter of [...this.#waiters]) {
      if (waiter.check()) waiter.resolve();
    }
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const body = await req.text();
    const headers = Object.fromEntries(req.headers.entries());
    let response: Response;
    if (this.#slowMs > 0) await this.#sleep(this.#slowMs);
    const hold = this.#logHold;
    if (hold && url.pathname.includes("/api/v1/logs/")) {
      const signal = this.#downSignal.signal;
      await Promise.race([
        hold,
        new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true })),
      ]);
    }
    if (this.#down || this.#closed) {
      response = new Response("going down", { status: 503 });
    } else if (req.headers.get("user-agent") !== this.#options.userAgent) {
      response = new Response(`bad user agent ${req.headers.get("user-agent")}`, { status: 500 });
    } else if ([...this.#rawAnswers.keys()].some((end) => url.pathname.endsWith(end))) {
      const end = [...this.#rawAnswers.keys()].find((end) => url.pathname.endsWith(end))!;
      response = this.#rawAnswers.get(end)!();
    } else if (this.#failEvery > 0 && ++this.#requestCount % this.#failEvery === 0) {
      response = new Response("injected failure", { status: 500 });
    } else {
      response = this.#route(req.method, url, body, req.headers);
    }
    this.requests.push({
      method: req.method,
      path: url.pathname + url.search,
      status: response.status,
      body,
      headers,
    });
    queueMicrotask(() => this.#notify());
    return response;
  }

  #sleep(ms: number): Promise<void> {
    const signal = this.#downSignal.signal;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  #route(method: string, url: URL, body: string, headers: Headers): Response {
    const path = url.pathname;
    if (path.includes("/api/v1/logs/")) return this.#logSink(method, url, body, headers);
    const auth = headers.get("authorization") ?? "";
    if (path.includes("/register")) {
      if (auth !== `Token ${this.#options.registrationToken}`) {
        return new Response("bad registration token", { status: 401 });
      }
      return this.#register(body);
    }
    if (auth !== `Token ${this.#options.accessToken}`) {
      return new Response("bad access token", { status: 401 });
    }
    if (path.includes("/sync")) return this.#sync(body);
    if (path.includes("/disconnect")) {
      this.disconnected = true;
      return new Response("", { status: 200 });
    }
    if (path.includes("/jobs/")) return this.#getJob(decodeURIComponent(path.split("/jobs/")[1]));
    if (path.includes("/refresh")) {
      for (const job of this.jobs.values()) {
        if (job.state !== "finished") job.logToken = "new-token";
      }
      return json(200, { token: "new-token" });
    }
    return new Response("not found", { status: 404 });
  }

  #register(body: string): Response {
    const request = JSON.parse(body) as Record<string, unknown>;
    this.registrations.push(request);
    if (this.#rejectRegister > 0) {
      this.#rejectRegister--;
      return new Response("rejected on purpose", { status: 500 });
    }
    this.registered = true;
    this.#singleJob = request.single_job === true;
    this.#idleTimeout = Number(request.idle_timeout ?? 0);
    this.#gracePeriod = Number(request.interruption_grace_period ?? 0);
    this.#lastStateChange = Date.now();
    if (typeof request.job_id === "string" && request.job_id !== "") {
      if (!this.#queue.includes(request.job_id)) this.#queue.unshift(request.job_id);
    }
    return json(200, {
      name: this.#options.registeredName ?? request.name,
      token: this.#options.accessToken,
    });
  }

  #getJob(id: string): Response {
    if (this.#rejectGetJob > 0) {
      this.#rejectGetJob--;
      return new Response("rejected on purpose", { status: 500 });
    }
    const job = this.jobs.get(id);
    if (!job) return new Response("no such job", { status: 404 });
    return new Response(job.body, { status: 200 });
  }

  /** The §8.3 reference logic. */
  #sync(body: string): Response {
    const request = JSON.parse(body) as Record<string, unknown>;
    this.syncs.push(request);
    const state = String(request.state);
    const jobId = String(request.job_id ?? "");
    if (state !== this.agentState) {
      this.agentState = state;
      this.#lastStateChange = Date.now();
    }
    this.interruptedAt = Number(request.interrupted_at ?? 0);
    let answer: Record<string, unknown> = {
      action: "continue",
      next_sync_after: this.nextSyncAfterMs,
    };
    const shutdown = (reason: string) => {
      this.shutdowns.push(reason);
      return { action: "shutdown", shutdown_reason: reason, next_sync_after: this.nextSyncAfterMs };
    };
    const nowSeconds = Math.floor(Date.now() / 1000);
    switch (state) {
      case "waiting-for-jobs": {
        // Rules in order; a later match overrides an earlier one (§8.3).
        if (this.interruptedAt > 0) answer = shutdown("interrupted");
        if (this.#shutdownRequested) answer = shutdown("requested");
        if (
          this.#idleTimeout > 0 &&
          (Date.now() - this.#lastStateChange) / 1000 > this.#idleTimeout
        ) {
          answer = shutdown("idle");
        }
        const next = this.#queue[0];
        if (next !== undefined) {
          if (answer.action === "shutdown") this.shutdowns.pop();
          answer = { action: "run-job", job_id: next, next_sync_after: this.nextSyncAfterMs };
        }
        break;
      }
      case "running-job": {
        const job = this.jobs.get(jobId);
        if (job && job.state === "assigned") job.state = "running";
        if (this.#options.waitForJobsWhileRunning) {
          answer = { action: "wait-for-jobs", next_sync_after: this.nextSyncAfterMs };
        }
        if (this.interruptedAt > 0 && nowSeconds > this.interruptedAt + this.#gracePeriod) {
          answer = { action: "stop-job", job_id: jobId, next_sync_after: this.nextSyncAfterMs };
        }
        if (this.#shutdownRequested || job?.stopRequested) {
          answer = { action: "stop-job", job_id: jobId, next_sync_after: this.nextSyncAfterMs };
        }
        break;
      }
      case "stopping-job": {
        const job = this.jobs.get(jobId);
        if (job && job.state !== "finished") job.state = "stopping";
        break;
      }
      case "finished-job": {
        const result = String(request.job_result ?? "");
        const job = this.jobs.get(jobId);
        if (job) {
          job.state = "finished";
          job.result = result;
          job.finishedReports++;
        } else {
          this.#unknownFinished.set(jobId, result);
        }
        const index = this.#queue.indexOf(jobId);
        if (index >= 0) this.#queue.splice(index, 1);
        if (this.#shutdownRequested) answer = shutdown("requested");
        else if (this.interruptedAt > 0) answer = shutdown("interrupted");
        else if (this.#singleJob) answer = shutdown("job-finished");
        else if (this.#options.runJobAfterFinished && this.#queue[0] !== undefined) {
          answer = {
            action: "run-job",
            job_id: this.#queue[0],
            next_sync_after: this.nextSyncAfterMs,
          };
        } else answer = { action: "wait-for-jobs", next_sync_after: this.nextSyncAfterMs };
        break;
      }
    }
    this.syncAnswers.push(answer);
    return json(200, answer);
  }

  /** The §8.7 log sink (loghub mock), idempotent on `start_from`. */
  #logSink(method: string, url: URL, body: string, headers: Headers): Response {
    if (method !== "POST") return new Response("method not allowed", { status: 405 });
    const id = decodeURIComponent(url.pathname.split("/api/v1/logs/")[1] ?? "");
    const job = this.jobs.get(id);
    let log = this.#logs.get(id);
    if (!log) {
      log = { events: [], batches: [], anomalies: [] };
      this.#logs.set(id, log);
    }
    if (this.#maxLogEvents !== undefined && log.events.length >= this.#maxLogEvents) {
      return new Response("no more space", { status: 422 });
    }
    const auth = headers.get("authorization") ?? "";
    const match = /^Bearer (.+)$/.exec(auth);
    if (!match || match[1] === "expired-token" || (job && match[1] !== job.logToken)) {
      return new Response("unauthorized", { status: 401 });
    }
    const lines = body.split("\n").filter((line) => line !== "");
    const startFrom = Number(url.searchParams.get("start_from") ?? "NaN");
    if (!Number.isInteger(startFrom) || startFrom < 0) {
      log.anomalies.push(`bad start_from ${url.searchParams.get("start_from")}`);
      return new Response("bad start_from", { status: 400 });
    }
    if (startFrom > log.events.length) {
      log.anomalies.push(`gap: start_from ${startFrom} with ${log.events.length} events stored`);
      return new Response("gap", { status: 400 });
    }
    if (startFrom < log.events.length) {
      log.anomalies.push(`resend: start_from ${startFrom} with ${log.events.length} events stored`);
    }
    log.events.splice(startFrom, log.events.length - startFrom, ...lines);
    log.batches.push(lines.length);
    return new Response("", { status: 200 });
  }
}
