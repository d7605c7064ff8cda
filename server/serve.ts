/**
 * `agent serve` (SEMAPHORE_COMPAT.md §3.2, §7; DECISIONS.md 15, 16): reads the flags main.ts
 * parsed, sets up the agent log, the JWT secret, TLS, StatsD and the job controller, listens
 * over HTTPS (`lib/util/http_listener.ts`: deadlines and a connection cap), and on SIGINT/SIGTERM stops
 * the job and exits. Configuration
 * errors are thrown as `UsageError`s with exit code 1 for main.ts to print.
 *
 * @module
 */

import { createPrivateKey } from "node:crypto";
import { agentLogFromEnv, type Logger } from "../lib/util/agent_log.ts";
import { errorMessage, UsageError } from "../lib/util/errors.ts";
import { osTempDir } from "../lib/util/temp_dir.ts";
import type { FileInjection } from "../lib/engine/executor.ts";
import { cleanUpAfterCrashedAgents, logJobIsolation } from "../executors/for_job.ts";
import { parseJobLimits } from "../lib/engine/job_limits.ts";
import { createStatsdMetrics, type StatsdMetrics } from "./statsd.ts";
import { VERSION } from "../lib/util/version.ts";
import { createApp } from "./app.ts";
import { redactionPatterns } from "../lib/engine/redaction_patterns.ts";
import { JobController } from "./job_controller.ts";
import { jwtAuth } from "./jwt_auth.ts";
import { type ListenAddress, parseListenAddress } from "../lib/telemetry/listen_address.ts";
import type { MetricsServer } from "../lib/telemetry/metrics_server.ts";
import { type HttpListener, listenHttp } from "../lib/util/http_listener.ts";

/** Options of `agent serve` as commander parses them (camelCase flag names). */
export interface ServeOptions {
  readonly authTokenSecret?: string;
  readonly authTokenSecretFile?: string;
  readonly port?: number;
  readonly host?: string;
  readonly tlsCertPath?: string;
  readonly tlsKeyPath?: string;
  readonly statsdHost?: string;
  readonly statsdPort?: string;
  readonly statsdNamespace?: string;
  readonly callbackRetryAttempts?: number;
  readonly preJobHookPath?: string;
  readonly files?: readonly string[];
  readonly exposeKvmDevice?: boolean;
  /** `--metrics-addr HOST:PORT` (else `SEMAPHORE_AGENT_METRICS_ADDR`). @default off */
  readonly metricsAddr?: string;
  /** `--log-format text|json` (else `SEMAPHORE_AGENT_LOG_FORMAT`). @default "text" */
  readonly logFormat?: string;
  /** `--job-memory-limit` (else `SEMAPHORE_AGENT_JOB_MEMORY_LIMIT`). @default none */
  readonly jobMemoryLimit?: string;
  /** `--job-cpu-limit` (else `SEMAPHORE_AGENT_JOB_CPU_LIMIT`). @default none */
  readonly jobCpuLimit?: string;
  /** `--job-pids-limit` (else `SEMAPHORE_AGENT_JOB_PIDS_LIMIT`). @default none */
  readonly jobPidsLimit?: string;
  /** `--redacted-vars` patterns as given (undefined: the defaults; empty: off). */
  readonly redactedVars?: readonly string[];
}

/** A `SEMAPHORE_AGENT_*` variable; empty counts as unset. */
function agentEnv(name: string): string | undefined {
  return Deno.env.get(`SEMAPHORE_AGENT_${name}`) || undefined;
}

/** The environment variable holding the JWT secret (DECISIONS.md 15). */
export const AUTH_TOKEN_SECRET_ENV = "SEMAPHORE_AGENT_AUTH_TOKEN_SECRET";

/** Default number of attempts of each callback (§3.2). */
const DEFAULT_CALLBACK_ATTEMPTS = 300;

/** How long the job's callbacks may still take after SIGINT/SIGTERM. */
const SHUTDOWN_GRACE_MS = 10_000;

function fatal(message: string, cause?: unknown): UsageError {
  return new UsageError(message, { exitCode: 1, cause });
}

/**
 * The JWT secret: `--auth-token-secret`, else `--auth-token-secret-file` (trailing newlines
 * dropped), else `$SEMAPHORE_AGENT_AUTH_TOKEN_SECRET`. The variable is removed from the
 * environment so that no child process sees it.
 *
 * @throws {UsageError} both flags given, an unreadable file, or no secret (`Auth token is empty`)
 */
