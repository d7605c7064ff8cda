import assert from "node:assert/strict";
import {
  sendCallback,
  sendFinishedCallback,
  sendTeardownFinishedCallback,
} from "../lib/reporting/callbacks.ts";
import type { Logger } from "../lib/util/agent_log.ts";
import { recordingLogger } from "./support/recording_logger.ts";
import { USER_AGENT } from "../lib/util/version.ts";

interface Received {
  readonly method: string;
  readonly path: string;
  readonly body: string;
  readonly headers: Headers;
}

/** A callback receiver on 127.0.0.1 answering with the statuses in `statuses`, then 200. */
function startReceiver(statuses: number[] = []) {
  const received: Received[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    received.push({
      method: req.method,
      path: new URL(req.url).pathname,
      body: await req.text(),
      headers: req.headers,
    });
    return new Response(null, { status: statuses.shift() ?? 200 });
  });
  return {
    url: (path: string) => `http://127.0.0.1:${server.addr.port}${path}`,
    received,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("sendFinishedCallback() posts the exact body with User-Agent and bearer token", async () => {
  await using receiver = startReceiver();
  const logger = recordingLogger();
  const outcome = await sendFinishedCallback(receiver.url("/finished"), "passed", {
    token: "secret-token",
    attempts: 3,
    logger,
  });
  assert.deepEqual(outcome, { state: "sent", attempts: 1 });
  assert.equal(receiver.received.length, 1);
  const [r] = receiver.received;
  assert.equal(r.method, "POST");
  assert.equal(r.path, "/finished");
  assert.equal(r.body, '{"result": "passed"}');
  assert.equal(r.headers.get("user-agent"), USER_AGENT);
  assert.equal(r.headers.get("authorization"), "Bearer secret-token");
  assert.equal(r.headers.get("content-type"), null);
});

Deno.test("sendTeardownFinishedCallback() posts {} without Authorization when the token is empty", async () => {
  await using receiver = startReceiver();
  const outcome = await sendTeardownFinishedCallback(receiver.url("/teardown"), {
    token: "",
    logger: recordingLogger(),
  });
  assert.equal(outcome.state, "sent");
  assert.equal(receiver.received[0].body, "{}");
  assert.equal(receiver.received[0].headers.get("authorization"), null);
});

Deno.test("sendCallback() retries 1 s apart and logs each failed attempt", async () => {
  await using receiver = startReceiver([500, 404]);
  const logger = recordingLogger();
  const started = performance.now();
  const outcome = await sendFinishedCallback(receiver.url("/f"), "failed", {
    attempts: 5,
    logger,
  });
  const elapsed = performance.now() - started;
  assert.deepEqual(outcome, { state: "sent", attempts: 3 });
  assert.ok(elapsed >= 1900, `two 1 s pauses, took ${elapsed} ms`);
  assert.equal(receiver.received.length, 3);
  const url = receiver.url("/f");
  assert.deepEqual(logger.lines.filter((l) => l.startsWith("error")), [
    `error: [Send finished callback] attempt [1] failed with [callback to ${url} got HTTP 500] - retrying in 1s`,
    `error: [Send finished callback] attempt [2] failed with [callback to ${url} got HTTP 404] - retrying in 1s`,
  ]);
});

Deno.test("sendCallback() accepts any 2xx status", async () => {
  await using receiver = startReceiver([202]);
  const outcome = await sendCallback(receiver.url("/x"), "{}", { logger: recordingLogger() });
  assert.deepEqual(outcome, { state: "sent", attempts: 1 });
});

Deno.test("sendCallback() gives up after the last attempt without a retry line for it", async () => {
  await using receiver = startReceiver([500, 500, 500]);
  const logger = recordingLogger();
  const outcome = await sendTeardownFinishedCallback(receiver.url("/t"), {
    attempts: 2,
    logger,
    retryDelayMs: 10,
  });
  assert.equal(outcome.state, "failed");
  assert.equal(receiver.received.length, 2);
  const errors = logger.lines.filter((l) => l.startsWith("error"));
  assert.equal(errors.length, 2);
  assert.match(errors[0], /^error: \[Send teardown finished callback\] attempt \[1\] failed with/);
  assert.match(
    errors[1],
    /^error: \[Send teardown finished callback\] failed after \[2\] attempts - giving up: .*HTTP 500/,
  );
});

Deno.test("sendCallback() skips an empty URL at once", async () => {
  const started = performance.now();
  const outcome = await sendFinishedCallback("", "passed", {
    attempts: 300,
    logger: recordingLogger(),
  });
  assert.deepEqual(outcome, { state: "skipped" });
  assert.ok(performance.now() - started < 100);
});

Deno.test("sendCallback() reports a refused connection as a failed attempt", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const logger = recordingLogger();
  const outcome = await sendCallback(`http://127.0.0.1:${port}/f`, "{}", {
    attempts: 2,
    logger,
    retryDelayMs: 1,
  });
  assert.equal(outcome.state, "failed");
  assert.equal(outcome.state === "failed" && outcome.attempts, 2);
});

