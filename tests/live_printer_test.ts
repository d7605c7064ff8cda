import assert from "node:assert/strict";
import { createLivePrinter } from "../lib/run/live_printer.ts";
import type { JobEvent } from "../lib/engine/events.ts";

function show(events: readonly JobEvent[]): string {
  let out = "";
  const printer = createLivePrinter({ write: (text) => out += text, now: () => 0 });
  for (const event of events) printer.write(event);
  return out;
}

Deno.test("createLivePrinter() shows output without escape sequences but with colours", () => {
  const directive = "printf '\x1b]0;x\x07'";
  assert.equal(
    show([
      { event: "job_started", timestamp: 1 },
      { event: "cmd_started", timestamp: 1, directive },
      { event: "cmd_output", timestamp: 1, output: "\x1b[31mred\x1b]52;c;" },
      { event: "cmd_output", timestamp: 1, output: "QUFB\x07\x1b[2J\x1b[Hok\n" },
      {
        event: "cmd_finished",
        timestamp: 1,
        directive,
        exit_code: 0,
        started_at: 1,
        finished_at: 1,
      },
      { event: "job_finished", timestamp: 1, result: "passed" },
    ]),
    // The job's colour is reset before the agent's own line.
    "$ printf ''\n\x1b[31mredok\n\x1b[0m✓ exit 0 (0ms)\n\nJob passed in 0ms\n",
  );
});

Deno.test("createLivePrinter() ends a command's unfinished sequence with the command", () => {
  const finished = (directive: string): JobEvent => ({
    event: "cmd_finished",
    timestamp: 1,
    directive,
    exit_code: 0,
    started_at: 1,
    finished_at: 1,
  });
  assert.equal(
    show([
      { event: "cmd_started", timestamp: 1, directive: "a" },
      { event: "cmd_output", timestamp: 1, output: "x\x1b]0;never ended" },
      finished("a"),
      { event: "cmd_started", timestamp: 1, directive: "b" },
      { event: "cmd_output", timestamp: 1, output: "shown\n" },
      finished("b"),
    ]),
    "$ a\nx\n✓ exit 0 (0ms)\n$ b\nshown\n✓ exit 0 (0ms)\n",
  );
});
