import assert from "node:assert/strict";
import { connectionCap, listenHttp } from "../lib/util/http_listener.ts";
import { recordingLogger } from "./support/recording_logger.ts";
import { AUTH, makeLeafCert, startServeAgent } from "./support/serve_agent.ts";

const encoder = new TextEncoder();

/** Resolves with the ms until the server closed `conn` (EOF or a reset), reading what comes. */
async function closedAfter(conn: Deno.Conn, started = performance.now()): Promise<number> {
  const buffer = new Uint8Array(16 * 1024);
  try {
    while (await conn.read(buffer) !== null) {
      // answers are read and dropped
    }
  } catch {
    // reset or TLS error: closed all the same
  }
  try {
    conn.close();
  } catch {
    // already closed
  }
  return performance.now() - started;
}

async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "http_listener_" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

Deno.test("connectionCap() keeps three quarters of the descriptors for the job", () => {
  assert.equal(connectionCap(1024), 256);
  assert.equal(connectionCap(40), 16);
  assert.equal(connectionCap(1_048_576), 512);
  assert.equal(connectionCap(undefined), 512);
});

Deno.test("listenHttp() closes idle, slow and surplus connections", async (t) => {
  await using dir = await tempDir();
  const { cert, key } = await makeLeafCert(dir.path);
  const release = Promise.withResolvers<void>();
  const server = await listenHttp({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert, key },
    logger: recordingLogger(),
    timeouts: { headersMs: 300, requestMs: 2000, idleMs: 600 },
    maxConnections: 4,
    handler: (request) => {
      if (new URL(request.url).pathname !== "/slow") return Promise.resolve(new Response("yes"));
      // A log download that goes on until the test releases it.
      return Promise.resolve(
        new Response(
          new ReadableStream({
            async start(controller) {
              controller.enqueue(encoder.encode("first\n"));
              await release.promise;
              controller.close();
            },
          }),
        ),
      );
    },
  });
  const { port } = server.addr;
  const tls = async () => {
    const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [cert] });
    await conn.handshake();
    return conn;
  };
  try {
    await t.step("a connection that sends nothing (no TLS handshake)", async () => {
      const elapsed = await closedAfter(await Deno.connect({ hostname: "127.0.0.1", port }));
      assert.ok(elapsed >= 250 && elapsed < 3000, `closed after ${elapsed} ms`);
    });
    await t.step("a slow-loris head, one header line every 50 ms", async () => {
      const conn = await tls();
      const started = performance.now();
      await conn.write(encoder.encode("GET /is_alive HTTP/1.1\r\nHost: x\r\n"));
      const closed = closedAfter(conn, started);
      let done = false;
      closed.then(() => done = true);
      for (let i = 0; !done && i < 200; i++) {
        await conn.write(encoder.encode(`X-Slow-${i}: y\r\n`)).catch(() => done = true);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const elapsed = await closed;
      assert.ok(elapsed < 3000, `closed after ${elapsed} ms`);
    });
    await t.step("a keep-alive connection idle after its answer", async () => {
      const conn = await tls();
      await conn.write(encoder.encode("GET /is_alive HTTP/1.1\r\nHost: x\r\n\r\n"));
      const elapsed = await closedAfter(conn);
      assert.ok(elapsed >= 500 && elapsed < 5000, `closed after ${elapsed} ms`);
    });
    await t.step("past the cap, the oldest idle connection goes, not a busy one", async () => {
      const busy = await tls();
      await busy.write(encoder.encode("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"));
      const first = new Uint8Array(1024);
      assert.ok(await busy.read(first) !== null); // the stream has begun
      const idle = [];
      for (let i = 0; i < 3; i++) idle.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      const oldestClosed = closedAfter(idle[0]);
      const client = Deno.createHttpClient({ caCerts: [cert] });
      const res = await fetch(`https://127.0.0.1:${port}/is_alive`, { client });
      assert.equal(await res.text(), "yes");
      client.close();
      assert.ok(await oldestClosed < 250, "the oldest idle connection was closed at once");
      release.resolve();
      // The busy stream goes on to its normal end (the last chunk of a chunked body).
      let text = new TextDecoder().decode(first);
      while (!text.endsWith("0\r\n\r\n")) {
        const n = await busy.read(first);
        assert.ok(n !== null, `the stream was cut: ${JSON.stringify(text)}`);
        text += new TextDecoder().decode(first.subarray(0, n));
      }
      assert.match(text, /first\n/);
      busy.close();
      for (const conn of idle.slice(1)) await closedAfter(conn);
    });
  } finally {
    release.resolve();
    await server.shutdown(100);
  }
});

