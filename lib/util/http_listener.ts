/**
 * The agent's HTTP listener, for `agent serve` (HTTPS, SEMAPHORE_COMPAT.md §7.1, DECISIONS.md
 * 22) and the `--metrics-addr` endpoint (plain HTTP): a `node:https` / `node:http` server in
 * front of a fetch-style handler, because `Deno.serve` has no connection limits at all (an idle
 * TCP connection is kept for ever, and running out of descriptors ends the process). Limits,
 * the original's where it has them:
 *
 * - a TLS handshake and the request head must arrive within 5 s of connecting (Go's
 *   `ReadHeaderTimeout`), slow-loris heads included;
 * - a whole request within 10 s (Go's `ReadTimeout`);
 * - a keep-alive connection idle for 30 s is closed (Go's `IdleTimeout`);
 * - at most {@linkcode connectionCap} connections are open at once, well below the descriptor
 *   limit, so the job, its log and the callbacks always have descriptors left. A connection
 *   past the cap makes room by closing the oldest one that is not in the middle of a request
 *   (idle, still in its handshake or sending its head), so a flood of idle or slow-loris
 *   connections cannot lock out `/is_alive` or a log download.
 *
 * It knows nothing of jobs, routes or modes: it turns each request into a `Request`, passes the
 * handler what `Deno.serve` would (`remoteAddr`, `completed`), and streams the `Response` back
 * with back-pressure.
 *
 * @module
 */

import { createServer as createHttpsServer } from "node:https";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { Socket } from "node:net";
import { Readable } from "node:stream";
import type { Logger } from "./agent_log.ts";
import { errorMessage } from "./errors.ts";
import { after, type Timer } from "./delay.ts";

/** What the handler gets besides the request (the part of `Deno.ServeHandlerInfo` we fill). */
export interface HttpHandlerInfo {
  readonly remoteAddr: Deno.NetAddr;
  /** Settles once the response was delivered (resolves) or abandoned (rejects). */
  readonly completed: Promise<void>;
}

/** A fetch-style handler. */
export type HttpHandler = (request: Request, info: HttpHandlerInfo) => Promise<Response>;

/** The server's time limits, in milliseconds. */
export interface HttpTimeouts {
  /** The TLS handshake, and the request head from the connection's start. @default 5000 */
  readonly headersMs?: number;
  /** A whole request, body included. @default 10000 */
  readonly requestMs?: number;
  /** A keep-alive connection without a request. @default 30000 */
  readonly idleMs?: number;
}

/** Options of {@linkcode listenHttp}. */
export interface HttpListenerOptions {
  readonly hostname: string;
  readonly port: number;
  /** PEM certificate chain and private key: HTTPS. @default none: plain HTTP */
  readonly tls?: { readonly cert: string; readonly key: string };
  readonly handler: HttpHandler;
  readonly logger: Logger;
  /** @default the original's 5 s, 10 s and 30 s */
  readonly timeouts?: HttpTimeouts;
  /** The most connections open at once. @default connectionCap() */
  readonly maxConnections?: number;
}

/** A listening server. */
export interface HttpListener {
  readonly addr: Deno.NetAddr;
  /** Stops listening, closes idle connections, and the rest after `graceMs`. */
  shutdown(graceMs?: number): Promise<void>;
}

/** The most connections whatever the descriptor limit. */
const MAX_CONNECTIONS = 512;

/**
 * The connection cap for a soft descriptor limit: a quarter of it (256 under `ulimit -n 1024`),
 * between 16 and 512, so three quarters stay for the job, its log and the callbacks.
 */
export function connectionCap(openFilesLimit: number | undefined = readOpenFilesLimit()): number {
  if (openFilesLimit === undefined || !Number.isFinite(openFilesLimit)) return MAX_CONNECTIONS;
  return Math.max(16, Math.min(MAX_CONNECTIONS, Math.floor(openFilesLimit / 4)));
}

/** The soft `RLIMIT_NOFILE` from `/proc/self/limits`; `undefined` if unknown or unlimited. */
function readOpenFilesLimit(): number | undefined {
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    const match = /^Max open files\s+(\d+)/m.exec(limits);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

function toRequest(req: IncomingMessage, base: string): Request {
  const target = req.url ?? "";
  // Only origin-form targets; "//x" must stay a path (no `new URL(target, base)`).
  if (!target.startsWith("/")) throw new Error(`unsupported request target '${target}'`);
  const headers = new Headers();
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  }
  const method = req.method ?? "GET";
  const hasBody = method !== "GET" && method !== "HEAD";
  return new Request(base + target, {
    method,
    headers,
    body: hasBody ? Readable.toWeb(req) as ReadableStream<Uint8Array> : undefined,
  });
}

