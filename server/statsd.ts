/**
 * A {@linkcode Metrics} that sends StatsD gauges over UDP (SEMAPHORE_COMPAT.md §7.9), named as
 * go-watchman names them: `tagged.<namespace>.<tag1>.<tag2>.<tag3>.<name>`, tags padded to three
 * with `no_tag` and every character outside `[a-zA-Z0-9-_]` in a tag replaced by `_`, e.g.
 * `tagged.agent.prod.semaphoreci_android.no_tag.no_tag.compose.docker.pull.rate:1|g`.
 * Sending never throws and never blocks a job; errors go to the agent log.
 *
 * @module
 */

import { createSocket, type Socket } from "node:dgram";
import type { Metrics } from "../lib/engine/metrics.ts";
import type { Logger } from "../lib/util/agent_log.ts";

/** Options of {@linkcode createStatsdMetrics}. */
export interface StatsdOptions {
  readonly host: string;
  readonly port: number;
  /** Metric prefix. @default "agent.prod" */
  readonly namespace?: string;
  readonly logger: Logger;
}

/** A StatsD client; `close()` releases its socket. */
export interface StatsdMetrics extends Metrics, AsyncDisposable {
  close(): Promise<void>;
}

/** Builds the full metric name of a tagged gauge. */
export function taggedMetricName(
  namespace: string,
  name: string,
  tags: readonly string[],
): string {
  const padded = [...tags.slice(0, 3)];
  while (padded.length < 3) padded.push("no_tag");
  const clean = padded.map((tag) => tag.replace(/[^a-zA-Z0-9\-_]/g, "_"));
  return `tagged.${namespace}.${clean.join(".")}.${name}`;
}

/**
 * Creates the UDP client. The socket is unref'd, so it never keeps the process alive.
 *
 * @throws {RangeError} if `port` is not a port number
 */
export function createStatsdMetrics(options: StatsdOptions): StatsdMetrics {
  const { host, port, namespace = "agent.prod", logger } = options;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`Cannot use StatsD port: ${port} is not a port number`);
  }
  let socket: Socket | undefined = createSocket(host.includes(":") ? "udp6" : "udp4");
  socket.on("error", (error) => logger.error(`StatsD error: ${error.message}`));
  socket.unref();
  const encoder = new TextEncoder();
  let pending = 0;
  let drained: (() => void) | undefined;
  return {
    gauge(name, value, tags) {
      if (!socket) return;
      const line = `${taggedMetricName(namespace, name, tags)}:${value}|g`;
      pending++;
      try {
        socket.send(encoder.encode(line), port, host, (error) => {
          if (error) logger.error(`Cannot send StatsD metric ${name}: ${error.message}`);
          if (--pending === 0) drained?.();
        });
      } catch (error) {
        pending--;
        logger.error(
          `Cannot send StatsD metric ${name}: ${error instanceof Error ? error.message : error}`,
        );
      }
    },
    async close() {
      const open = socket;
      if (!open) return;
      socket = undefined;
      if (pending > 0) await new Promise<void>((resolve) => drained = resolve);
      await new Promise<void>((resolve) => open.close(() => resolve()));
    },
    [Symbol.asyncDispose]() {
      return this.close();
    },
  };
}
