import assert from "node:assert/strict";
import { hubBaseUrl, HubClient, type RegisterRequest } from "../lib/start/hub_client.ts";
import { HttpError } from "../lib/util/errors.ts";
import { USER_AGENT } from "../lib/util/version.ts";
import { endlessAnswer, FakeHub } from "./support/fake_hub.ts";
import { MAX_DELAY_MS } from "../lib/util/delay.ts";

const FAST = {
  registerIntervalMs: 10,
  getJobIntervalMs: 10,
  disconnectIntervalMs: 10,
};

const REGISTER: RegisterRequest = {
  name: "agent-name-123",
  version: "v9.9.9",
  pid: 42,
  os: "Ubuntu 22.04.3 LTS",
  arch: "x86_64",
  hostname: "host-1",
  single_job: true,
  idle_timeout: 30,
  interruption_grace_period: 5,
  job_id: "",
};

function client(hub: FakeHub, options: Partial<ConstructorParameters<typeof HubClient>[0]> = {}) {
  return new HubClient({
    baseUrl: hubBaseUrl(hub.endpoint, true),
    registrationToken: hub.registrationToken,
    retries: FAST,
    ...options,
  });
}

Deno.test("hubBaseUrl() builds the API base from endpoint and scheme", () => {
  assert.equal(
    hubBaseUrl("myorg.semaphoreci.com", false),
    "https://myorg.semaphoreci.com/api/v1/self_hosted_agents",
  );
  assert.equal(
    hubBaseUrl("127.0.0.1:8080", true),
    "http://127.0.0.1:8080/api/v1/self_hosted_agents",
  );
});

Deno.test("HubClient.register() sends the exact body and keeps the access token", async () => {
  await using hub = await FakeHub.start({ registeredName: "assigned-name" });
  const hubClient = client(hub);
  const answer = await hubClient.register(REGISTER);
  assert.deepEqual(answer, { name: "assigned-name", token: "token" });
  assert.equal(hubClient.accessToken, "token");
  const request = hub.requests[0];
  assert.equal(request.method, "POST");
  assert.equal(request.path, "/api/v1/self_hosted_agents/register");
  assert.equal(
    request.body,
    `{"name":"agent-name-123","version":"v9.9.9","pid":42,"os":"Ubuntu 22.04.3 LTS",` +
      `"arch":"x86_64","hostname":"host-1","single_job":true,"idle_timeout":30,` +
      `"interruption_grace_period":5,"job_id":""}`,
  );
  assert.equal(request.headers["authorization"], "Token reg-token");
  assert.equal(request.headers["user-agent"], USER_AGENT);
  assert.equal(request.headers["content-type"], undefined);
});

Deno.test("HubClient.register() retries and fails with the last error", async (t) => {
  await t.step("succeeds after rejected attempts", async () => {
    await using hub = await FakeHub.start();
    hub.rejectRegisterAttempts(2);
    await client(hub).register(REGISTER);
    assert.equal(hub.registrations.length, 3);
  });
  await t.step("gives up after the attempts", async () => {
    await using hub = await FakeHub.start();
    hub.rejectRegisterAttempts(10);
    const hubClient = client(hub, { retries: { ...FAST, registerAttempts: 4 } });
    await assert.rejects(hubClient.register(REGISTER), (error: Error) => {
      assert.ok(error instanceof HttpError);
      assert.equal(error.status, 500);
      assert.equal(
        error.message,
        `register request to http://${hub.endpoint}/api/v1/self_hosted_agents/register ` +
          `got HTTP 500: rejected on purpose`,
      );
      return true;
    });
    assert.equal(hub.registrations.length, 4);
  });
  await t.step("a wrong registration token is refused", async () => {
    await using hub = await FakeHub.start();
    const hubClient = client(hub, {
      registrationToken: "wrong",
      retries: { ...FAST, registerAttempts: 1 },
    });
    await assert.rejects(hubClient.register(REGISTER), /got HTTP 401: bad registration token/);
  });
});

