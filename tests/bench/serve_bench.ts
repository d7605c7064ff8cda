/**
 * `agent serve` benchmarks for `deno task bench` (issue 3, "Benchmarks"), each beside its floor
 * measured in the same run:
 *
 * - job start: `POST /jobs` sent (on a warm HTTPS connection) to the job's first command
 *   running, for a fresh agent process each time (serve takes one job per process), against
 *   `script -qfec "bash --login -c CMD" /dev/null` spawned to CMD running. CMD writes a line
 *   to a FIFO this process reads, so both ends are timed by the same clock. Every run gets an
 *   empty HOME of its own (the agent appends to `~/.bash_profile`). Goal: <= 50 ms above.
 * - log streaming: a job printing N bytes (100 MB; 10 MB with `--quick`), a plain read of its
 *   log to warm up, then the timed `GET /jobs/{id}/log` with `X-Client-Name: archivator` over
 *   HTTPS on 127.0.0.1, in MB/s of log bytes received, against the same client downloading a
 *   static file of the same size from a trivial `Deno.serve` HTTPS server (its own process,
 *   same certificate; one warm-up download, median of three). Goal: >= 100 MB/s. VmRSS of the
 *   agent is sampled during both reads, the server's during its first two downloads; the
 *   growth (peak - start) is reported: it must stay flat.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { BenchContext, BenchRow } from "./bench.ts";
import { AUTH, makeLeafCert, SECRET, startCallbackReceiver } from "../support/serve_agent.ts";

/** A running `agent serve` started from the bench's agent command line. */
export interface BenchAgent extends AsyncDisposable {
  readonly pid: number;
  readonly base: string;
  fetch(path: string, init?: RequestInit): Promise<Response>;
}

/** The TLS material shared by the agents and the floor server of one bench run. */
export interface Tls {
  readonly certPath: string;
  readonly keyPath: string;
  readonly cert: string;
}

/** Starts `agent serve` on a free port of 127.0.0.1 (with `args`) and waits until it listens. */
export async function startAgent(
  context: BenchContext,
  tls: Tls,
  home: string,
  tmpdir: string,
  args: readonly string[] = [],
): Promise<BenchAgent> {
  const [cmd, ...base] = context.agent;
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
    cwd: context.root,
    env: { ...context.env, HOME: home, TMPDIR: tmpdir, SEMAPHORE_AGENT_AUTH_TOKEN_SECRET: SECRET },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  // Reads the agent log until it listens, then keeps draining it so the agent never blocks.
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  let port = 0;
  while (!port) {
    const { done, value } = await reader.read();
    if (done) {
      const status = await child.status;
      throw new Error(
        `Cannot start agent serve: exit ${status.code} before listening\n${seen}${await stderr}`,
      );
    }
    seen += value;
    port = Number(seen.match(/listening on https:\/\/127\.0\.0\.1:(\d+)\n/)?.[1] ?? 0);
  }
  const drained = (async () => {
    while (!(await reader.read()).done) { /* the agent log is not needed */ }
  })();
  const client = Deno.createHttpClient({ caCerts: [tls.cert] });
  const baseUrl = `https://127.0.0.1:${port}`;
  return {
    pid: child.pid,
    base: baseUrl,
    fetch: (path, init = {}) =>
      fetch(`${baseUrl}${path}`, { ...init, headers: { ...AUTH, ...init.headers }, client }),
    async [Symbol.asyncDispose]() {
      client.close();
      // Gracefully, so the agent stops its job and deletes its files; then for sure.
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((resolve) => timer = setTimeout(resolve, 15_000));
      await Promise.race([child.status, late]);
      clearTimeout(timer);
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await child.status;
      await drained;
      await stderr;
    },
  };
}

/** A `POST /jobs` body: one job of `commands`, callbacks to `callbacks` (or none). */
export function jobBody(id: string, commands: readonly string[], callbacks = ""): string {
  return JSON.stringify({
    job_id: id,
    commands: commands.map((directive) => ({ directive })),
    callbacks: callbacks
      ? {
        finished: `${callbacks}/finished`,
        teardown_finished: `${callbacks}/teardown_finished`,
        token: "bench",
      }
      : { finished: "", teardown_finished: "", token: "" },
  });
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'"'"'`)}'`;
}

/** A FIFO and a pending read of its first bytes, resolving with the time they arrived. */
async function fifoReader(path: string): Promise<{ arrived: Promise<number>; unblock(): void }> {
  const made = await new Deno.Command("mkfifo", { args: [path] }).output();
  if (!made.success) throw new Error(`Cannot create the FIFO ${path}: mkfifo failed`);
  const arrived = (async () => {
    // Opening a FIFO for reading blocks (on a worker thread) until a writer opens it.
    using file = await Deno.open(path, { read: true });
    const buffer = new Uint8Array(64);
    await file.read(buffer);
    return performance.now();
  })();
  return {
    arrived,
    // Lets a pending open end when the writer never came.
    unblock() {
      try {
        using writer = Deno.openSync(path, { write: true });
        writer.writeSync(new TextEncoder().encode("x\n"));
      } catch {
        // the reader is gone already
      }
    },
  };
}

