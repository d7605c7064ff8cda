/**
 * Test support for `agent serve` end-to-end tests: leaf certificates made with `openssl`, the
 * agent run as a real process over HTTPS on 127.0.0.1, and a callback receiver. The agent is
 * `deno run -A main.ts` unless `AGENT_BIN` names a binary (e.g. `dist/agent`).
 *
 * @module
 */

import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

/** The e2e secret and token of the original's test suite (SEMAPHORE_COMPAT.md §7.2). */
export const SECRET = "TzRVcspTmxhM9fUkdi1T/0kVXNETCi8UdZ8dLM8va4E";
export const TOKEN =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.gLEycyHdyRRzUpauBxdDFmxT5KoOApFO5MHuvWPgFtY";
export const AUTH = { Authorization: `Bearer ${TOKEN}` } as const;

/** Kinds of private key PEM the agent must accept. */
export type KeyKind = "ec-with-params" | "ec-sec1" | "rsa-pkcs1" | "pkcs8";

async function run(cmd: string, args: string[], cwd?: string): Promise<void> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

/**
 * Writes `server.key` (of `kind`) and a self-signed leaf `server.crt` for 127.0.0.1
 * (`basicConstraints=CA:FALSE`, `subjectAltName=IP:127.0.0.1`) into `dir`.
 */
export async function makeLeafCert(
  dir: string,
  kind: KeyKind = "ec-with-params",
): Promise<{ certPath: string; keyPath: string; cert: string; key: string }> {
  const keyPath = `${dir}/server.key`;
  const certPath = `${dir}/server.crt`;
  switch (kind) {
    case "ec-with-params":
      await run("openssl", ["ecparam", "-name", "secp384r1", "-genkey", "-out", keyPath]);
      break;
    case "ec-sec1":
      await run("openssl", [
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        keyPath,
      ]);
      break;
    case "rsa-pkcs1":
      await run("openssl", ["genrsa", "-traditional", "-out", keyPath, "2048"]);
      break;
    case "pkcs8":
      await run("openssl", [
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        keyPath,
      ]);
      break;
  }
  await run("openssl", [
    "req",
    "-new",
    "-x509",
    "-key",
    keyPath,
    "-out",
    certPath,
    "-days",
    "2",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "basicConstraints=critical,CA:FALSE",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
  ]);
  return {
    certPath,
    keyPath,
    cert: await Deno.readTextFile(certPath),
    key: await Deno.readTextFile(keyPath),
  };
}

/** The command that runs the agent: `$AGENT_BIN` or `deno run -A main.ts`. */
export function agentCommand(): { cmd: string; args: string[] } {
  const bin = Deno.env.get("AGENT_BIN");
  if (bin) return { cmd: bin, args: [] };
  return { cmd: Deno.execPath(), args: ["run", "-A", `${REPO}main.ts`] };
}

