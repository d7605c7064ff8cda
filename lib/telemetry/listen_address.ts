/**
 * The `--metrics-addr HOST:PORT` value, parsed without loading the metrics code (so an agent
 * with metrics off pays nothing for them).
 *
 * @module
 */

/** Where the metrics listener binds. */
export interface ListenAddress {
  readonly hostname: string;
  readonly port: number;
}

/**
 * Parses `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (all interfaces).
 *
 * @throws {RangeError} `Cannot use metrics address '<value>': <reason>`.
 */
export function parseListenAddress(value: string): ListenAddress {
  const fail = (reason: string): never => {
    throw new RangeError(`Cannot use metrics address '${value}': ${reason}`);
  };
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/.exec(value.trim());
  if (!match) return fail("expected HOST:PORT, e.g. 127.0.0.1:9090");
  const port = Number(match[3]);
  if (port > 65535) fail("the port must be between 0 and 65535 (0: any free port)");
  const hostname = match[1] ?? (match[2] === "" ? "0.0.0.0" : match[2]);
  return { hostname, port };
}