Deno.test("HubClient.sync() sends the four keys and reads the answer", async () => {
  await using hub = await FakeHub.start({ nextSyncAfterMs: 1234 });
  const hubClient = client(hub);
  await hubClient.register(REGISTER);
  const answer = await hubClient.sync({
    state: "waiting-for-jobs",
    job_id: "",
    job_result: "",
    interrupted_at: 0,
  });
  assert.deepEqual(answer, {
    action: "continue",
    job_id: "",
    shutdown_reason: "",
    next_sync_after: 1234,
  });
  const request = hub.requests.at(-1)!;
  assert.equal(request.path, "/api/v1/self_hosted_agents/sync");
  assert.equal(request.headers["authorization"], "Token token");
  assert.equal(
    request.body,
    `{"state":"waiting-for-jobs","job_id":"","job_result":"","interrupted_at":0}`,
  );
});

Deno.test("HubClient.sync() fails on anything but 200", async () => {
  await using hub = await FakeHub.start();
  const hubClient = client(hub);
  await hubClient.register(REGISTER);
  hub.setFailEvery(1);
  await assert.rejects(
    hubClient.sync({ state: "waiting-for-jobs", job_id: "", job_result: "", interrupted_at: 0 }),
    (error: Error) => {
      assert.ok(error instanceof HttpError);
      assert.match(error.message, /^sync request to .* got HTTP 500: injected failure$/);
      return true;
    },
  );
});

const WAITING = {
  state: "waiting-for-jobs",
  job_id: "",
  job_result: "",
  interrupted_at: 0,
} as const;

function jsonAnswer(value: unknown): () => Response {
  return () => new Response(JSON.stringify(value));
}

Deno.test("HubClient.sync() clamps next_sync_after to the longest timer", async () => {
  await using hub = await FakeHub.start();
  const hubClient = client(hub);
  await hubClient.register(REGISTER);
  for (const next of [2 ** 31, 2 ** 31 - 1, 1e15]) {
    hub.setRawAnswer("/sync", jsonAnswer({ action: "continue", next_sync_after: next }));
    const answer = await hubClient.sync(WAITING);
    assert.equal(answer.next_sync_after, 2 ** 31 - 1, `next_sync_after ${next}`);
  }
  assert.equal(MAX_DELAY_MS, 2 ** 31 - 1);
});

Deno.test("HubClient.sync() fails on a field of the wrong type", async (t) => {
  await using hub = await FakeHub.start();
  const hubClient = client(hub);
  await hubClient.register(REGISTER);
  const url = `http://${hub.endpoint}/api/v1/self_hosted_agents/sync`;
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ action: "run-job", job_id: 42 }, "'job_id' must be a string, got number"],
    [{ action: "run-job", job_id: ["a"] }, "'job_id' must be a string, got array"],
    [{ action: "run-job", job_id: {} }, "'job_id' must be a string, got object"],
    [{ action: true }, "'action' must be a string, got boolean"],
    [
      { action: "continue", next_sync_after: "1000" },
      "'next_sync_after' must be a number, got string",
    ],
  ];
  for (const [answer, message] of cases) {
    await t.step(JSON.stringify(answer), async () => {
      hub.setRawAnswer("/sync", jsonAnswer(answer));
      await assert.rejects(
        hubClient.sync(WAITING),
        (error: Error) => {
          assert.equal(error.message, `Cannot parse sync response from ${url}: ${message}`);
          return true;
        },
      );
    });
  }
  await t.step("null and missing fields read as empty", async () => {
    hub.setRawAnswer("/sync", jsonAnswer({ action: "continue", job_id: null }));
    assert.deepEqual(await hubClient.sync(WAITING), {
      action: "continue",
      job_id: "",
      shutdown_reason: "",
      next_sync_after: 0,
    });
  });
});

Deno.test("HubClient stops reading an answer larger than its cap", async (t) => {
  await using hub = await FakeHub.start();
  const hubClient = client(hub, { retries: { ...FAST, getJobAttempts: 1 } });
  await hubClient.register(REGISTER);
  const base = `http://${hub.endpoint}/api/v1/self_hosted_agents`;
  await t.step("sync: 1 MiB", async () => {
    hub.setRawAnswer("/sync", () => endlessAnswer());
    await assert.rejects(
      hubClient.sync(WAITING),
      new RegExp(`^Error: POST ${base}/sync: the answer is larger than 1048576 bytes$`),
    );
  });
  await t.step("refresh: 1 MiB", async () => {
    hub.setRawAnswer("/refresh", () => endlessAnswer());
    await assert.rejects(
      hubClient.refreshLogToken(),
      new RegExp(`^Error: POST ${base}/refresh: the answer is larger than 1048576 bytes$`),
    );
  });
  await t.step("get job: 64 MiB", async () => {
    hub.setRawAnswer("/jobs/j1", () => endlessAnswer());
    await assert.rejects(
      hubClient.getJob("j1"),
      new RegExp(`^Error: GET ${base}/jobs/j1: the answer is larger than 67108864 bytes$`),
    );
  });
});

