import assert from "node:assert/strict";
import { createStatsdMetrics, taggedMetricName } from "../server/statsd.ts";
import { silentLogger } from "../lib/util/agent_log.ts";
import { startStatsdReceiver } from "./support/statsd_receiver.ts";

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
  await using receiver = await startStatsdReceiver();
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
  await using receiver = await startStatsdReceiver();
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
