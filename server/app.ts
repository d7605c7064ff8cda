/**
 * The hosted agent's HTTP API (SEMAPHORE_COMPAT.md §7.1–7.8) as a Hono app that binds no
 * socket: `/is_alive`, `/status`, `POST /jobs`, `GET /jobs/{job_id}/log`, `POST /stop`,
 * `POST /jobs/terminate`, `GET /agent_logs`, with the original's status codes and bodies,
 * gorilla/mux's strict-slash and clean-path 301 redirects, `404 page not found`, an empty 405,
 * and an Apache Common Log Format line per request in the agent log. Jobs, logs and JWTs are
 * the business of the `deps` it is given.
 *
 * @module
 */

import { type Context, type Handler, Hono, type MiddlewareHandler } from "hono";
import type { Logger } from "../lib/util/agent_log.ts";
import { VERSION } from "../lib/util/version.ts";
import { cleanPath } from "../lib/util/clean_path.ts";
import type { JobsApi } from "./job_controller.ts";

/** What {@linkcode createApp} needs. */
export interface AppDeps {
  /** Guards every endpoint but `/is_alive` (see `jwt_auth.ts`). */
  readonly auth: MiddlewareHandler;
  readonly jobs: JobsApi;
  /** The file `GET /agent_logs` serves: `<tmpdir>/agent_log` (§7.3). */
  readonly agentLogPath: string;
  /** Receives the access log lines. */
  readonly logger: Logger;
  /** Largest `POST /jobs` body accepted; larger gets 413. @default 67108864 (64 MiB) */
  readonly maxBodyBytes?: number;
}

/** What Deno.serve passes as the second handler argument (absent under `app.request`). */
type ServeInfo = Partial<Deno.ServeHandlerInfo<Deno.NetAddr>> | undefined;

type AppEnv = { Bindings: ServeInfo };

/** Default `POST /jobs` body limit. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024;

const TEXT_UTF8 = "text/plain; charset=utf-8";

/** An endpoint of the API; one list of them feeds both the routing check and Hono's router. */
interface Route {
  readonly method: "GET" | "POST";
  /** A Hono path; a `:name` segment matches any one segment. */
  readonly path: string;
  /** Served without the JWT check (`/is_alive` only). @default false */
  readonly open?: boolean;
  readonly handler: Handler<AppEnv>;
}

/** The paths a route path template matches, as gorilla/mux matches its templates. */
function pathPattern(path: string): RegExp {
  const segments = path.split("/").map((segment) =>
    segment.startsWith(":") ? "[^/]+" : segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
  );
  return new RegExp(`^${segments.join("/")}$`);
}

const encoder = new TextEncoder();

/** A response with a fixed body and its `Content-Length`. */
function fixed(
  status: number,
  body: string,
  headers: Record<string, string> = {},
): Response {
  const bytes = encoder.encode(body);
  return new Response(bytes, {
    status,
    headers: { ...headers, "Content-Length": String(bytes.length) },
  });
}

/** `http.Error(w, message, status)` followed by `{"message": "<message>"}`, as the original. */
function errorWithMessage(status: number, message: string): Response {
  return fixed(status, `${message}\n{"message": ${JSON.stringify(message)}}`, {
    "Content-Type": TEXT_UTF8,
    "X-Content-Type-Options": "nosniff",
  });
}

function jsonMessage(status: number, message: string, contentType = TEXT_UTF8): Response {
  return fixed(status, `{"message": ${JSON.stringify(message)}}`, { "Content-Type": contentType });
}

/** Go's `path.Clean`, keeping a trailing slash as gorilla/mux's `cleanPath` does. */
export function muxCleanPath(path: string): string {
  if (path === "") return "/";
  const rooted = path.startsWith("/") ? path : `/${path}`;
  const clean = cleanPath(rooted);
  return rooted.endsWith("/") && clean !== "/" ? `${clean}/` : clean;
}

/** Each route path as a pattern, with the methods it answers (in the order of the routes). */
type RouteTable = readonly { readonly pattern: RegExp; readonly methods: readonly string[] }[];

function routeTable(routes: readonly Route[]): RouteTable {
  const byPath = new Map<string, string[]>();
  for (const route of routes) {
    byPath.set(route.path, [...byPath.get(route.path) ?? [], route.method]);
  }
  return [...byPath].map(([path, methods]) => ({ pattern: pathPattern(path), methods }));
}