Deno.test("listenHttp() delivers large downloads one after another on one keep-alive TLS connection", async () => {
  await using dir = await tempDir();
  const { cert, key } = await makeLeafCert(dir.path);
  // A job log on disk, served as a file stream is. At this size the old loop (write, then wait
  // for "drain") lost the end of the second response every time here; smaller ones, sometimes.
  const size = 26_933_335;
  const path = `${dir.path}/log`;
  await Deno.writeFile(path, new Uint8Array(size).fill(0x61));
  const delivered: Promise<void>[] = [];
  const server = await listenHttp({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert, key },
    logger: recordingLogger(),
    handler: async (request, info) => {
      delivered.push(info.completed);
      const file = await Deno.open(path);
      const sized = new URL(request.url).searchParams.has("sized");
      return new Response(file.readable, {
        headers: sized ? { "Content-Length": String(size) } : {},
      });
    },
  });
  const client = Deno.createHttpClient({ caCerts: [cert] });
  try {
    // With a length, then chunked: each response must end, and free the connection.
    for (const query of ["?sized", "?sized", "", ""]) {
      const response = await fetch(`https://127.0.0.1:${server.addr.port}/log${query}`, {
        client,
        signal: AbortSignal.timeout(20_000),
      });
      assert.equal((await response.text()).length, size);
    }
    // Every response was delivered ("finish"), which is what counts an archivator's download.
    await Promise.all(delivered);
    assert.equal(delivered.length, 4);
  } finally {
    client.close();
    await server.shutdown(0);
  }
});

Deno.test("agent serve under ulimit -n 1024 keeps answering through 2,000 hostile connections", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(`${dir.path}/home`);
  await using agent = await startServeAgent({
    dir: dir.path,
    env: { HOME: `${dir.path}/home` },
    openFilesLimit: 1024,
  });
  const limits = await Deno.readTextFile(`/proc/${agent.pid}/limits`);
  assert.match(limits, /^Max open files\s+1024\s+1024/m);
  let res = await agent.fetch("/jobs", {
    method: "POST",
    headers: AUTH,
    body: JSON.stringify({
      job_id: "flood",
      commands: [{ directive: "echo started; sleep 20; echo done" }],
    }),
  });
  assert.equal(await res.text(), '{"message": "ok"}');

  const { port, cert } = agent;
  const hostile: Promise<number>[] = [];
  const slowLoris = new Set<Deno.Conn>();
  // 1,300 plain TCP connections that send nothing or half a TLS hello...
  for (let i = 0; i < 1300; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    if (i % 2) await conn.write(new Uint8Array([0x16, 0x03, 0x01, 0x02])).catch(() => {});
    hostile.push(closedAfter(conn));
  }
  // ... and 700 TLS connections sending a head one line at a time.
  for (let i = 0; i < 700; i++) {
    try {
      const opened = performance.now();
      const conn = await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [cert] });
      await conn.write(encoder.encode("GET /is_alive HTTP/1.1\r\nHost: x\r\n"));
      slowLoris.add(conn);
      hostile.push(closedAfter(conn, opened).finally(() => slowLoris.delete(conn)));
    } catch {
      // closed during the handshake to make room: that is the point
    }
  }
  const dribble = setInterval(() => {
    for (const conn of slowLoris) conn.write(encoder.encode("X-Slow: y\r\n")).catch(() => {});
  }, 1000);
  try {
    // While they are all open or being closed, the health check and the job's log answer.
    res = await agent.fetch("/is_alive");
    assert.equal(await res.text(), "yes");
    res = await agent.fetch("/jobs/flood/log", { headers: AUTH });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /"output":"started\\n"/);
    const fds = [...Deno.readDirSync(`/proc/${agent.pid}/fd`)].length;
    assert.ok(fds < 400, `the agent holds ${fds} descriptors`);

    // Every hostile connection is closed by the agent, within the 5 s deadlines (+ slack).
    const elapsed = await Promise.all(hostile);
    const longest = Math.max(...elapsed);
    assert.ok(longest < 10_000, `one was closed only after ${longest} ms`);
  } finally {
    clearInterval(dribble);
  }
  res = await agent.fetch("/is_alive");
  assert.equal(await res.text(), "yes");
  assert.equal(agent.lines.some((line) => /Too many open files/.test(line)), false);
});

Deno.test("agent serve under ulimit -n 64 accepts again after running out of descriptors", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(`${dir.path}/home`);
  await using agent = await startServeAgent({
    dir: dir.path,
    env: { HOME: `${dir.path}/home` },
    openFilesLimit: 64,
  });
  let res = await agent.fetch("/jobs", {
    method: "POST",
    headers: AUTH,
    body: JSON.stringify({ job_id: "low", commands: [{ directive: "echo started; sleep 15" }] }),
  });
  assert.equal(await res.text(), '{"message": "ok"}');
  const flood = [];
  for (let i = 0; i < 300; i++) {
    flood.push(await Deno.connect({ hostname: "127.0.0.1", port: agent.port }));
  }
  for (const conn of flood) conn.close();
  // Within a few seconds the agent takes connections again (bounded: 20 tries, 500 ms apart).
  let answered = "";
  for (let attempt = 0; attempt < 20 && answered !== "yes"; attempt++) {
    try {
      res = await agent.fetch("/is_alive", { signal: AbortSignal.timeout(500) });
      answered = await res.text();
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  assert.equal(answered, "yes");
  res = await agent.fetch("/jobs/low/log", { headers: AUTH });
  assert.match(await res.text(), /"output":"started\\n"/);
  assert.equal(agent.lines.some((line) => /Too many open files \(os error/.test(line)), false);
});
