/**
 * `agent start`: not implemented yet (issue 4).
 *
 * @module
 */

/** Runs the self-hosted agent with the flags given on the command line; resolves with the exit code. */
export function startAgent(_explicitFlags: Record<string, unknown>): Promise<number> {
  return Promise.resolve(1);
}
