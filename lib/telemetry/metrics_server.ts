/**
 * The operator's listener of `--metrics-addr`: plain HTTP on its own address, so it can stay on
 * 127.0.0.1 or a private interface. `GET /metrics` (Prometheus text format), `GET /healthz`
 * (200 while the event loop turns), `GET /readyz` (200 when the agent can take work, 503 with a
 * one-line reason otherwise). Nothing else is served.
 *
 * @module
 */

import type { Logger } from "../util/agent_log.ts";
import { errorMessage } from "../util/errors.ts";
import type { AgentMetrics } from "./agent_metrics.ts";
import type { ListenAddress } from "./listen_address.ts";
import { type HttpListener, listenHttp } from "../util/http_listener.ts";

/** Whether the agent can take work now, and if not, why. */
export type Readiness =
  | { readonly ready: true }
  | { readonly ready: false; readonly reason: string };

/** Options of {@linkcode startMetricsServer}. */
export interface MetricsServerOptions {
  readonly address: ListenAddress;
  readonly metrics: AgentMetrics;
  /** Asked at each `GET /readyz`. */
  readonly readiness: () => Readiness;
  readonly logger: Logger;
  /** `/healthz` fails when the event loop has not turned for this long. @default 5000 */
  readonly stallMs?: number;
}

/** A running metrics listener. */
export interface MetricsServer extends AsyncDisposable {
  /** The bound address (the port is real even when 0 was asked). */
  readonly address: ListenAddress;
  /** Closes the listener and stops the heartbeat. */
  close(): Promise<void>;
}

const HEARTBEAT_MS = 250;

/** Tracks whether the event loop turns: a timer that should fire every 250 ms. */
export class Heartbeat {
  #last: number;
  readonly #now: () => number;
  readonly #timer: ReturnType<typeof setInterval>;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
    this.#last = now();
    this.#timer = setInterval(() => this.#last = now(), HEARTBEAT_MS);
    // Deno's timers are numbers (prom-client's Node typings say otherwise); unref: the heartbeat
    // must not keep the agent alive.
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  /** Milliseconds since the heartbeat last ran. */
  silenceMs(): number {
    return Math.max(0, this.#now() - this.#last);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

function text(body: string, status = 200): Response {
  return new Response(`${body}\n`, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store" },
  });
}

/** The request handler, without sockets (tests call it directly). */
export function metricsHandler(
  options: Omit<MetricsServerOptions, "address" | "logger">,
  heartbeat: Heartbeat,
): (request: Request) => Promise<Response> {
  const { metrics, readiness, stallMs = 5000 } = options;
  return async function handleMetricsRequest(request: Request): Promise<Response> {
    const { pathname } = new URL(request.url);
    if (request.method !== "GET" && request.method !== "HEAD") {
      return text("method not allowed", 405);
    }
    switch (pathname) {
      case "/metrics":
        return new Response(await metrics.exposition(), {
          headers: { "Content-Type": metrics.contentType, "Cache-Control": "no-store" },
        });
      case "/healthz": {
        const silence = heartbeat.silenceMs();
        return silence > stallMs
          ? text(`event loop stalled for ${Math.round(silence)} ms`, 503)
          : text("ok");
      }
      case "/readyz": {
        const state = readiness();
        return state.ready ? text("ready") : text(`not ready: ${state.reason}`, 503);
      }
      default:
        return text("not found", 404);
    }
  };
}

/**
 * Starts the metrics listener (with the deadlines and connection cap of every agent listener,
 * `lib/util/http_listener.ts`: a flood of idle connections cannot take the agent down).
 *
 * @throws {Error} `Cannot listen for metrics on HOST:PORT: <reason>` when the address is taken.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { address, logger } = options;
  const heartbeat = new Heartbeat();
  options.metrics.watchReadiness(() => options.readiness().ready);
  const handler = metricsHandler(options, heartbeat);
  let server: HttpListener;
  try {
    server = await listenHttp({
      hostname: address.hostname,
      port: address.port,
      logger,
      handler: async (request) => {
        try {
          return await handler(request);
        } catch (error) {
          logger.error(`Metrics request failed: ${errorMessage(error)}`);
          return text("internal error", 500);
        }
      },
    });
  } catch (error) {
    heartbeat.stop();
    throw new Error(
      `Cannot listen for metrics on ${address.hostname}:${address.port}: ${errorMessage(error)}`,
    );
  }
  const bound = { hostname: server.addr.hostname, port: server.addr.port };
  logger.info(`Serving metrics on http://${bound.hostname}:${bound.port}/metrics`);
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      heartbeat.stop();
      options.metrics.close();
      await server.shutdown(1000).catch(() => {});
    })();
  return { address: bound, close, [Symbol.asyncDispose]: close };
}