/** Rejects after `ms` unless `promise` settled first. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Cannot measure ${what}: no answer in ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

export async function freshDir(context: BenchContext, name: string): Promise<string> {
  const dir = join(context.tmp, `${name}-${crypto.randomUUID().slice(0, 8)}`);
  await Deno.mkdir(dir);
  return dir;
}

/** Milliseconds from sending `POST /jobs` to the job's first command running. */
async function agentStartMs(context: BenchContext, tls: Tls): Promise<number> {
  const home = await freshDir(context, "serve-home");
  const tmpdir = await freshDir(context, "serve-tmp");
  const fifo = join(tmpdir, "started.fifo");
  const reader = await fifoReader(fifo);
  try {
    await using agent = await startAgent(context, tls, home, tmpdir);
    // A warm connection: the TLS handshake is not part of handling the job.
    const alive = await agent.fetch("/is_alive");
    await alive.body?.cancel();
    const sent = performance.now();
    const response = agent.fetch("/jobs", {
      method: "POST",
      body: jobBody(`bench-${crypto.randomUUID()}`, [`echo started > ${shellQuote(fifo)}`]),
    }).then(async (res) => {
      const text = await res.text();
      if (res.status !== 200) throw new Error(`Cannot post the job: HTTP ${res.status} ${text}`);
    });
    const arrived = await within(
      30_000,
      "the serve job start",
      Promise.race([reader.arrived, response.then(() => new Promise<never>(() => {}))]),
    );
    await response;
    return arrived - sent;
  } catch (error) {
    reader.unblock();
    await reader.arrived.catch(() => {});
    throw error;
  }
}

/** Milliseconds from spawning `bash --login` in a bare PTY to the same command running. */
async function floorStartMs(context: BenchContext): Promise<number> {
  const home = await freshDir(context, "floor-home");
  const fifo = join(home, "started.fifo");
  const reader = await fifoReader(fifo);
  const command = `bash --login -c ${shellQuote(`echo started > ${shellQuote(fifo)}`)}`;
  const spawned = performance.now();
  const child = new Deno.Command("script", {
    args: ["-qfec", command, "/dev/null"],
    env: { ...context.env, HOME: home },
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const arrived = await within(
    30_000,
    "the bare PTY start",
    Promise.race([reader.arrived, child.status.then(() => new Promise<never>(() => {}))]),
  ).catch(async (error) => {
    reader.unblock();
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await child.status;
    throw error;
  });
  const status = await child.status;
  if (!status.success) throw new Error(`Cannot measure the bare PTY start: exit ${status.code}`);
  return arrived - spawned;
}

/** What {@linkcode measureLogStream} returns. */
export interface LogStreamResult {
  readonly bytes: number;
  readonly ms: number;
  /** VmRSS of the agent when the request was sent, in kB. */
  readonly startRssKb: number;
  /** Highest VmRSS sampled while the log streamed (a plain read, then the archivator's), in kB. */
  readonly peakRssKb: number;
  /** VmHWM of the agent after the stream (the job's printing included), in kB. */
  readonly hwmKb: number;
}

async function memory(pid: number): Promise<{ rss: number; hwm: number } | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    return {
      rss: Number(status.match(/^VmRSS:\s+(\d+) kB/m)?.[1] ?? 0),
      hwm: Number(status.match(/^VmHWM:\s+(\d+) kB/m)?.[1] ?? 0),
    };
  } catch {
    return undefined;
  }
}