/** The path and query of a URL as the request line had them. */
function requestUri(url: URL): string {
  return `${url.pathname}${url.search}`;
}

/** Routing as gorilla/mux with `StrictSlash(true)` does it: 301, 404 or 405 before any handler. */
function routing(routes: readonly Route[]): MiddlewareHandler<AppEnv> {
  const table = routeTable(routes);
  const findRoute = (path: string) => table.find((route) => route.pattern.test(path));
  return async function routingMiddleware(c, next) {
    const url = new URL(c.req.url);
    const path = url.pathname;
    const clean = muxCleanPath(path);
    if (clean !== path) {
      return fixed(301, "", { Location: `${clean}${url.search}` });
    }
    const method = c.req.method;
    const route = findRoute(path);
    if (route) {
      if (!route.methods.includes(method)) return fixed(405, "");
      return await next();
    }
    if (path.length > 1 && path.endsWith("/")) {
      const canonical = path.slice(0, -1);
      const stripped = findRoute(canonical);
      if (stripped) {
        if (!stripped.methods.includes(method)) return fixed(405, "");
        const location = `${canonical}${url.search}`;
        // http.Redirect writes a small HTML body for GET and HEAD only.
        const body = method === "GET" || method === "HEAD"
          ? `<a href="${location.replaceAll('"', "&#34;")}">Moved Permanently</a>.\n\n`
          : "";
        return fixed(301, body, {
          Location: location,
          ...(body ? { "Content-Type": "text/html; charset=utf-8" } : {}),
        });
      }
    }
    return fixed(404, "404 page not found\n", {
      "Content-Type": TEXT_UTF8,
      "X-Content-Type-Options": "nosniff",
    });
  };
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** `02/Jan/2006:15:04:05 -0700` in local time, as gorilla/handlers writes it. */
export function formatClfTime(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  const abs = Math.abs(offset);
  return `${pad(date.getDate())}/${MONTHS[date.getMonth()]}/${date.getFullYear()}:` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} ` +
    `${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`;
}

/** One Common Log Format line: `host - - [time] "METHOD URI HTTP/1.1" status size`. */
export function commonLogLine(
  host: string,
  time: Date,
  method: string,
  uri: string,
  status: number,
  size: number,
): string {
  return `${host} - - [${formatClfTime(time)}] "${method} ${uri} HTTP/1.1" ${status} ${size}`;
}

/** Counts the bytes of a body stream without buffering it. */
function countingStream(
  body: ReadableStream<Uint8Array>,
  onEnd: (size: number) => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let size = 0;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    onEnd(size);
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          controller.close();
          end();
          return;
        }
        size += value.byteLength;
        controller.enqueue(value);
      } catch (error) {
        controller.error(error);
        end();
      }
    },
    async cancel(reason) {
      end();
      await reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}

/** Writes one access log line per request once its response is delivered (or abandoned). */
function accessLog(logger: Logger): MiddlewareHandler<AppEnv> {
  return async function accessLogMiddleware(c, next) {
    const time = new Date();
    await next();
    const info = c.env;
    const host = info?.remoteAddr?.hostname ?? "-";
    const uri = requestUri(new URL(c.req.url));
    const response = c.res;
    const write = (size: number) => {
      const line = commonLogLine(host, time, c.req.method, uri, response.status, size);
      if (logger.raw) logger.raw(line);
      else logger.info(line);
    };
    const length = response.headers.get("Content-Length");
    const completed = info?.completed;
    if (response.body === null || length !== null) {
      const size = response.body === null ? 0 : Number(length);
      if (completed) completed.then(() => write(size), () => write(0));
      else write(size);
      return;
    }
    let size = 0;
    const body = countingStream(response.body, (n) => {
      size = n;
      // Without a server (app.request) the line is written when the body ends.
      if (!completed) write(n);
    });
    c.res = new Response(body, response);
    // `completed` settles after the body ended or was abandoned, so `size` is final then.
    completed?.then(() => write(size), () => write(size));
  };
}

async function readBody(
  request: Request,
  limit: number,
): Promise<{ ok: true; text: string } | { ok: false; status: number; message: string }> {
  if (!request.body) return { ok: true, text: "" };
  const declared = Number(request.headers.get("Content-Length") ?? "NaN");
  if (declared > limit) {
    await request.body.cancel().catch(() => {});
    return { ok: false, status: 413, message: `request body exceeds ${limit} bytes` };
  }
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        return { ok: false, status: 413, message: `request body exceeds ${limit} bytes` };
      }
      chunks.push(value);
    }
  } catch (error) {
    return {
      ok: false,
      status: 500,
      message: error instanceof Error ? error.message : String(error),
    };
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return { ok: true, text: new TextDecoder().decode(bytes) };
}

/** `strconv.Atoi` of `start_from`, 0 when missing, invalid or negative (§6.5). */
export function parseStartFrom(value: string | undefined): number {
  if (value === undefined || !/^[+-]?\d+$/.test(value)) return 0;
  const n = Number.parseInt(value, 10);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

async function agentLogs(path: string): Promise<Response> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch {
    return fixed(404, "", { "Content-Type": "text/plain" });
  }
  return new Response(file.readable, { status: 200, headers: { "Content-Type": "text/plain" } });
}

/** Builds the app; `app.fetch(request, info)` is the `Deno.serve` handler. */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const { auth, jobs, agentLogPath, logger, maxBodyBytes = DEFAULT_MAX_BODY_BYTES } = deps;
  const app = new Hono<AppEnv>();
  app.use("*", accessLog(logger));
  const stop = () => {
    jobs.stop();
    return fixed(200, "");
  };
  const routes: readonly Route[] = [
    {
      method: "GET",
      path: "/is_alive",
      open: true,
      handler: () => fixed(200, "yes", { "Content-Type": TEXT_UTF8 }),
    },
    {
      method: "GET",
      path: "/status",
      handler: () =>
        // Go sniffs the type of a body written with Fprint: JSON is text/plain to it.
        fixed(200, JSON.stringify({ state: jobs.state, version: VERSION }), {
          "Content-Type": TEXT_UTF8,
        }),
    },
    {
      method: "POST",
      path: "/jobs",
      handler: async (c) => {
        const body = await readBody(c.req.raw, maxBodyBytes);
        if (!body.ok) {
          logger.error(
            `Failed to read the content of the job, returning ${body.status}: ${body.message}`,
          );
          return fixed(body.status, `${body.message}\n`, {
            "Content-Type": TEXT_UTF8,
            "X-Content-Type-Options": "nosniff",
          });
        }
        const outcome = await jobs.submit(body.text);
        switch (outcome.state) {
          case "ok":
            return jsonMessage(200, "ok");
          case "already-running":
            return jsonMessage(200, "job is already running");
          case "another-job":
            return jsonMessage(422, "another job is already running");
          case "invalid":
            return errorWithMessage(422, outcome.message);
          case "cannot-build":
            return errorWithMessage(500, outcome.message);
        }
      },
    },
    {
      method: "GET",
      path: "/jobs/:job_id/log",
      handler: async (c: Context<AppEnv>) => {
        const jobId = c.req.param("job_id") ?? "";
        const outcome = await jobs.openLog(jobId, parseStartFrom(c.req.query("start_from")), {
          archivator: c.req.header("X-Client-Name") === "archivator",
          delivered: c.env?.completed,
        });
        switch (outcome.state) {
          case "no-job":
            return jsonMessage(404, `job ${jobId} is not running`, "text/plain");
          case "other-job":
            return jsonMessage(403, `job ${jobId} is not running`, "text/plain");
          case "error":
            return errorWithMessage(500, outcome.message);
          case "stream":
            return new Response(outcome.body, {
              headers: {
                "Content-Type": "text/plain",
                ...(outcome.length === undefined
                  ? {}
                  : { "Content-Length": String(outcome.length) }),
              },
            });
        }
      },
    },
    { method: "POST", path: "/stop", handler: stop },
    { method: "POST", path: "/jobs/terminate", handler: stop },
    { method: "GET", path: "/agent_logs", handler: () => agentLogs(agentLogPath) },
  ];

  app.use("*", routing(routes));
  for (const route of routes) {
    if (route.open) app.on(route.method, route.path, route.handler);
    else app.on(route.method, route.path, auth, route.handler);
  }

  app.onError((error) => {
    logger.error(`Cannot handle request: ${error.message}`);
    return fixed(500, "Internal Server Error\n", { "Content-Type": TEXT_UTF8 });
  });
  return app;
}
