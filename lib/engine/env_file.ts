/**
 * The job environment as the original writes it (SEMAPHORE_COMPAT.md §9.4): job variables
 * decoded from base64, host variables over them, sorted by name, one `export NAME=VALUE` line
 * each with the value shell-quoted so it is taken literally; and the `Exporting environment
 * variables` step that puts it into a job shell, shared by every executor.
 *
 * @module
 */

import type { EnvVar } from "./job_request_types.ts";
import type { EventSink } from "./events.ts";
import type { Logger } from "../util/agent_log.ts";
import { decodeBase64 } from "../util/base64.ts";
import { concatAll } from "../util/bytes.ts";
import { CommandLog, type CommandRunner } from "./command_log.ts";
import { errorMessage } from "../util/errors.ts";
import { RedactingSink } from "./redactor.ts";

/** A variable with a text value (host variables from the agent's configuration). */
export interface PlainEnvVar {
  readonly name: string;
  readonly value: string;
}

/**
 * A variable as it goes into the env file: its value's exact bytes. A job value that is not
 * UTF-8 reaches the shell unchanged, as the original writes Go's `string(decoded)`.
 */
export interface EnvEntry {
  readonly name: string;
  readonly value: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const QUOTE = 0x27;
const ESCAPED_QUOTE = encoder.encode(`'"'"'`);
/** Bytes a value may consist of to be written without quotes: `[A-Za-z0-9_@%+=:,./-]`. */
const SAFE_BYTES = new Set(encoder.encode(
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@%+=:,./-",
));

/** Quotes value bytes as the original does: `''` when empty, verbatim when safe, else `'…'`. */
export function quoteEnvBytes(value: Uint8Array): Uint8Array {
  if (value.length === 0) return encoder.encode("''");
  if (value.every((b) => SAFE_BYTES.has(b))) return value;
  const out: number[] = [QUOTE];
  for (const b of value) {
    if (b === QUOTE) out.push(...ESCAPED_QUOTE);
    else out.push(b);
  }
  out.push(QUOTE);
  return new Uint8Array(out);
}

/** {@linkcode quoteEnvBytes} for a text value. */
export function quoteEnvValue(value: string): string {
  return decoder.decode(quoteEnvBytes(encoder.encode(value)));
}

/**
 * Decodes the job's variables and lays the host's over them; later duplicates win; the result
 * is sorted by name (byte order, as Go's `sort.Strings`).
 *
 * @throws {Error} `error decoding '<NAME>'` when a job value is not base64.
 */
export function buildEnvironment(
  jobVars: readonly EnvVar[],
  hostVars: readonly PlainEnvVar[] = [],
): EnvEntry[] {
  const merged = new Map<string, Uint8Array>();
  for (const v of jobVars) {
    try {
      merged.set(v.name, decodeBase64(v.value));
    } catch (cause) {
      throw new Error(`error decoding '${v.name}'`, { cause });
    }
  }
  for (const v of hostVars) merged.set(v.name, encoder.encode(v.value));
  return [...merged].map(([name, value]) => ({ name, value })).sort((a, b) =>
    compareBytes(a.name, b.name)
  );
}

function compareBytes(a: string, b: string): number {
  // UTF-16 order equals UTF-8 byte order except around surrogates; names are ASCII in practice.
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The env file: `export NAME=VALUE\n` per variable, in the given order. */
export function formatEnvFile(vars: readonly EnvEntry[]): Uint8Array {
  return concatAll(vars.flatMap((v) => [
    encoder.encode(`export ${v.name}=`),
    quoteEnvBytes(v.value),
    encoder.encode("\n"),
  ]));
}

/** Where and how {@linkcode exportEnvironment} puts the environment into a job shell. */
export interface EnvExportTarget {
  /** Writes the env file on the agent's host; resolves with its path as the shell sees it. */
  writeEnvFile(content: Uint8Array): Promise<string>;
  /** The job shell; `undefined` when it never started (the step then fails). */
  readonly session: CommandRunner | undefined;
  /** Also appends a line that sources the file to `~/.bash_profile`, for SSH debug sessions. */
  readonly appendToProfile: boolean;
  /**
   * That line, for the env file as the shell sees it. @default `source <file>` (the original's
   * line; {@linkcode guardedProfileLine} for a file that others could recreate once removed)
   */
  readonly profileLine?: (envFile: string) => string;
  /** Told why a step failed (the job log only shows the exit code). */
  readonly logger: Logger;
}

/**
 * The `Exporting environment variables` pseudo-command (SEMAPHORE_COMPAT.md §9.4, §10.6):
 * decode (exit 1 on a bad value, no `Exporting` lines), write the env file (exit 255 when it
 * cannot be written), list `Exporting NAME` sorted (and, once per job, the variables named
 * like secrets whose values are too short to redact), then `source` it silently in the shell.
 */
export async function exportEnvironment(
  sink: EventSink,
  vars: { readonly job: readonly EnvVar[]; readonly host: readonly PlainEnvVar[] },
  target: EnvExportTarget,
): Promise<number> {
  const log = CommandLog.start(sink, "Exporting environment variables");
  const note = sink instanceof RedactingSink ? () => sink.redactor.takeShortValueNote() : noNote;
  const exitCode = await exportInto(log, vars, target, note);
  log.finish(exitCode);
  return exitCode;
}

const noNote = () => undefined;

async function exportInto(
  log: CommandLog,
  vars: { readonly job: readonly EnvVar[]; readonly host: readonly PlainEnvVar[] },
  target: EnvExportTarget,
  shortValueNote: () => string | undefined,
): Promise<number> {
  let environment: EnvEntry[];
  try {
    environment = buildEnvironment(vars.job, vars.host);
  } catch (error) {
    target.logger.error(`Cannot export environment variables: ${errorMessage(error)}`);
    return 1;
  }
  let envFile: string;
  try {
    envFile = await target.writeEnvFile(formatEnvFile(environment));
  } catch (error) {
    log.text(`${errorMessage(error)}\n`);
    return 255;
  }
  for (const v of environment) log.text(`Exporting ${v.name}\n`);
  // Once per job, when a variable named like a secret is too short to redact.
  const note = shortValueNote();
  if (note) log.text(note);
  const session = target.session;
  if (!session) return 1;
  let exitCode = await session.run(`source ${quoteEnvValue(envFile)}`, () => {});
  if (exitCode === 0 && target.appendToProfile) {
    const line = target.profileLine?.(envFile) ?? `source ${quoteEnvValue(envFile)}`;
    exitCode = await session.run(`echo ${quoteEnvValue(line)} >> ~/.bash_profile`, () => {});
  }
  return exitCode;
}

/**
 * The `~/.bash_profile` line for an env file on the host: it sources the file only while it is
 * the agent user's own regular file, so once the job's file is gone, a file that another user
 * creates at that path is never run by a login shell (DECISIONS.md 20).
 */
export function guardedProfileLine(envFile: string): string {
  const file = quoteEnvValue(envFile);
  return `if [ -O ${file} ] && [ ! -L ${file} ]; then source ${file}; fi`;
}

/**
 * Removes every line equal to one of `lines` from the profile file `path`, writing it in place
 * (same inode, mode and owner) only when something was removed. A missing file is fine.
 *
 * @throws {Error} when the file cannot be read or written
 */
export async function removeProfileLines(path: string, lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  const unwanted = new Set(lines);
  const kept = text.split("\n").filter((line) => !unwanted.has(line));
  const result = kept.join("\n");
  if (result !== text) await Deno.writeTextFile(path, result);
}
