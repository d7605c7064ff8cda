/**
 * A hostile Docker daemon for deadline tests: a real unix socket server that accepts every
 * connection and then never answers (a wedged `dockerd`), optionally after answering
 * `GET /version` so that a client gets past its version negotiation first. Not a mock of the
 * Engine API: it answers nothing else.
 *
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A running wedged daemon. */
export interface WedgedDocker extends AsyncDisposable {
  /** Its socket. */
  readonly path: string;
  /** Request lines it received (`GET /v1.45/containers/json`, ...), answered or not. */
  readonly requests: string[];
}

/** Starts a wedged daemon on a socket in `dir`; `answerVersion` answers `GET /version`. */
export function startWedgedDocker(
  dir: string,
  options: { answerVersion?: boolean } = {},
): WedgedDocker {
  const path = `${dir}/wedged-docker.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const requests: string[] = [];
  const conns = new Set<Deno.Conn>();
  const serve = async (conn: Deno.Conn) => {
    conns.add(conn);
    const buffer = new Uint8Array(64 * 1024);
    let pending = "";
    let silent = false;
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        if (silent) continue;
        pending += decoder.decode(buffer.subarray(0, n));
        const end = pending.indexOf("\r\n\r\n");
        if (end === -1) continue;
        const line = pending.slice(0, pending.indexOf("\r\n"));
        requests.push(line);
        pending = "";
        if (options.answerVersion && /^GET \S*\/version HTTP/.test(line)) {
          const body = '{"Version":"99.0","ApiVersion":"1.45","Os":"linux"}';
          await conn.write(encoder.encode(
            `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n` +
              `Content-Length: ${body.length}\r\n\r\n${body}`,
          ));
          continue;
        }
        silent = true; // from now on this connection hears but never answers
      }
    } catch {
      // the client went away
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // closed
      }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) serve(conn);
  })().catch(() => {});
  return {
    path,
    requests,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed
        }
      }
      await accepting;
      await Deno.remove(path).catch(() => {});
    },
  };
}
