/**
 * The job environment as the original writes it (SEMAPHORE_COMPAT.md §9.4): job variables
 * decoded from base64, host variables over them, sorted by name, one `export NAME=VALUE` line
 * each with the value shell-quoted so it is taken literally.
 *
 * @module
 */

import type { EnvVar } from "./job_request_types.ts";
import { decodeBase64 } from "./job_request.ts";

/** A decoded variable. */
export interface PlainEnvVar {
  readonly name: string;
  readonly value: string;
}

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quotes a value as the original does: `''` when empty, verbatim when safe, else in `'…'`. */
export function quoteEnvValue(value: string): string {
  if (value === "") return "''";
  return SAFE.test(value) ? value : `'${value.replaceAll("'", `'"'"'`)}'`;
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
): PlainEnvVar[] {
  const merged = new Map<string, string>();
  const decoder = new TextDecoder();
  for (const v of jobVars) {
    let bytes: Uint8Array;
    try {
      bytes = decodeBase64(v.value);
    } catch (cause) {
      throw new Error(`error decoding '${v.name}'`, { cause });
    }
    merged.set(v.name, decoder.decode(bytes));
  }
  for (const v of hostVars) merged.set(v.name, v.value);
  return [...merged].map(([name, value]) => ({ name, value })).sort((a, b) =>
    compareBytes(a.name, b.name)
  );
}

function compareBytes(a: string, b: string): number {
  // UTF-16 order equals UTF-8 byte order except around surrogates; names are ASCII in practice.
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The env file text: `export NAME=VALUE\n` per variable, in the given order. */
export function formatEnvFile(vars: readonly PlainEnvVar[]): string {
  return vars.map((v) => `export ${v.name}=${quoteEnvValue(v.value)}\n`).join("");
}