/** Samples VmRSS of `pid` every 10 ms until stopped; resolves with the first and highest. */
function sampleRss(pid: number, startKb: number): { stop(): Promise<number> } {
  let peakKb = startKb;
  let running = true;
  const loop = (async () => {
    while (running) {
      const now = await memory(pid);
      if (now) peakKb = Math.max(peakKb, now.rss);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      const last = await memory(pid);
      return Math.max(peakKb, last?.rss ?? 0);
    },
  };
}

/** Reads a response body to its end; resolves with its size and its last bytes. */
async function drain(response: Response): Promise<{ bytes: number; tail: string }> {
  let bytes = 0;
  let last: Uint8Array = new Uint8Array(0);
  for await (const chunk of response.body ?? new ReadableStream<Uint8Array>()) {
    bytes += chunk.byteLength;
    if (chunk.byteLength >= 200) {
      last = chunk.subarray(-200);
    } else {
      const both = new Uint8Array(last.length + chunk.length);
      both.set(last);
      both.set(chunk, last.length);
      last = both.subarray(-200);
    }
  }
  return { bytes, tail: new TextDecoder().decode(last) };
}

/** Runs a job printing `bytes` bytes, then times the archivator's `GET /jobs/{id}/log`. */
export async function measureLogStream(
  context: BenchContext,
  tls: Tls,
  bytes: number,
): Promise<LogStreamResult> {
  const home = await freshDir(context, "stream-home");
  const tmpdir = await freshDir(context, "stream-tmp");
  await using receiver = startCallbackReceiver();
  await using agent = await startAgent(context, tls, home, tmpdir);
  const id = `bench-${crypto.randomUUID()}`;
  const producer =
    `yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c ${bytes}`;
  const posted = await agent.fetch("/jobs", {
    method: "POST",
    body: jobBody(id, [producer], receiver.base),
  });
  const postText = await posted.text();
  if (posted.status !== 200) {
    throw new Error(`Cannot post the job: HTTP ${posted.status} ${postText}`);
  }
  const [finished] = await receiver.waitFor(1);
  if (finished.body !== '{"result": "passed"}') {
    throw new Error(`Cannot stream the log: the job ended with ${finished.body}`);
  }

  const before = await memory(agent.pid);
  if (!before) throw new Error("Cannot read the agent's memory: it is gone");
  const sampler = sampleRss(agent.pid, before.rss);
  let peakRssKb = before.rss;
  let received: { bytes: number; tail: string };
  let ms: number;
  try {
    // A plain (hub) read first, as the floor gets a warm-up download: it warms the connection
    // and the page cache, and does not release teardown.
    const warm = await agent.fetch(`/jobs/${id}/log`);
    if (warm.status !== 200) {
      await warm.body?.cancel();
      throw new Error(`Cannot stream the log: HTTP ${warm.status}`);
    }
    await drain(warm);
    const started = performance.now();
    const response = await agent.fetch(`/jobs/${id}/log`, {
      headers: { "X-Client-Name": "archivator" },
    });
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new Error(`Cannot stream the log: HTTP ${response.status}`);
    }
    received = await drain(response);
    ms = performance.now() - started;
  } finally {
    peakRssKb = await sampler.stop();
  }
  const after = await memory(agent.pid);
  if (received.bytes < bytes || !received.tail.endsWith('"result":"passed"}\n')) {
    throw new Error(
      `Cannot stream the log: got ${received.bytes} bytes for ${bytes} of output, ending ${
        JSON.stringify(received.tail.slice(-80))
      }`,
    );
  }
  // The archivator's read releases teardown: the agent sends teardown_finished.
  await receiver.waitFor(2);
  return {
    bytes: received.bytes,
    ms,
    startRssKb: before.rss,
    peakRssKb,
    hwmKb: after?.hwm ?? before.hwm,
  };
}

/** What {@linkcode floorDownload} returns. */
interface FloorDownload {
  /** Median download time of three, after a warm-up download. */
  readonly ms: number;
  /** VmRSS of the server before and at most during its first two downloads, in kB. */
  readonly startRssKb: number;
  readonly peakRssKb: number;
}

/** A trivial HTTPS server (own process) serving one file: download time and its memory. */
async function floorDownload(
  context: BenchContext,
  tls: Tls,
  bytes: number,
): Promise<FloorDownload> {
  const file = join(context.tmp, "static.bin");
  {
    using out = await Deno.open(file, { write: true, create: true, truncate: true });
    const block = new TextEncoder().encode(
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n".repeat(16384),
    );
    for (let left = bytes; left > 0; left -= block.length) {
      const part = left >= block.length ? block : block.subarray(0, left);
      let written = 0;
      while (written < part.length) written += await out.write(part.subarray(written));
    }
  }
  const script = join(context.tmp, "static_server.ts");
  await Deno.writeTextFile(
    script,
    `const [cert, key, file] = Deno.args;
Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  cert: Deno.readTextFileSync(cert),
  key: Deno.readTextFileSync(key),
  onListen: ({ port }) => console.log(port),
}, async () => new Response((await Deno.open(file)).readable));
`,
  );
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-config", script, tls.certPath, tls.keyPath, file],
    env: context.env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(server.stderr).text();
  const client = Deno.createHttpClient({ caCerts: [tls.cert] });
  const lines = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let out = "";
    while (!out.includes("\n")) {
      const { done, value } = await lines.read();
      if (done) throw new Error(`Cannot start the static HTTPS server\n${await stderr}`);
      out += value;
    }
    const url = `https://127.0.0.1:${Number(out.trim())}/`;
    const times: number[] = [];
    const startRssKb = (await memory(server.pid))?.rss ?? 0;
    let peakRssKb = startRssKb;
    // One warm-up download (RSS sampled from its start, as the agent's), then three timed.
    for (let i = 0; i < 4; i++) {
      const sampler = i <= 1 ? sampleRss(server.pid, startRssKb) : undefined;
      const started = performance.now();
      const response = await fetch(url, { client });
      const got = (await drain(response)).bytes;
      if (i > 0) times.push(performance.now() - started);
      if (sampler) peakRssKb = Math.max(peakRssKb, await sampler.stop());
      if (got !== bytes) throw new Error(`Cannot download the static file: ${got}/${bytes} bytes`);
    }
    return { ms: median(times), startRssKb, peakRssKb };
  } finally {
    client.close();
    await lines.cancel();
    server.kill("SIGKILL");
    await server.status;
    await stderr;
    await Deno.remove(file);
  }
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Growth of VmRSS during the stream still called flat: a few read buffers, not the log. */
const FLAT_KB = 16 * 1024;

