/**
 * Secret values out of a pipeline job's events (DECISIONS.md 24 for `agent run PIPELINE`):
 * an event sink in front of the live view and the `--log-dir` file that replaces every secret
 * value in command output and directives with `[REDACTED]`.
 *
 * This is the pipeline runner's own stop-gap: it sees one event at a time, so a value split
 * across two output events is not caught. The agent-wide redactor (the redaction issue, in
 * lib/engine) replaces it: hook it where {@linkcode redactingSink} is called in
 * `run_pipeline.ts`, fed with `PlannedJob.secretValues`.
 *
 * @module
 */

import type { EventSink, JobEvent } from "../../engine/events.ts";

/** Shorter values are not redacted (they would hide ordinary text). */
export const MIN_SECRET_LENGTH = 4;

const REDACTED = "[REDACTED]";

/** Wraps `sink` so that `values` never reach it; `sink` itself when there is nothing to hide. */
export function redactingSink(sink: EventSink, values: readonly string[]): EventSink {
  const secrets = [...new Set(values.flatMap((v) => v.split("\n")))]
    .map((v) => v.trim())
    .filter((v) => v.length >= MIN_SECRET_LENGTH)
    .sort((a, b) => b.length - a.length);
  if (secrets.length === 0) return sink;
  const hide = (text: string) => secrets.reduce((t, s) => t.replaceAll(s, REDACTED), text);
  return {
    write(event: JobEvent) {
      switch (event.event) {
        case "cmd_output":
          sink.write({ ...event, output: hide(event.output) });
          break;
        case "cmd_started":
          sink.write({ ...event, directive: hide(event.directive) });
          break;
        case "cmd_finished":
          sink.write({ ...event, directive: hide(event.directive) });
          break;
        default:
          sink.write(event);
      }
    },
  };
}