export async function resolveAuthTokenSecret(options: ServeOptions): Promise<string> {
  const fromEnv = Deno.env.get(AUTH_TOKEN_SECRET_ENV) ?? "";
  Deno.env.delete(AUTH_TOKEN_SECRET_ENV);
  const { authTokenSecret = "", authTokenSecretFile } = options;
  if (authTokenSecret !== "" && authTokenSecretFile) {
    throw fatal(
      "Cannot choose the auth token secret: give --auth-token-secret or --auth-token-secret-file, not both",
    );
  }
  let secret = authTokenSecret;
  if (secret === "" && authTokenSecretFile) {
    try {
      secret = (await Deno.readTextFile(authTokenSecretFile)).replace(/[\r\n]+$/, "");
    } catch (error) {
      throw fatal(
        `Cannot read --auth-token-secret-file ${authTokenSecretFile}: ${errorMessage(error)}`,
        error,
      );
    }
  }
  if (secret === "") secret = fromEnv;
  if (secret === "") throw fatal("Auth token is empty");
  return secret;
}

/**
 * Parses `--files HOST:CONTAINER` entries.
 *
 * @throws {UsageError} `Error parsing --files: <entry> is not a valid file injection`
 */
export function parseFileInjections(entries: readonly string[]): FileInjection[] {
  return entries.map((entry) => {
    const parts = entry.split(":");
    if (parts.length !== 2) {
      throw fatal(`Error parsing --files: ${entry} is not a valid file injection`);
    }
    return { hostPath: parts[0], destination: parts[1] };
  });
}

/**
 * Reads the certificate and key; keys in SEC1 EC (with or without an `EC PARAMETERS` block),
 * PKCS#1 RSA or PKCS#8 PEM are handed to Deno as PKCS#8.
 *
 * @throws {UsageError} a missing or unreadable file, or a key that is not a PEM private key
 */
export async function loadTls(
  certPath: string,
  keyPath: string,
): Promise<{ cert: string; key: string }> {
  const read = async (flag: string, path: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      throw fatal(`Cannot read ${flag} ${path}: ${errorMessage(error)}`, error);
    }
  };
  const cert = await read("--tls-cert-path", certPath);
  const pem = await read("--tls-key-path", keyPath);
  if (!cert.includes("-----BEGIN CERTIFICATE-----")) {
    throw fatal(`Cannot use --tls-cert-path ${certPath}: no PEM certificate in it`);
  }
  let key: string;
  try {
    key = createPrivateKey(pem).export({ type: "pkcs8", format: "pem" }).toString();
  } catch (error) {
    throw fatal(
      `Cannot use --tls-key-path ${keyPath}: not a PEM private key (${errorMessage(error)})`,
      error,
    );
  }
  return { cert, key };
}

function statsdFrom(options: ServeOptions, logger: Logger): StatsdMetrics | undefined {
  const host = options.statsdHost ?? "";
  const portText = options.statsdPort ?? "";
  if (host === "" || portText === "") return undefined;
  const port = /^\d+$/.test(portText) ? Number(portText) : NaN;
  try {
    const metrics = createStatsdMetrics({
      host,
      port,
      namespace: options.statsdNamespace ?? "agent.prod",
      logger,
    });
    logger.info(`Sending metrics to StatsD at ${host}:${port}`);
    return metrics;
  } catch (error) {
    // The original logs a StatsD failure and runs on without metrics.
    logger.error(`Cannot set up StatsD at ${host}:${portText}: ${errorMessage(error)}`);
    return undefined;
  }
}

/** Resolves with the first SIGINT or SIGTERM; `dispose` removes the listeners. */
function waitForSignal(): { signal: Promise<Deno.Signal>; dispose: () => void } {
  const { promise, resolve } = Promise.withResolvers<Deno.Signal>();
  const handlers = (["SIGINT", "SIGTERM"] as const).map((name) => {
    const handler = () => resolve(name);
    Deno.addSignalListener(name, handler);
    return [name, handler] as const;
  });
  return {
    signal: promise,
    dispose: () => {
      for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
    },
  };
}

/**
 * Runs the hosted HTTPS server until SIGINT or SIGTERM; resolves with the exit code
 * (130 or 143, as a process killed by that signal reports it).
 *
 * @throws {UsageError} (exit code 1) for configuration errors and a failed listen
 */
