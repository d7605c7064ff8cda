/**
 * `agent serve`: not implemented yet (issue 3).
 *
 * @module
 */

/** Options of `agent serve` as parsed by main.ts (flag names in camelCase). */
export type ServeOptions = Record<string, unknown>;

/** Runs the hosted HTTPS server; resolves with the process exit code. */
export function serve(_options: ServeOptions, _explicit: Record<string, unknown>): Promise<number> {
  console.error("agent: serve is not implemented yet");
  return Promise.resolve(1);
}
