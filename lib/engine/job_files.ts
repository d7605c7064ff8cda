/**
 * The `Injecting Files` pseudo-command of both executors (SEMAPHORE_COMPAT.md §9.5, §10.6): per
 * file an `Injecting <path> with file mode <mode>` line, the content decoded from base64 (exit 1
 * with `Failed to decode the content of the file.` when it is not), then the executor's own
 * writing; the first file that fails ends the step, which always ends with `cmd_finished`
 * (DECISIONS.md 5). Where and how a file is written is the executor's business.
 *
 * @module
 */

import type { EventSink } from "./events.ts";
import type { JobFile } from "./job_request_types.ts";
import { decodeBase64 } from "../util/base64.ts";
import { CommandLog } from "./command_log.ts";

/** How {@linkcode injectJobFiles} puts files in place for one executor. */
export interface JobFileTarget {
  /** The path shown in the `Injecting <path> with file mode <mode>` line. */
  shownPath(file: JobFile): string;
  /**
   * Writes one file with its decoded content; failures go to `log` as the original words them.
   * Resolves with the exit code of the step (0 to go on with the next file).
   */
  write(log: CommandLog, file: JobFile, content: Uint8Array): Promise<number>;
}

/** Logs the `Injecting Files` pseudo-command while writing `files` in order; returns its exit code. */
export async function injectJobFiles(
  sink: EventSink,
  files: readonly JobFile[],
  target: JobFileTarget,
): Promise<number> {
  const log = CommandLog.start(sink, "Injecting Files");
  let exitCode = 0;
  for (const file of files) {
    exitCode = await injectJobFile(log, file, target);
    if (exitCode !== 0) break;
  }
  log.finish(exitCode); // also after a decode failure (DECISIONS.md 5)
  return exitCode;
}

async function injectJobFile(log: CommandLog, file: JobFile, target: JobFileTarget) {
  log.text(`Injecting ${target.shownPath(file)} with file mode ${file.mode}\n`);
  let content: Uint8Array;
  try {
    content = decodeBase64(file.content);
  } catch {
    log.text("Failed to decode the content of the file.\n");
    return 1;
  }
  return await target.write(log, file, content);
}