Deno.test("sendCallback() stops retrying when its signal aborts", async () => {
  await using receiver = startReceiver([500, 500, 500, 500, 500]);
  const controller = new AbortController();
  const logger: Logger = {
    ...recordingLogger(),
    error: () => controller.abort(new Error("shutting down")),
  };
  const outcome = await sendCallback(receiver.url("/f"), "{}", {
    attempts: 5,
    logger,
    signal: controller.signal,
  });
  assert.equal(outcome.state, "failed");
  assert.equal(receiver.received.length, 1);
});

Deno.test("sendCallback() reads nothing of an answer body that never ends", async () => {
  const chunk = new Uint8Array(1024 * 1024);
  let served = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    await req.body?.cancel();
    return new Response(
      new ReadableStream({
        pull(controller) {
          served++;
          controller.enqueue(chunk);
        },
      }, { highWaterMark: 0 }),
    );
  });
  try {
    const outcome = await sendCallback(`http://127.0.0.1:${server.addr.port}/f`, "{}", {
      logger: recordingLogger(),
    });
    assert.deepEqual(outcome, { state: "sent", attempts: 1 });
    assert.ok(served < 64, `${served} MiB were produced for the agent`);
  } finally {
    await server.shutdown();
  }
});

/** A receiver that reads the request and never answers until disposed. */
function startSilentReceiver() {
  const arrived = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    await req.text();
    arrived.resolve();
    await release.promise;
    return new Response(null, { status: 200 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/f`,
    arrived: arrived.promise,
    async [Symbol.asyncDispose]() {
      release.resolve();
      await server.shutdown();
    },
  };
}

Deno.test("sendCallback() gives up an attempt that gets no answer within timeoutMs", async () => {
  await using receiver = startSilentReceiver();
  const logger = recordingLogger();
  const outcome = await sendCallback(receiver.url, "{}", { attempts: 1, logger, timeoutMs: 50 });
  assert.equal(outcome.state, "failed");
  assert.equal(
    outcome.state === "failed" && outcome.error.message,
    `POST ${receiver.url}: timeout after 50ms`,
  );
});

Deno.test("sendCallback() ends an attempt in flight when its signal aborts", async () => {
  await using receiver = startSilentReceiver();
  const controller = new AbortController();
  const logger = recordingLogger();
  const sent = sendCallback(receiver.url, "{}", {
    attempts: 3,
    logger,
    signal: controller.signal,
    timeoutMs: 5_000,
  });
  await receiver.arrived;
  controller.abort(new Error("shutting down"));
  const outcome = await sent;
  assert.equal(outcome.state, "failed");
  assert.equal(outcome.state === "failed" && outcome.attempts, 1);
  assert.equal(outcome.state === "failed" && outcome.error.message, "aborted: shutting down");
  // The attempt itself ended with the abort's reason, not with its own timeout.
  assert.ok(
    logger.lines.includes(
      `error: [Send callback] attempt [1] failed with [POST ${receiver.url}: shutting down] - retrying in 1s`,
    ),
    logger.lines.join("\n"),
  );
});