/** Runs `agent <args>` to completion. */
export async function runAgent(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { cmd, args: base } = agentCommand();
  const out = await new Deno.Command(cmd, {
    args: [...base, ...args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** An agent process's log lines on stdout, as they come. */
export interface AgentLog {
  /** Every complete line so far. */
  readonly lines: string[];
  /** Resolves once the process exited and its stdout was read to the end. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Everything on stderr, once the process closed it. */
  readonly stderr: Promise<string>;
  /** The first line matching `pattern`, seen or coming; rejects when the process exits first. */
  waitForLine(pattern: RegExp): Promise<string>;
  /** Whether the process exited. */
  exited(): boolean;
}

/** Follows the stdout lines (and collects stderr) of a spawned agent with piped outputs. */
export function followAgentLog(child: Deno.ChildProcess): AgentLog {
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  const pump = (async () => {
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop() ?? "";
      lines.push(...parts);
      for (const w of waiters.splice(0)) w();
    }
    for (const w of waiters.splice(0)) w();
  })();
  const stderr = new Response(child.stderr).text();
  let exited = false;
  const status = child.status.then(async (s) => {
    exited = true;
    await pump;
    return s;
  });
  const waitForLine = async (pattern: RegExp): Promise<string> => {
    for (;;) {
      const line = lines.find((l) => pattern.test(l));
      if (line !== undefined) return line;
      if (exited) {
        throw new Error(
          `agent exited before logging ${pattern}:\n${lines.join("\n")}\n${await stderr}`,
        );
      }
      await Promise.race([new Promise<void>((r) => waiters.push(r)), status]);
    }
  };
  return { lines, status, stderr, waitForLine, exited: () => exited };
}

/** Options of {@linkcode startServeAgent}. */
export interface ServeAgentOptions {
  /** A temp dir: TMPDIR of the agent, and where the certificate goes. */
  readonly dir: string;
  /** Extra flags after `serve`. */
  readonly args?: readonly string[];
  /** Extra environment (HOME, ...). */
  readonly env?: Record<string, string>;
  readonly keyKind?: KeyKind;
  /** Runs the agent under `ulimit -n <n>` (soft and hard). @default the test's own limit */
  readonly openFilesLimit?: number;
}

/** A running `agent serve` on 127.0.0.1 with an HTTPS client that trusts its certificate. */
export interface ServeAgent extends AsyncDisposable {
  readonly base: string;
  readonly port: number;
  readonly client: Deno.HttpClient;
  readonly lines: string[];
  /** The agent's process id. */
  readonly pid: number;
  /** The agent's certificate (PEM), for clients of its own. */
  readonly cert: string;
  /** `fetch` through the agent's client. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** Resolves with the first agent log line matching `pattern` (already seen or coming). */
  waitForLine(pattern: RegExp): Promise<string>;
  /** Sends `signal` and resolves with the exit status. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
  readonly status: Promise<Deno.CommandStatus>;
}

/** Starts `agent serve --port 0 --host 127.0.0.1` with a fresh certificate. */
export async function startServeAgent(options: ServeAgentOptions): Promise<ServeAgent> {
  const { dir, args = [], env = {}, keyKind, openFilesLimit } = options;
  const tls = await makeLeafCert(dir, keyKind);
  const agent = agentCommand();
  // `exec` keeps one process: the limit applies to the agent itself, and its pid is the child's.
  const { cmd, args: base } = openFilesLimit === undefined ? agent : {
    cmd: "bash",
    args: ["-c", `ulimit -n ${openFilesLimit} && exec "$@"`, "agent", agent.cmd, ...agent.args],
  };
  const child = new Deno.Command(cmd, {
    args: [
      ...base,
      "serve",
      "--port",
      "0",
      "--host",
      "127.0.0.1",
      "--tls-cert-path",
      tls.certPath,
      "--tls-key-path",
      tls.keyPath,
      ...args,
    ],
    env: { TMPDIR: dir, SEMAPHORE_AGENT_AUTH_TOKEN_SECRET: SECRET, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const { lines, status, stderr, waitForLine, exited } = followAgentLog(child);
  const listening = await waitForLine(/listening on https:\/\/127\.0\.0\.1:\d+$/);
  const port = Number(listening.match(/:(\d+)$/)![1]);
  const client = Deno.createHttpClient({ caCerts: [tls.cert] });
  const baseUrl = `https://127.0.0.1:${port}`;
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    if (!exited()) {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    }
    return await status;
  };
  return {
    base: baseUrl,
    port,
    client,
    lines,
    pid: child.pid,
    cert: tls.cert,
    fetch: (path, init = {}) => fetch(`${baseUrl}${path}`, { ...init, client }),
    waitForLine,
    stop,
    status,
    async [Symbol.asyncDispose]() {
      // Gracefully first, so the agent stops its job and deletes its files.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((resolve) => timer = setTimeout(resolve, 15_000));
      const stopped = stop("SIGTERM");
      await Promise.race([stopped, late]);
      clearTimeout(timer);
      await stop("SIGKILL");
      await stderr;
      client.close();
    },
  };
}

/** One request the callback receiver got. */
export interface ReceivedCallback {
  readonly path: string;
  readonly body: string;
  readonly headers: Headers;
}

/** A real callback receiver on 127.0.0.1 (plain HTTP). */
export function startCallbackReceiver() {
  const received: ReceivedCallback[] = [];
  const waiters: Array<() => void> = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    received.push({
      path: new URL(req.url).pathname,
      body: await req.text(),
      headers: req.headers,
    });
    for (const w of waiters.splice(0)) w();
    return new Response("ok");
  });
  return {
    base: `http://127.0.0.1:${server.addr.port}`,
    received,
    async waitFor(n: number): Promise<ReceivedCallback[]> {
      while (received.length < n) await new Promise<void>((r) => waiters.push(r));
      return received;
    },
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}
