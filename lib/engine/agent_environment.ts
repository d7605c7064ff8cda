/**
 * The environment the agent hands to what it runs (job shells, host setup commands, the `aws`
 * and `artifact` CLIs): its own, less its configuration variables `SEMAPHORE_AGENT_*`, which
 * may hold secrets (DECISIONS.md 14, STYLE.md §5.5).
 *
 * @module
 */

/** The prefix of the agent's own configuration variables. */
const AGENT_VARIABLE_PREFIX = "SEMAPHORE_AGENT_";

/**
 * A copy of `env` without the agent's own `SEMAPHORE_AGENT_*` variables.
 *
 * @example
 * ```ts
 * import { scrubbedEnvironment } from "./agent_environment.ts";
 * const env = scrubbedEnvironment({ PATH: "/bin", SEMAPHORE_AGENT_AUTH_TOKEN_SECRET: "s" });
 * console.assert(JSON.stringify(env) === '{"PATH":"/bin"}');
 * ```
 */
export function scrubbedEnvironment(
  env: Readonly<Record<string, string>> = Deno.env.toObject(),
): Record<string, string> {
  const scrubbed: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(AGENT_VARIABLE_PREFIX)) scrubbed[name] = value;
  }
  return scrubbed;
}
