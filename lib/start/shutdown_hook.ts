/**
 * Why `agent start` shuts down and the operator's shutdown hook (SEMAPHORE_COMPAT.md §8.8): the
 * API's `shutdown_reason` mapped to the value of `SEMAPHORE_AGENT_SHUTDOWN_REASON`, and
 * `bash <path>` run with the agent's environment (less its own `SEMAPHORE_AGENT_*` settings,
 * which hold secrets) plus that variable, its output logged and any failure logged, never fatal.
 *
 * @module
 */

import type { Logger } from "../util/agent_log.ts";
import { scrubbedEnvironment } from "../engine/agent_environment.ts";

/** The reason given to the shutdown hook. */
export type ShutdownReason =
  | "IDLE"
  | "JOB_FINISHED"
  | "REQUESTED"
  | "INTERRUPTED"
  | "UNABLE_TO_SYNC"
  | "UNKNOWN";

/** Maps the API's `shutdown_reason` (`idle`, `job-finished`, ...) to the hook's value. */
export function shutdownReasonFromApi(reason: string): ShutdownReason {
  switch (reason) {
    case "idle":
      return "IDLE";
    case "job-finished":
      return "JOB_FINISHED";
    case "requested":
      return "REQUESTED";
    case "interrupted":
      return "INTERRUPTED";
    default:
      return "UNKNOWN";
  }
}

/**
 * Runs `bash <path>` with `SEMAPHORE_AGENT_SHUTDOWN_REASON=<reason>` and logs its combined
 * output. Never throws.
 */
export async function runShutdownHook(
  path: string,
  reason: ShutdownReason,
  logger: Logger,
): Promise<void> {
  logger.info(`Executing shutdown hook from ${path}`);
  try {
    // `exec bash <path> 2>&1` keeps stdout and stderr in one stream, in order, and $0 = path.
    const output = await new Deno.Command("bash", {
      args: ["-c", 'exec bash "$0" 2>&1', path],
      // The agent's environment less its own SEMAPHORE_AGENT_* settings (the registration
      // token among them: DECISIONS.md 21), plus the reason.
      env: { ...scrubbedEnvironment(), SEMAPHORE_AGENT_SHUTDOWN_REASON: reason },
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    const text = new TextDecoder().decode(output.stdout);
    if (output.success) {
      logger.info(`Output: ${text}`);
    } else {
      logger.error(`Error executing shutdown hook: exit status ${output.code}`);
      logger.error(`Output: ${text}`);
    }
  } catch (error) {
    logger.error(`Error executing shutdown hook: ${(error as Error).message}`);
  }
}