Deno.test("HubClient.getJob() retries and reports the status", async (t) => {
  await t.step("returns the body after rejected attempts", async () => {
    await using hub = await FakeHub.start();
    const id = hub.assignJob({ commands: ["echo hi"] });
    hub.rejectGetJobAttempts(2);
    const hubClient = client(hub);
    await hubClient.register(REGISTER);
    const body = JSON.parse(await hubClient.getJob(id));
    assert.equal(body.job_id, id);
    assert.equal(hub.requests.filter((r) => r.path.endsWith(`/jobs/${id}`)).length, 3);
  });
  await t.step("unknown job", async () => {
    await using hub = await FakeHub.start();
    const hubClient = client(hub, { retries: { ...FAST, getJobAttempts: 2 } });
    await hubClient.register(REGISTER);
    await assert.rejects(hubClient.getJob("nope"), (error: Error) => {
      assert.ok(error instanceof HttpError);
      assert.equal(error.message, "failed to describe job, got HTTP 404");
      return true;
    });
    assert.equal(hub.requests.filter((r) => r.path.endsWith("/jobs/nope")).length, 2);
  });
});

Deno.test("HubClient.refreshLogToken() returns the new token", async () => {
  await using hub = await FakeHub.start();
  const hubClient = client(hub);
  await hubClient.register(REGISTER);
  assert.equal(await hubClient.refreshLogToken(), "new-token");
  const request = hub.requests.at(-1)!;
  assert.equal(request.method, "POST");
  assert.equal(request.path, "/api/v1/self_hosted_agents/refresh");
  assert.equal(request.body, "");
});

Deno.test("HubClient.disconnect() retries and reports status and body", async (t) => {
  await t.step("succeeds", async () => {
    await using hub = await FakeHub.start();
    const hubClient = client(hub);
    await hubClient.register(REGISTER);
    await hubClient.disconnect();
    assert.ok(hub.disconnected);
  });
  await t.step("fails", async () => {
    await using hub = await FakeHub.start();
    const hubClient = client(hub, { retries: { ...FAST, disconnectAttempts: 3 } });
    await hubClient.register(REGISTER);
    hub.setFailEvery(1);
    await assert.rejects(
      hubClient.disconnect(),
      /^HttpError: error while disconnecting, status: 500, body: injected failure$/,
    );
    assert.equal(hub.requests.filter((r) => r.path.endsWith("/disconnect")).length, 3);
  });
});

Deno.test("HubClient gives up on a request after the timeout", async () => {
  await using hub = await FakeHub.start();
  const hubClient = client(hub, { timeoutMs: 100, retries: { ...FAST, registerAttempts: 1 } });
  hub.setSlowness(1000);
  await assert.rejects(hubClient.register(REGISTER), /: timeout after 100ms$/);
  hub.setSlowness(0);
});

Deno.test("HubClient reports a refused connection", async () => {
  await using hub = await FakeHub.start();
  await hub.goDown();
  const hubClient = client(hub, { retries: { ...FAST, registerAttempts: 2 } });
  await assert.rejects(
    hubClient.register(REGISTER),
    new RegExp(`^Error: POST http://${hub.endpoint}/api/v1/self_hosted_agents/register: `),
  );
});

Deno.test("HubClient stops retrying when its signal aborts", async () => {
  await using hub = await FakeHub.start();
  hub.rejectRegisterAttempts(1000);
  const abort = new AbortController();
  const hubClient = client(hub, {
    signal: abort.signal,
    retries: { registerAttempts: 1000, registerIntervalMs: 60_000 },
  });
  const registering = hubClient.register(REGISTER);
  await hub.waitFor("one register attempt", () => hub.registrations.length === 1);
  abort.abort();
  await assert.rejects(registering);
  assert.equal(hub.registrations.length, 1);
});
