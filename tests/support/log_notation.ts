/**
 * The notation the `agent start` tests compare job logs in: one entry per event, the outputs of
 * a command merged (`job_started`, `directive: X`, `output: ...`, `exit: N`, `job_finished: R`).
 *
 * @module
 */

/** Renders JSONL event lines (as a hub received them) in the notation above. */
export function simplifyLogLines(lines: readonly string[]): string[] {
  const out: string[] = [];
  for (const line of lines) {
    const event = JSON.parse(line) as Record<string, string | number>;
    switch (event.event) {
      case "job_started":
        out.push("job_started");
        break;
      case "cmd_started":
        out.push(`directive: ${event.directive}`);
        break;
      case "cmd_output":
        if (out.at(-1)?.startsWith("output: ")) out[out.length - 1] += event.output;
        else out.push(`output: ${event.output}`);
        break;
      case "cmd_finished":
        out.push(`exit: ${event.exit_code}`);
        break;
      case "job_finished":
        out.push(`job_finished: ${event.result}`);
        break;
    }
  }
  return out;
}
