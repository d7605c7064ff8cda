/**
 * Values read out of a parsed job request as the original's request package reads them
 * (pkg/api/job_request.go, SEMAPHORE_COMPAT.md §4.2–4.3): env var values decoded from base64,
 * env vars and files found by name. It knows nothing of how the request was parsed.
 *
 * @module
 */

import type { EnvVar, JobFile } from "./job_request_types.ts";
import { decodeBase64Text } from "../util/base64.ts";

/** An env var with its value decoded from base64 (same shape as a host env var). */
export interface DecodedEnvVar {
  readonly name: string;
  readonly value: string;
}

/**
 * Decodes the values of env vars (invalid UTF-8 bytes become U+FFFD), keeping order and
 * duplicates (the consumer lets later duplicates win).
 *
 * @throws {Error} `error decoding '<NAME>'` for the first value that is not valid base64.
 */
export function decodeEnvVars(vars: readonly EnvVar[]): DecodedEnvVar[] {
  return vars.map((envVar) => ({ name: envVar.name, value: decodeEnvVarValue(envVar) }));
}

/**
 * The decoded value of the first env var named `name` (`FindEnvVar` of the original).
 *
 * @throws {Error} `no env var '<name>' found`, or `error decoding '<name>'`.
 */
export function findEnvVar(vars: readonly EnvVar[], name: string): string {
  const envVar = vars.find((candidate) => candidate.name === name);
  if (envVar === undefined) throw new Error(`no env var '${name}' found`);
  return decodeEnvVarValue(envVar);
}

/**
 * The first file whose path is `path` (`FindFile` of the original).
 *
 * @throws {Error} `no file '<path>' found`.
 */
export function findFile(files: readonly JobFile[], path: string): JobFile {
  const file = files.find((candidate) => candidate.path === path);
  if (file === undefined) throw new Error(`no file '${path}' found`);
  return file;
}

function decodeEnvVarValue(envVar: EnvVar): string {
  try {
    return decodeBase64Text(envVar.value);
  } catch (error) {
    throw new Error(`error decoding '${envVar.name}'`, { cause: error });
  }
}
