import assert from "node:assert/strict";
import { AgentMetrics } from "../lib/telemetry/agent_metrics.ts";
import {
  Heartbeat,
  metricsHandler,
  type Readiness,
  startMetricsServer,
} from "../lib/telemetry/metrics_server.ts";
import { parseListenAddress } from "../lib/telemetry/listen_address.ts";
import { silentLogger } from "../lib/util/agent_log.ts";

async function answer(res: Response): Promise<[number, string]> {
  return [res.status, await res.text()];
}

Deno.test("metricsHandler() answers /healthz from the heartbeat and /readyz from the agent", async () => {
  const metrics = new AgentMetrics();
  let now = 1000;
  const heartbeat = new Heartbeat(() => now);
  try {
    let readiness: Readiness = { ready: true };
    const handle = metricsHandler({ metrics, readiness: () => readiness }, heartbeat);
    const get = (path: string, method = "GET") =>
      handle(new Request(`http://127.0.0.1${path}`, { method }));
    assert.deepEqual(await answer(await get("/healthz")), [200, "ok\n"]);
    now += 5000;
    assert.deepEqual(await answer(await get("/healthz")), [200, "ok\n"]);
    now += 1;
    assert.deepEqual(await answer(await get("/healthz")), [
      503,
      "event loop stalled for 5001 ms\n",
    ]);
    assert.deepEqual(await answer(await get("/readyz")), [200, "ready\n"]);
    readiness = { ready: false, reason: "the last successful sync was 61 s ago" };
    assert.deepEqual(await answer(await get("/readyz")), [
      503,
      "not ready: the last successful sync was 61 s ago\n",
    ]);
    const res = await get("/metrics");
    assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    assert.match(await res.text(), /^# HELP semaphore_agent_/m);
    assert.deepEqual(await answer(await get("/")), [404, "not found\n"]);
    assert.deepEqual(await answer(await get("/metrics", "POST")), [405, "method not allowed\n"]);
  } finally {
    heartbeat.stop();
    metrics.close();
  }
});

Deno.test("startMetricsServer() says which address it cannot use", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = taken.addr as Deno.NetAddr;
  const metrics = new AgentMetrics();
  try {
    await assert.rejects(
      () =>
        startMetricsServer({
          address: { hostname: "127.0.0.1", port },
          metrics,
          readiness: () => ({ ready: true }),
          logger: silentLogger,
        }),
      (error: Error) =>
        error.message.startsWith(`Cannot listen for metrics on 127.0.0.1:${port}: `),
    );
  } finally {
    taken.close();
    metrics.close();
  }
});

Deno.test("a wedged event loop fails /healthz: no answer while it is blocked, 200 after", async () => {
  const module = new URL("../lib/telemetry/metrics_server.ts", import.meta.url).href;
  const metricsModule = new URL("../lib/telemetry/agent_metrics.ts", import.meta.url).href;
  const logModule = new URL("../lib/util/agent_log.ts", import.meta.url).href;
  // The child serves metrics, then blocks its own event loop for 3 s when told to on stdin.
  const script = `
    import { startMetricsServer } from ${JSON.stringify(module)};
    import { AgentMetrics } from ${JSON.stringify(metricsModule)};
    import { silentLogger } from ${JSON.stringify(logModule)};
    const server = await startMetricsServer({
      address: { hostname: "127.0.0.1", port: 0 },
      metrics: new AgentMetrics(),
      readiness: () => ({ ready: true }),
      logger: silentLogger,
    });
    console.log(server.address.port);
    for await (const _ of Deno.stdin.readable) {
      console.log("blocking");
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3000);
      console.log("unblocked");
    }
    await server.close();
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const nextLine = async () => (await lines.read()).value?.trim() ?? "";
  const writer = child.stdin.getWriter();
  try {
    const port = Number(await nextLine());
    const health = () =>
      fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
    assert.deepEqual(await answer(await health()), [200, "ok\n"]);
    await writer.write(new TextEncoder().encode("block\n"));
    assert.equal(await nextLine(), "blocking");
    await assert.rejects(health(), (error: Error) => error.name === "TimeoutError");
    assert.equal(await nextLine(), "unblocked");
    assert.deepEqual(await answer(await health()), [200, "ok\n"]);
  } finally {
    await writer.close();
    await lines.cancel();
    await child.status;
  }
});

Deno.test("parseListenAddress() takes HOST:PORT, [IPv6]:PORT and :PORT, and names a bad value", () => {
  assert.deepEqual(parseListenAddress("127.0.0.1:9464"), { hostname: "127.0.0.1", port: 9464 });
  assert.deepEqual(parseListenAddress("[::1]:9100"), { hostname: "::1", port: 9100 });
  assert.deepEqual(parseListenAddress(":9100"), { hostname: "0.0.0.0", port: 9100 });
  assert.deepEqual(parseListenAddress("localhost:0"), { hostname: "localhost", port: 0 });
  for (
    const [value, reason] of [
      ["9100", "expected HOST:PORT, e.g. 127.0.0.1:9090"],
      ["host:", "expected HOST:PORT, e.g. 127.0.0.1:9090"],
      ["host:http", "expected HOST:PORT, e.g. 127.0.0.1:9090"],
      ["host:70000", "the port must be between 0 and 65535 (0: any free port)"],
    ]
  ) {
    assert.throws(
      () => parseListenAddress(value),
      (error: Error) =>
        error instanceof RangeError &&
        error.message === `Cannot use metrics address '${value}': ${reason}`,
    );
  }
});

Deno.test("agent serve under ulimit -n 1024 survives 1,100 idle connections to --metrics-addr", async () => {
  const { startServeAgent } = await import("./support/serve_agent.ts");
  const dir = await Deno.makeTempDir({ prefix: "metrics_flood_" });
  try {
    await using agent = await startServeAgent({
      dir,
      args: ["--metrics-addr", "127.0.0.1:0"],
      openFilesLimit: 1024,
    });
    const line = await agent.waitForLine(/Serving metrics on http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const port = Number(/:(\d+)\/metrics$/.exec(line)![1]);
    const flood: Deno.Conn[] = [];
    for (let i = 0; i < 1100; i++) flood.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.deepEqual(await answer(res), [200, "ok\n"]);
      assert.equal(await (await agent.fetch("/is_alive")).text(), "yes");
    } finally {
      for (const conn of flood) conn.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