async function writeResponse(response: Response, res: ServerResponse): Promise<void> {
  const headers: string[] = [];
  response.headers.forEach((value, name) => headers.push(name, value));
  res.writeHead(response.status, headers);
  if (response.body === null) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  // A client that goes away cancels the body: a pending read then ends at once.
  let gone = false;
  const onClose = () => {
    gone = true;
    reader.cancel().catch(() => {});
  };
  res.once("close", onClose);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || gone) break;
      // One write at a time, each awaited to its callback (back-pressure: the next chunk is read
      // once this one is on its way). Not `write() === false` then "drain": over TLS, Deno's
      // node:https loses a callback when writes queue up behind a slow socket, so the response
      // never "finish"es: a chunked body never gets its last chunk, and the next request on the
      // keep-alive connection is never answered (a log download hung that way).
      await new Promise<void>((resolve) => {
        const written = () => {
          res.off("close", written);
          resolve();
        };
        res.on("close", written);
        res.write(value, () => written());
      });
    }
    if (!gone) res.end();
  } catch (error) {
    await reader.cancel().catch(() => {});
    res.destroy(error instanceof Error ? error : new Error(String(error)));
  } finally {
    res.off("close", onClose);
  }
}

/** One open connection; `busy` counts its requests being answered. */
interface OpenConnection {
  readonly socket: Socket;
  busy: number;
}

function connectionKey(socket: Socket): string {
  return `${socket.remoteAddress}:${socket.remotePort}`;
}

function handleRequest(
  req: IncomingMessage,
  res: ServerResponse,
  base: string,
  options: HttpListenerOptions,
  connections: Map<string, OpenConnection>,
): void {
  const connection = connections.get(connectionKey(req.socket));
  if (connection) {
    connection.busy++;
    res.once("close", () => connection.busy--);
  }
  const delivered = Promise.withResolvers<void>();
  delivered.promise.catch(() => {}); // the handler may not look at it
  res.once("finish", () => delivered.resolve());
  res.once("close", () => delivered.reject(new Error("the client went away")));
  const remoteAddr: Deno.NetAddr = {
    transport: "tcp",
    hostname: req.socket.remoteAddress ?? "",
    port: req.socket.remotePort ?? 0,
  };
  (async () => {
    let request: Request;
    try {
      request = toRequest(req, base);
    } catch (error) {
      res.writeHead(400, { "Content-Type": "text/plain; charset=utf-8", Connection: "close" });
      res.end(`400 Bad Request: ${errorMessage(error)}\n`);
      return;
    }
    let response: Response;
    try {
      response = await options.handler(request, { remoteAddr, completed: delivered.promise });
    } catch (error) {
      options.logger.error(`Cannot handle request: ${errorMessage(error)}`);
      response = new Response("Internal Server Error\n", { status: 500 });
    }
    await writeResponse(response, res);
  })().catch((error) => {
    options.logger.error(`Cannot answer request: ${errorMessage(error)}`);
    res.destroy();
  });
}

/**
 * The accept backlog of the listening TCP socket on `port` (connections the kernel accepted
 * that the server has not taken yet), from `/proc/net/tcp{,6}`; `undefined` if unknown.
 */
export function listenBacklog(port: number): number | undefined {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  let found: number | undefined;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(table);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // sl local_address rem_address st tx_queue:rx_queue ...; st 0A is LISTEN.
      if (fields.length < 5 || !fields[1].endsWith(hexPort) || fields[3] !== "0A") continue;
      found = (found ?? 0) + Number.parseInt(fields[4].split(":")[1] ?? "0", 16);
    }
  }
  return found;
}

/** Why accepting may have stopped: "Too many open files" when no descriptor is left. */
function descriptorPressure(): string {
  try {
    Deno.openSync("/dev/null").close();
    return "connections wait in the backlog";
  } catch (error) {
    return errorMessage(error);
  }
}

/**
 * Listens on `hostname:port` (with TLS when `tls` is given) and serves `handler` within the
 * limits above. When the
 * process runs out of descriptors the runtime stops accepting for good and says nothing, so a
 * watchdog checks once a second that waiting connections are being taken; if they are not, it
 * logs it, closes the idle connections and listens again on the same port.
 *
 * @throws {Error} when it cannot listen (port in use, bad address, bad key).
 */
