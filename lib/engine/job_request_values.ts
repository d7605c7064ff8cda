/**
 * Values read out of a parsed job request by name (SEMAPHORE_COMPAT.md §4.2–4.3): a job env var
 * decoded from base64, later duplicates winning as they do when the job's env is exported. It
 * knows nothing of how the request was parsed.
 *
 * @module
 */

import type { EnvVar } from "./job_request_types.ts";
import { decodeBase64Text } from "../util/base64.ts";

/**
 * The decoded value of the last env var named `name` (invalid UTF-8 bytes become U+FFFD);
 * `undefined` when there is none.
 *
 * @throws {Error} `error decoding '<name>'` when its value is not valid base64.
 *
 * @example
 * ```ts
 * import { findJobEnvVar } from "./job_request_values.ts";
 * import assert from "node:assert/strict";
 * const vars = [{ name: "A", value: "MQ==" }, { name: "A", value: "Mg==" }];
 * assert.equal(findJobEnvVar(vars, "A"), "2");
 * assert.equal(findJobEnvVar(vars, "B"), undefined);
 * ```
 */
export function findJobEnvVar(envVars: readonly EnvVar[], name: string): string | undefined {
  const envVar = envVars.findLast((candidate) => candidate.name === name);
  if (envVar === undefined) return undefined;
  try {
    return decodeBase64Text(envVar.value);
  } catch (error) {
    throw new Error(`error decoding '${name}'`, { cause: error });
  }
}