const fmtMs = (ms: number) => `${ms.toFixed(1)} ms`;
const fmtMiB = (kb: number) => `${(kb / 1024).toFixed(1)} MiB`;
const rate = (bytes: number, ms: number) => `${(bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
const ratio = (a: number, b: number) => b > 0 ? `${(a / b).toFixed(2)}x` : "n/a";

/** The bench runner's entry: `POST /jobs` start latency and log streaming rows. */
export async function serveBench(context: BenchContext): Promise<BenchRow[]> {
  const runs = context.quick ? 3 : 7;
  const outputBytes = context.quick ? 10_000_000 : 100_000_000;
  const certDir = await freshDir(context, "serve-cert");
  const tls = await makeLeafCert(certDir);

  // Warm-up (page cache, code caches), then agent and floor alternately.
  await agentStartMs(context, tls);
  await floorStartMs(context);
  const agentStarts: number[] = [];
  const floorStarts: number[] = [];
  for (let i = 0; i < runs; i++) {
    agentStarts.push(await agentStartMs(context, tls));
    floorStarts.push(await floorStartMs(context));
  }
  const start = median(agentStarts);
  const floor = median(floorStarts);

  const stream = await measureLogStream(context, tls, outputBytes);
  const floorStream = await floorDownload(context, tls, stream.bytes);
  const floorGrowthKb = Math.max(0, floorStream.peakRssKb - floorStream.startRssKb);
  const mb = (stream.bytes / 1e6).toFixed(1);
  const growthKb = Math.max(0, stream.peakRssKb - stream.startRssKb);
  return [
    {
      figure: "serve: POST /jobs to first command",
      agent: fmtMs(start),
      floor: fmtMs(floor),
      ratio: `+${(start - floor).toFixed(1)} ms`,
      note: `bash --login in script -qfec to the same command, median of ${runs} (goal <= +50 ms)`,
    },
    {
      figure: `serve: log stream over HTTPS (${mb} MB)`,
      agent: rate(stream.bytes, stream.ms),
      floor: rate(stream.bytes, floorStream.ms),
      ratio: ratio(stream.ms, floorStream.ms),
      note: "same size static file from Deno.serve, same cert (ratio: time; goal >= 100 MB/s)",
    },
    {
      figure: "serve: RSS growth while streaming",
      agent: `+${fmtMiB(growthKb)}`,
      floor: `+${fmtMiB(floorGrowthKb)}`,
      ratio: ratio(growthKb, floorGrowthKb),
      note: `peak - start VmRSS; agent ${fmtMiB(stream.startRssKb)} -> ${
        fmtMiB(stream.peakRssKb)
      } (${growthKb <= FLAT_KB ? "flat" : "NOT flat"}), whole-job VmHWM ${
        fmtMiB(stream.hwmKb)
      }; floor: the static server (${fmtMiB(floorStream.startRssKb)} -> ${
        fmtMiB(floorStream.peakRssKb)
      })`,
    },
  ];
}

if (import.meta.main) {
  const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
  const tmp = await Deno.makeTempDir({ prefix: "serve-bench-" });
  try {
    let agent = [Deno.execPath(), "run", "-A", join(root, "main.ts")];
    if (!Deno.args.includes("--source")) {
      try {
        await Deno.stat(join(root, "dist", "agent"));
        agent = [join(root, "dist", "agent")];
      } catch {
        // from source
      }
    }
    const cacheHome = Deno.env.get("XDG_CACHE_HOME") ??
      join(Deno.env.get("HOME") ?? "/tmp", ".cache");
    await Deno.mkdir(join(tmp, "home"));
    const rows = await serveBench({
      root,
      agent,
      quick: Deno.args.includes("--quick"),
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: join(tmp, "home"),
        XDG_CACHE_HOME: cacheHome,
        DENO_DIR: Deno.env.get("DENO_DIR") ?? join(cacheHome, "deno"),
        TERM: "xterm",
        LANG: Deno.env.get("LANG") ?? "C.UTF-8",
      },
      tmp,
    });
    for (const row of rows) console.log(JSON.stringify(row));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}