export async function listenHttp(options: HttpListenerOptions): Promise<HttpListener> {
  const { hostname, port, tls, logger, timeouts = {} } = options;
  const { headersMs = 5000, requestMs = 10_000, idleMs = 30_000 } = timeouts;
  const maxConnections = options.maxConnections ?? connectionCap();
  let base = "";
  // Open connections, oldest first (a Map keeps insertion order), across listeners.
  const connections = new Map<string, OpenConnection>();
  let evicted = 0;
  let lastReport = -Infinity;
  let accepted = 0;

  const onConnection = (socket: Socket) => {
    accepted++;
    const key = connectionKey(socket);
    connections.set(key, { socket, busy: 0 });
    socket.once("close", () => {
      if (connections.get(key)?.socket === socket) connections.delete(key);
    });
    if (connections.size <= maxConnections) return;
    let victim: [string, OpenConnection] | undefined;
    for (const entry of connections) {
      if (entry[1].busy === 0) {
        victim = entry;
        break;
      }
    }
    victim ??= [key, connections.get(key)!];
    connections.delete(victim[0]);
    victim[1].socket.destroy();
    evicted++;
    if (performance.now() - lastReport >= 60_000) {
      lastReport = performance.now();
      logger.warn(
        `${maxConnections} connections are open (the cap): closing the oldest idle ones ` +
          `(${evicted} so far)`,
      );
    }
  };

  const createListener = (): Server => {
    const limits = {
      // Big log downloads: write ahead up to 1 MiB before waiting for the socket to drain.
      highWaterMark: 1024 * 1024,
      headersTimeout: headersMs,
      requestTimeout: requestMs,
      keepAliveTimeout: idleMs,
      // Node checks the head and request deadlines on this period (30 s by default).
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersMs / 5))),
    };
    const onRequest = (req: IncomingMessage, res: ServerResponse) =>
      handleRequest(req, res, base, options, connections);
    const server: Server = tls
      ? createHttpsServer({ ...tls, handshakeTimeout: headersMs, ...limits }, onRequest)
      : createHttpServer(limits, onRequest);
    server.on("connection", onConnection);
    server.on("tlsClientError", () => {}); // handshake timeouts and scanners: not worth a line
    server.on("error", (error) => logger.error(`HTTP server error: ${errorMessage(error)}`));
    return server;
  };
  const listen = (server: Server, listenPort: number) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(listenPort, hostname, () => {
        server.off("error", reject);
        resolve();
      });
    });

  let server = createListener();
  await listen(server, port);
  const address = server.address();
  const actualPort = typeof address === "object" && address ? address.port : port;
  base = `${tls ? "https" : "http"}://${
    hostname.includes(":") ? `[${hostname}]` : hostname
  }:${actualPort}`;
  const retired: Server[] = [];

  let stalls = 0;
  let relistening = false;
  const watchdog = setInterval(() => {
    if (relistening) return;
    if (accepted > 0) {
      // Connections were taken since the last look: accepting works.
      accepted = 0;
      stalls = 0;
      return;
    }
    const backlog = listenBacklog(actualPort);
    stalls = backlog !== undefined && backlog > 0 ? stalls + 1 : 0;
    if (stalls < 2) return;
    stalls = 0;
    relistening = true;
    logger.error(
      `Cannot accept connections (${descriptorPressure()}; ${backlog} waiting, ` +
        `${connections.size} open): closing idle connections and listening again`,
    );
    for (const [key, connection] of connections) {
      if (connection.busy > 0) continue;
      connections.delete(key);
      connection.socket.destroy();
    }
    // The old server keeps answering its busy connections; the new one takes new ones.
    server.close();
    retired.push(server);
    server = createListener();
    listen(server, actualPort).catch((error) => {
      logger.error(`Cannot listen on ${base} again: ${errorMessage(error)} - retrying`);
    }).finally(() => relistening = false);
  }, 1000);
  Deno.unrefTimer(watchdog);

  return {
    addr: { transport: "tcp", hostname, port: actualPort },
    async shutdown(graceMs = 1000) {
      clearInterval(watchdog);
      const servers = [...retired, server];
      const closed = Promise.all(
        servers.map((one) => new Promise<void>((resolve) => one.close(() => resolve()))),
      );
      for (const one of servers) one.closeIdleConnections();
      let timer: Timer | undefined;
      const cut = new Promise<void>((resolve) => timer = after(graceMs, resolve));
      await Promise.race([closed, cut]);
      timer?.cancel();
      for (const one of servers) one.closeAllConnections();
    },
  };
}