export async function serve(options: ServeOptions): Promise<number> {
  // The agent log's `job_id` (JSON format) comes from the controller once it exists.
  let activeJobId = (): string | undefined => undefined;
  const logger = agentLogFromEnv({ format: options.logFormat, jobId: () => activeJobId() });
  const metricsAddrText = options.metricsAddr ?? agentEnv("METRICS_ADDR");
  let metricsAddr: ListenAddress | undefined;
  try {
    metricsAddr = metricsAddrText ? parseListenAddress(metricsAddrText) : undefined;
  } catch (error) {
    throw fatal(errorMessage(error));
  }
  let limits;
  try {
    const given = {
      "job-memory-limit": options.jobMemoryLimit,
      "job-cpu-limit": options.jobCpuLimit,
      "job-pids-limit": options.jobPidsLimit,
    };
    const fromEnv = (key: keyof typeof given) => agentEnv(key.toUpperCase().replaceAll("-", "_"));
    limits = parseJobLimits(
      {
        memory: given["job-memory-limit"] ?? fromEnv("job-memory-limit"),
        cpu: given["job-cpu-limit"] ?? fromEnv("job-cpu-limit"),
        pids: given["job-pids-limit"] ?? fromEnv("job-pids-limit"),
      },
      (key) =>
        given[key] !== undefined
          ? `--${key}`
          : `SEMAPHORE_AGENT_${key.toUpperCase().replaceAll("-", "_")}`,
    );
  } catch (error) {
    throw fatal(errorMessage(error));
  }
  let redactedVars: readonly string[];
  try {
    redactedVars = redactionPatterns(options.redactedVars);
  } catch (error) {
    throw new UsageError(`Cannot read --redacted-vars: ${errorMessage(error)}`);
  }
  const secret = await resolveAuthTokenSecret(options);
  const port = options.port ?? 8000;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw fatal(`Cannot listen on port ${port}: not a port number`);
  }
  const host = options.host ?? "0.0.0.0";
  const fileInjections = parseFileInjections(options.files ?? []);
  const tls = await loadTls(
    options.tlsCertPath ?? "server.crt",
    options.tlsKeyPath ?? "server.key",
  );
  await logJobIsolation(logger);
  await cleanUpAfterCrashedAgents(logger);
  const requested = options.callbackRetryAttempts ?? DEFAULT_CALLBACK_ATTEMPTS;
  const callbackRetryAttempts = requested > 0 ? requested : DEFAULT_CALLBACK_ATTEMPTS;

  const metrics = statsdFrom(options, logger);
  // Loaded only when asked for: a server without metrics pays nothing for them.
  const agentMetrics = metricsAddr &&
    new (await import("../lib/telemetry/agent_metrics.ts")).AgentMetrics();
  const jobs = new JobController({
    logger,
    callbackRetryAttempts,
    preJobHookPath: options.preJobHookPath || undefined,
    fileInjections,
    exposeKvmDevice: options.exposeKvmDevice ?? true,
    limits,
    metrics,
    agentMetrics: agentMetrics || undefined,
    redactedVars,
  });
  activeJobId = () => jobs.activeJobId;
  const app = createApp({
    auth: jwtAuth({ secret }),
    jobs,
    agentLogPath: `${osTempDir()}/agent_log`,
    logger,
  });

  const signals = waitForSignal();
  let server: HttpListener;
  try {
    server = await listenHttp({
      hostname: host,
      port,
      tls,
      logger,
      handler: (request, info) => Promise.resolve(app.fetch(request, info)),
    });
  } catch (error) {
    signals.dispose();
    await metrics?.close();
    throw fatal(`Cannot listen on https://${host}:${port}: ${errorMessage(error)}`, error);
  }
  // Metrics listen before the agent says it listens: whoever waits for that line can scrape.
  let shuttingDown = false;
  let metricsServer: MetricsServer | undefined;
  if (metricsAddr && agentMetrics) {
    const { startMetricsServer } = await import("../lib/telemetry/metrics_server.ts");
    try {
      metricsServer = await startMetricsServer({
        address: metricsAddr,
        metrics: agentMetrics,
        logger,
        readiness: () =>
          shuttingDown ? { ready: false, reason: "the agent is shutting down" } : { ready: true },
      });
    } catch (error) {
      signals.dispose();
      await server.shutdown();
      await metrics?.close();
      throw fatal(errorMessage(error), error);
    }
  }

  logger.info(`Agent ${VERSION} listening on https://${host}:${server.addr.port}`);
  logger.info(`Callback retry attempts: ${callbackRetryAttempts}`);
  const signal = await signals.signal;
  signals.dispose();
  logger.info(`Received ${signal} - stopping the job and shutting down`);
  shuttingDown = true;
  await jobs.shutdown(SHUTDOWN_GRACE_MS);
  // Streams still open (a slow log download) must not keep the process up.
  await server.shutdown(1000);
  await metrics?.close();
  await metricsServer?.close();
  logger.info("Agent stopped");
  return signal === "SIGINT" ? 130 : 143;
}
