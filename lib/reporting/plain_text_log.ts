/**
 * The plain-text copy of a job log uploaded as an artifact (SEMAPHORE_COMPAT.md §6.6, §6.7):
 * each `cmd_started` becomes its directive and a newline, each `cmd_output` its output verbatim,
 * other events nothing; optionally gzipped. Streams both ways, so memory stays constant. This
 * module reads the {@linkcode EventLog} file; it knows nothing about the artifact CLI.
 *
 * @module
 */

import type { EventLog } from "../engine/event_log.ts";
import { osTempDir } from "../util/temp_dir.ts";

/** Options of {@linkcode writePlainTextLog}. */
export interface PlainTextLogOptions {
  /** Directory of the text file. @default the OS temp dir (`$TMPDIR`, else `/tmp`) */
  readonly dir?: string;
}

/** Bytes of text collected before each write, as the original's 64 KiB buffered writer. */
const BUFFER_SIZE = 64 * 1024;

const encoder = new TextEncoder();

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/** The text one JSON line contributes (§6.6). */
function textOf(line: string): string {
  if (line.length === 0) return "";
  const event = JSON.parse(line) as { event?: unknown; directive?: unknown; output?: unknown };
  if (event.event === "cmd_started" && typeof event.directive === "string") {
    return event.directive + "\n";
  }
  if (event.event === "cmd_output" && typeof event.output === "string") {
    // encodeEvent wrote each INVALID_BYTE marker as `\ufffd`, so this is already U+FFFD.
    return event.output;
  }
  return "";
}

/**
 * Writes the plain-text form of every line the log holds now to a new `<dir>/<random>.txt`
 * (0600, as `Deno.makeTempFile` makes it).
 * A partial file is deleted on failure.
 *
 * @returns the path of the text file
 * @throws {Error} "Cannot read job log ..." if the log file is gone; file-system errors
 * @throws {SyntaxError} if a line of the log is not JSON
 */
export async function writePlainTextLog(
  log: EventLog,
  options: PlainTextLogOptions = {},
): Promise<string> {
  const { dir = osTempDir() } = options;
  const path = await Deno.makeTempFile({ dir, suffix: ".txt" });
  const file = await Deno.open(path, { write: true, truncate: true });
  const reader = log.stream(0).pipeThrough(new TextDecoderStream()).getReader();
  try {
    let rest = "";
    let pending: string[] = [];
    let pendingSize = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const lines = (rest + value).split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) {
        const text = textOf(line);
        if (text.length === 0) continue;
        pending.push(text);
        pendingSize += text.length;
      }
      if (pendingSize >= BUFFER_SIZE) {
        await writeAll(file, encoder.encode(pending.join("")));
        pending = [];
        pendingSize = 0;
      }
    }
    pending.push(textOf(rest));
    await writeAll(file, encoder.encode(pending.join("")));
  } catch (error) {
    await reader.cancel().catch(() => {});
    file.close();
    await Deno.remove(path).catch(() => {});
    throw error;
  }
  file.close();
  return path;
}

/**
 * Gzips `path` into `<path>.gz` and deletes `path` (§6.7). On failure the partial `.gz` is
 * deleted and the original kept.
 *
 * @returns the path of the gzipped file
 * @throws {Error} file-system and compression errors
 */
export async function gzipFile(path: string): Promise<string> {
  const target = `${path}.gz`;
  const source = await Deno.open(path, { read: true });
  let destination: Deno.FsFile;
  try {
    // Private, and never a file another user placed at the name (DECISIONS.md 20).
    destination = await Deno.open(target, { write: true, createNew: true, mode: 0o600 });
  } catch (error) {
    source.close();
    throw error;
  }
  try {
    // pipeTo closes both files when it ends, fails or is aborted.
    await source.readable.pipeThrough(new CompressionStream("gzip")).pipeTo(
      destination.writable,
    );
  } catch (error) {
    await Deno.remove(target).catch(() => {});
    throw error;
  }
  await Deno.remove(path);
  return target;
}
