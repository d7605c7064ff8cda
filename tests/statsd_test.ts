import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { createStatsdMetrics, taggedMetricName } from "../server/statsd.ts";
import { silentLogger } from "../lib/util/agent_log.ts";

/** A real UDP StatsD receiver on 127.0.0.1 (node:dgram: Deno's own UDP API is unstable). */
async function startReceiver() {
  const socket = createSocket("udp4");
  const packets: string[] = [];
  const waiters: Array<() => void> = [];
  socket.on("message", (data) => {
    packets.push(new TextDecoder().decode(data));
    waiters.shift()?.();
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return {
    port: socket.address().port,
    packets,
    /** Resolves once `n` packets arrived. */
    async received(n: number): Promise<string[]> {
      while (packets.length < n) await new Promise<void>((resolve) => waiters.push(resolve));
      return packets;
    },
    [Symbol.asyncDispose]: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

Deno.test("taggedMetricName() pads tags with no_tag and cleans them", () => {
  assert.equal(
    taggedMetricName("agent.prod", "compose.docker.pull.rate", ["semaphoreci/android"]),
    "tagged.agent.prod.semaphoreci_android.no_tag.no_tag.compose.docker.pull.rate",
  );
  assert.equal(
    taggedMetricName("ns", "m", ["a b", "c-d_e", "f.g", "ignored"]),
    "tagged.ns.a_b.c-d_e.f_g.m",
  );
});

Deno.test("createStatsdMetrics() sends gauges over UDP in StatsD format", async () => {
  await using receiver = await startReceiver();
  await using metrics = createStatsdMetrics({
    host: "127.0.0.1",
    port: receiver.port,
    namespace: "agent.test",
    logger: silentLogger,
  });
  metrics.gauge("compose.docker.pull.rate", 1, ["semaphoreci/android"]);
  metrics.gauge("compose.docker.pull.duration", 12, ["semaphoreci/android"]);
  const packets = await receiver.received(2);
  assert.deepEqual(packets.sort(), [
    "tagged.agent.test.semaphoreci_android.no_tag.no_tag.compose.docker.pull.duration:12|g",
    "tagged.agent.test.semaphoreci_android.no_tag.no_tag.compose.docker.pull.rate:1|g",
  ]);
});

Deno.test("createStatsdMetrics() uses the agent.prod namespace by default", async () => {
  await using receiver = await startReceiver();
  await using metrics = createStatsdMetrics({
    host: "127.0.0.1",
    port: receiver.port,
    logger: silentLogger,
  });
  metrics.gauge("compose.docker.error.rate", 1, ["semaphoreci/android"]);
  assert.deepEqual(await receiver.received(1), [
    "tagged.agent.prod.semaphoreci_android.no_tag.no_tag.compose.docker.error.rate:1|g",
  ]);
});

Deno.test("createStatsdMetrics() drops gauges after close() and rejects a bad port", async () => {
  const metrics = createStatsdMetrics({ host: "127.0.0.1", port: 9, logger: silentLogger });
  await metrics.close();
  metrics.gauge("x", 1, []); // must not throw
  assert.throws(
    () => createStatsdMetrics({ host: "127.0.0.1", port: 70000, logger: silentLogger }),
    RangeError,
  );
});
