/**
 * Counts what a job does from the events it writes (job started and finished, commands, output
 * bytes), so neither the engine nor the executors know about Prometheus.
 *
 * @module
 */

import type { EventSink, JobEvent } from "../engine/events.ts";
import type { AgentMetrics } from "./agent_metrics.ts";

const scratch = new Uint8Array(1 << 16);
const encoder = new TextEncoder();

/** The UTF-8 size of `text`, counted natively into a reused buffer (no allocation per chunk). */
export function utf8Length(text: string): number {
  let bytes = 0;
  let rest = text;
  for (;;) {
    const { read, written } = encoder.encodeInto(rest, scratch);
    bytes += written;
    if (read >= rest.length) return bytes;
    rest = rest.slice(read);
  }
}

/** Wraps `sink` so that every event also updates `metrics`. */
export function observedSink(sink: EventSink, metrics: AgentMetrics): EventSink {
  let startedAt: number | undefined;
  return {
    write(event: JobEvent): void {
      sink.write(event);
      switch (event.event) {
        case "job_started":
          startedAt = performance.now();
          metrics.jobStarted();
          break;
        case "cmd_started":
          metrics.commandStarted();
          break;
        case "cmd_output":
          metrics.output(utf8Length(event.output));
          break;
        case "job_finished":
          metrics.jobFinished(
            event.result,
            startedAt === undefined ? 0 : (performance.now() - startedAt) / 1000,
          );
          break;
      }
    },
    ready: () => sink.ready?.(),
  };
}
