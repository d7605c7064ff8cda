import assert from "node:assert/strict";
import { generateKeyPair, SignJWT } from "jose";
import { createApp } from "../server/app.ts";
import { jwtAuth } from "../server/jwt_auth.ts";
import { JobController, type RunnableJob } from "../server/job_controller.ts";
import type { JobOptions } from "../lib/engine/job.ts";
import type { JobResult } from "../lib/engine/events.ts";
import { type Logger, silentLogger } from "../lib/util/agent_log.ts";
import { recordingLogger } from "./support/recording_logger.ts";
import { VERSION } from "../lib/util/version.ts";

const SECRET = "TzRVcspTmxhM9fUkdi1T/0kVXNETCi8UdZ8dLM8va4E";
/** The e2e token of the original's test suite: `{"alg":"HS256","typ":"JWT"}`, payload `{}`. */
const E2E_TOKEN =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.gLEycyHdyRRzUpauBxdDFmxT5KoOApFO5MHuvWPgFtY";
const AUTH = { Authorization: `Bearer ${E2E_TOKEN}` };
const key = new TextEncoder().encode(SECRET);

/**
 * A small real job for the HTTP tests: it writes the events of its commands into the event log
 * the controller gave it (each command `echo X` prints `X\n`), the command `block` waits until
 * the job is stopped or `release()`d, and the teardown hooks run as the real job runs them.
 */
class ScriptedJob implements RunnableJob {
  static created: ScriptedJob[] = [];
  readonly options: JobOptions;
  #stopped = false;
  #gate = Promise.withResolvers<void>();
  #done = Promise.withResolvers<JobResult>();
  #jobFinishedLogged = Promise.withResolvers<void>();
  #running: Promise<JobResult> | undefined;

  constructor(options: JobOptions) {
    this.options = options;
    ScriptedJob.created.push(this);
  }

  static create(options: JobOptions): RunnableJob {
    if (options.request.commands.some((c) => c.directive === "explode")) {
      throw new Error("cannot build this job");
    }
    return new ScriptedJob(options);
  }

  release(): void {
    this.#gate.resolve();
  }

  get jobFinishedLogged(): Promise<void> {
    return this.#jobFinishedLogged.promise;
  }

  get finished(): Promise<JobResult> {
    return this.#done.promise;
  }

  run(): Promise<JobResult> {
    this.#running ??= this.#run();
    return this.#running;
  }

  stop(): Promise<void> {
    this.#stopped = true;
    this.#gate.resolve();
    return Promise.resolve();
  }

  async #run(): Promise<JobResult> {
    const { sink, hooks } = this.options;
    const ts = 1700000000;
    sink.write({ event: "job_started", timestamp: ts });
    let result: JobResult = "passed";
    for (const { directive } of this.options.request.commands) {
      if (this.#stopped) break;
      sink.write({ event: "cmd_started", timestamp: ts, directive });
      if (directive === "block") await this.#gate.promise;
      else if (directive.startsWith("echo ")) {
        sink.write({ event: "cmd_output", timestamp: ts, output: `${directive.slice(5)}\n` });
      }
      const exit_code = this.#stopped ? 1 : directive === "false" ? 1 : 0;
      sink.write({
        event: "cmd_finished",
        timestamp: ts,
        directive,
        exit_code,
        started_at: ts,
        finished_at: ts,
      });
      if (exit_code !== 0) {
        result = "failed";
        break;
      }
    }
    if (this.#stopped) result = "stopped";
    await hooks?.beforeJobFinished?.(result);
    sink.write({ event: "job_finished", timestamp: ts, result });
    this.#jobFinishedLogged.resolve();
    await hooks?.afterJobFinished?.(result);
    this.#done.resolve(result);
    return result;
  }
}

interface Callback {
  readonly path: string;
  readonly body: string;
  readonly authorization: string | null;
}

/** A real callback receiver on 127.0.0.1. */
function startCallbackReceiver() {
  const received: Callback[] = [];
  const waiters: Array<() => void> = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    received.push({
      path: new URL(req.url).pathname,
      body: await req.text(),
      authorization: req.headers.get("authorization"),
    });
    for (const w of waiters.splice(0)) w();
    return new Response("ok");
  });
  return {
    base: `http://127.0.0.1:${server.addr.port}`,
    received,
    async waitFor(n: number): Promise<Callback[]> {
      while (received.length < n) await new Promise<void>((r) => waiters.push(r));
      return received;
    },
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

async function setup(options: { maxBodyBytes?: number; logger?: Logger } = {}) {
  const dir = await Deno.makeTempDir({ prefix: "server_app_test_" });
  const logger = options.logger ?? silentLogger;
  const jobs = new JobController({
    logger,
    createJob: ScriptedJob.create,
    logDir: dir,
    callbackRetryAttempts: 3,
    callbackRetryDelayMs: 10,
    uploadJobLog: () => Promise.resolve(),
  });
  const app = createApp({
    auth: jwtAuth({ secret: SECRET }),
    jobs,
    agentLogPath: `${dir}/agent_log`,
    logger,
    maxBodyBytes: options.maxBodyBytes,
  });
  return {
    app,
    jobs,
    dir,
    async [Symbol.asyncDispose]() {
      // Let a job that is still running end, so no timer or file outlives the test.
      for (const job of ScriptedJob.created.splice(0)) {
        await job.stop();
      }
      await jobs.shutdown(100);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function jobRequest(id: string, commands: string[] = ["echo hello"], callbacks?: string): string {
  return JSON.stringify({
    job_id: id,
    commands: commands.map((directive) => ({ directive })),
    callbacks: callbacks
      ? {
        finished: `${callbacks}/finished`,
        teardown_finished: `${callbacks}/teardown_finished`,
        token: "cb-token",
      }
      : undefined,
  });
}

function post(path: string, body: string, headers: Record<string, string> = AUTH): Request {
  return new Request(`http://localhost${path}`, { method: "POST", body, headers });
}

Deno.test("GET /is_alive answers yes without a token", async () => {
  await using t = await setup();
  const res = await t.app.request("/is_alive");
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "yes");
});

Deno.test("GET /status reports waiting-for-job, then job-received forever", async () => {
  await using t = await setup();
  let res = await t.app.request("/status", { headers: AUTH });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.equal(await res.text(), `{"state":"waiting-for-job","version":"${VERSION}"}`);
  res = await t.app.request(post("/jobs", jobRequest("j1")));
  assert.equal(await res.text(), '{"message": "ok"}');
  res = await t.app.request("/status", { headers: AUTH });
  assert.equal(await res.text(), `{"state":"job-received","version":"${VERSION}"}`);
});

Deno.test("every endpoint but /is_alive needs a token", async () => {
  await using t = await setup();
  for (
    const [method, path] of [
      ["GET", "/status"],
      ["POST", "/jobs"],
      ["GET", "/jobs/x/log"],
      ["POST", "/stop"],
      ["POST", "/jobs/terminate"],
      ["GET", "/agent_logs"],
    ]
  ) {
    const res = await t.app.request(path, { method });
    assert.equal(res.status, 401, `${method} ${path}`);
    assert.equal(await res.text(), '"An authorization header is required"\n');
  }
  assert.equal(t.jobs.state, "waiting-for-job");
});

Deno.test("jwtAuth() accepts HMAC tokens with any scheme word and checks present claims", async (t) => {
  await using s = await setup();
  const now = Math.floor(Date.now() / 1000);
  const sign = (claims: Record<string, unknown>, alg = "HS256", secret = key) =>
    new SignJWT(claims).setProtectedHeader({ alg, typ: "JWT" }).sign(secret);
  const status = async (authorization: string | undefined) => {
    const res = await s.app.request("/status", {
      headers: authorization === undefined ? {} : { Authorization: authorization },
    });
    return { status: res.status, body: await res.text() };
  };
  const ok = { status: 200, body: `{"state":"waiting-for-job","version":"${VERSION}"}` };
  const denied = (message: string) => ({ status: 401, body: `${JSON.stringify(message)}\n` });

  await t.step("the original's e2e token, Bearer and Token schemes", async () => {
    assert.deepEqual(await status(`Bearer ${E2E_TOKEN}`), ok);
    assert.deepEqual(await status(`Token ${E2E_TOKEN}`), ok);
    assert.deepEqual(await status(`Whatever ${E2E_TOKEN}`), ok);
  });
  await t.step("HS384 and HS512", async () => {
    assert.deepEqual(await status(`Bearer ${await sign({}, "HS384")}`), ok);
    assert.deepEqual(await status(`Bearer ${await sign({}, "HS512")}`), ok);
  });
  await t.step("valid exp, nbf and iat", async () => {
    const token = await sign({ exp: now + 60, nbf: now - 60, iat: now - 60 });
    assert.deepEqual(await status(`Bearer ${token}`), ok);
  });
  await t.step("no header", async () => {
    assert.deepEqual(await status(undefined), denied("An authorization header is required"));
  });
  await t.step("malformed header", async () => {
    assert.deepEqual(await status(E2E_TOKEN), denied("Invalid authorization token"));
    assert.deepEqual(await status(`Bearer ${E2E_TOKEN} x`), denied("Invalid authorization token"));
    assert.deepEqual(await status(`Bearer  ${E2E_TOKEN}`), denied("Invalid authorization token"));
    assert.deepEqual(
      await status("Bearer abc"),
      denied("token contains an invalid number of segments"),
    );
    assert.equal((await status("Bearer a.b.c")).status, 401);
    assert.equal((await status("Bearer ...")).status, 401);
  });
  await t.step("wrong secret", async () => {
    const token = await sign({}, "HS256", new TextEncoder().encode("another secret"));
    assert.deepEqual(await status(`Bearer ${token}`), denied("signature is invalid"));
  });
  await t.step("tampered payload", async () => {
    const [h, , sig] = E2E_TOKEN.split(".");
    const payload = btoa('{"admin":true}').replace(/=+$/, "");
    assert.deepEqual(await status(`Bearer ${h}.${payload}.${sig}`), denied("signature is invalid"));
  });
  await t.step("alg none", async () => {
    const header = btoa('{"alg":"none","typ":"JWT"}').replace(/=+$/, "");
    assert.deepEqual(await status(`Bearer ${header}.e30.`), denied("invalid authorization token"));
  });
  await t.step("RS256 token", async () => {
    const { privateKey } = await generateKeyPair("RS256");
    const token = await new SignJWT({}).setProtectedHeader({ alg: "RS256" }).sign(privateKey);
    assert.deepEqual(await status(`Bearer ${token}`), denied("invalid authorization token"));
  });
  await t.step("ES256 token", async () => {
    const { privateKey } = await generateKeyPair("ES256");
    const token = await new SignJWT({}).setProtectedHeader({ alg: "ES256" }).sign(privateKey);
    assert.deepEqual(await status(`Bearer ${token}`), denied("invalid authorization token"));
  });
  await t.step("expired", async () => {
    assert.deepEqual(
      await status(`Bearer ${await sign({ exp: now - 1 })}`),
      denied("token is expired"),
    );
  });
  await t.step("nbf in the future", async () => {
    assert.deepEqual(
      await status(`Bearer ${await sign({ nbf: now + 600 })}`),
      denied("token is not valid yet"),
    );
  });
  await t.step("iat in the future", async () => {
    assert.deepEqual(
      await status(`Bearer ${await sign({ iat: now + 600 })}`),
      denied("token used before issued"),
    );
  });
  await t.step("a claim of the wrong type", async () => {
    assert.deepEqual(
      await status(`Bearer ${await sign({ exp: "tomorrow" })}`),
      denied("token is expired"),
    );
  });
});

Deno.test("routing answers 301, 404 and 405 like gorilla/mux with strict slash", async (t) => {
  await using s = await setup();
  await t.step("trailing slash redirects with the query kept", async () => {
    const res = await s.app.request("/status/?a=1", { headers: AUTH });
    assert.equal(res.status, 301);
    assert.equal(res.headers.get("location"), "/status?a=1");
    assert.equal(await res.text(), '<a href="/status?a=1">Moved Permanently</a>.\n\n');
    const log = await s.app.request("/jobs/abc/log/");
    assert.equal(log.status, 301);
    assert.equal(log.headers.get("location"), "/jobs/abc/log");
    await log.body?.cancel();
    const stop = await s.app.request("/stop/", { method: "POST" });
    assert.equal(stop.status, 301);
    assert.equal(stop.headers.get("location"), "/stop");
    assert.equal(await stop.text(), "");
  });
  await t.step("unclean paths redirect to the clean path", async () => {
    const res = await s.app.request("//is_alive");
    assert.equal(res.status, 301);
    assert.equal(res.headers.get("location"), "/is_alive");
    await res.body?.cancel();
  });
  await t.step("unknown paths get 404 page not found", async () => {
    for (const path of ["/", "/nope", "/jobs/a/b/log", "/job_logs", "/jobs/x/plain_logs"]) {
      const res = await s.app.request(path, { headers: AUTH });
      assert.equal(res.status, 404, path);
      assert.equal(await res.text(), "404 page not found\n");
    }
  });
  await t.step("a known path with the wrong method gets an empty 405", async () => {
    for (
      const [method, path] of [
        ["POST", "/is_alive"],
        ["HEAD", "/is_alive"],
        ["POST", "/status"],
        ["GET", "/jobs"],
        ["GET", "/stop"],
        ["GET", "/jobs/terminate"],
        ["DELETE", "/jobs/x/log"],
        ["POST", "/status/"],
      ]
    ) {
      const res = await s.app.request(path, { method, headers: AUTH });
      assert.equal(res.status, 405, `${method} ${path}`);
      assert.equal(await res.text(), "");
    }
  });
});

Deno.test("POST /jobs answers 422 for a body that is not a job request", async () => {
  await using t = await setup();
  for (
    const body of [
      "",
      "{",
      '{"job_id": "x", "commands": [',
      "[]",
      '{"job_id": 5}',
      '{"commands": [{"directive": 1}]}',
      '{"files": [{"path": "a", "content": "", "mode": 644}]}',
    ]
  ) {
    const res = await t.app.request(post("/jobs", body));
    assert.equal(res.status, 422, body);
    const text = await res.text();
    const [line, json] = text.split("\n");
    assert.ok(line.length > 0);
    assert.deepEqual(JSON.parse(json), { message: line }, text);
  }
  assert.equal(t.jobs.state, "waiting-for-job");
});

Deno.test("POST /jobs answers 422 naming the field for an env var name that is not a shell name", async () => {
  await using t = await setup();
  for (
    const [name, shown] of [
      ["A;touch /tmp/x", '"A;touch /tmp/x"'],
      ["$(touch /tmp/x)", '"$(touch /tmp/x)"'],
      ["A\ntouch /tmp/x", '"A\\ntouch /tmp/x"'],
    ]
  ) {
    const body = JSON.stringify({
      job_id: "e",
      commands: [],
      env_vars: [{ name: "A", value: "" }, { name: "B", value: "" }, { name: "C", value: "" }, {
        name,
        value: "",
      }],
    });
    const res = await t.app.request(post("/jobs", body));
    assert.equal(res.status, 422, name);
    const message = `env_vars[3].name: ${shown} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)`;
    const [line, json] = (await res.text()).split("\n");
    assert.equal(line, message);
    assert.deepEqual(JSON.parse(json), { message });
  }
  assert.equal(t.jobs.state, "waiting-for-job");
});

Deno.test("POST /jobs ignores unknown fields and answers ok", async () => {
  await using t = await setup();
  const body = JSON.stringify({ job_id: "u", unknown: { deep: [1, 2] }, commands: [] });
  const res = await t.app.request(post("/jobs", body));
  assert.equal(res.status, 200);
  assert.equal(await res.text(), '{"message": "ok"}');
});

Deno.test("POST /jobs answers 500 for a job that cannot be built, and accepts the next", async () => {
  await using t = await setup();
  let res = await t.app.request(post("/jobs", JSON.stringify({ job_id: "a", executor: "k8s" })));
  assert.equal(res.status, 500);
  assert.equal(await res.text(), 'unknown executor type\n{"message": "unknown executor type"}');
  res = await t.app.request(post("/jobs", jobRequest("b", ["explode"])));
  assert.equal(res.status, 500);
  assert.equal(await res.text(), 'cannot build this job\n{"message": "cannot build this job"}');
  assert.equal(t.jobs.state, "waiting-for-job");
  res = await t.app.request(post("/jobs", jobRequest("c")));
  assert.equal(await res.text(), '{"message": "ok"}');
});

Deno.test("POST /jobs accepts one job: same id is idempotent, another id gets 422", async () => {
  await using t = await setup();
  let res = await t.app.request(post("/jobs", jobRequest("one", ["block"])));
  assert.equal(await res.text(), '{"message": "ok"}');
  res = await t.app.request(post("/jobs", jobRequest("one")));
  assert.equal(res.status, 200);
  assert.equal(await res.text(), '{"message": "job is already running"}');
  res = await t.app.request(post("/jobs", jobRequest("two")));
  assert.equal(res.status, 422);
  assert.equal(await res.text(), '{"message": "another job is already running"}');
  res = await t.app.request(post("/jobs", "{bad"));
  assert.equal(res.status, 422, "a bad body is still a bad body");
  await res.body?.cancel();
  assert.equal(ScriptedJob.created.length, 1);
});

Deno.test("20 concurrent POST /jobs with different ids: one 200, nineteen 422", async () => {
  await using t = await setup();
  const responses = await Promise.all(
    Array.from({ length: 20 }, (_, i) => t.app.request(post("/jobs", jobRequest(`id-${i}`)))),
  );
  const statuses = responses.map((r) => r.status).sort();
  await Promise.all(responses.map((r) => r.body?.cancel()));
  assert.deepEqual(statuses, [200, ...Array(19).fill(422)]);
  assert.equal(ScriptedJob.created.length, 1);
});

Deno.test("20 concurrent POST /jobs with the same id: all 200, exactly one ok", async () => {
  await using t = await setup();
  const responses = await Promise.all(
    Array.from({ length: 20 }, () => t.app.request(post("/jobs", jobRequest("same")))),
  );
  assert.deepEqual(responses.map((r) => r.status), Array(20).fill(200));
  const bodies = (await Promise.all(responses.map((r) => r.text()))).sort();
  assert.deepEqual(bodies, [
    ...Array(19).fill('{"message": "job is already running"}'),
    '{"message": "ok"}',
  ]);
  assert.equal(ScriptedJob.created.length, 1);
});

Deno.test("POST /jobs handles 10 MB bodies and refuses bodies over the limit", async () => {
  await using t = await setup({ maxBodyBytes: 16 * 1024 * 1024 });
  const tenMb = 10 * 1024 * 1024;
  let res = await t.app.request(post("/jobs", "x".repeat(tenMb)));
  assert.equal(res.status, 422);
  await res.body?.cancel();
  res = await t.app.request(
    post("/jobs", `{"job_id": "big", "commands": [${"1,".repeat(tenMb / 2)}`),
  );
  assert.equal(res.status, 422);
  await res.body?.cancel();
  const value = btoa("v".repeat(tenMb * 3 / 4));
  const valid = JSON.stringify({ job_id: "big", env_vars: [{ name: "BIG", value }] });
  assert.ok(valid.length >= tenMb);
  res = await t.app.request(post("/jobs", valid));
  assert.equal(res.status, 200);
  assert.equal(await res.text(), '{"message": "ok"}');
  res = await t.app.request(post("/jobs", "y".repeat(17 * 1024 * 1024)));
  assert.equal(res.status, 413);
  await res.body?.cancel();
});

Deno.test("GET /jobs/{id}/log answers 404 before a job, 403 for another id", async () => {
  await using t = await setup();
  let res = await t.app.request("/jobs/abc/log", { headers: AUTH });
  assert.equal(res.status, 404);
  assert.equal(res.headers.get("content-type"), "text/plain");
  assert.equal(await res.text(), '{"message": "job abc is not running"}');
  await (await t.app.request(post("/jobs", jobRequest("real", ["block"])))).body?.cancel();
  res = await t.app.request("/jobs/abc/log", { headers: AUTH });
  assert.equal(res.status, 403);
  assert.equal(res.headers.get("content-type"), "text/plain");
  assert.equal(await res.text(), '{"message": "job abc is not running"}');
});

Deno.test("GET /jobs/{id}/log streams JSONL lines from start_from", async () => {
  await using t = await setup();
  await (await t.app.request(post("/jobs", jobRequest("L", ["echo a", "echo b", "block"]))))
    .body?.cancel();
  const lines = [
    '{"event":"job_started","timestamp":1700000000}\n',
    '{"event":"cmd_started","timestamp":1700000000,"directive":"echo a"}\n',
    '{"event":"cmd_output","timestamp":1700000000,"output":"a\\n"}\n',
    '{"event":"cmd_finished","timestamp":1700000000,"directive":"echo a","exit_code":0,"started_at":1700000000,"finished_at":1700000000}\n',
    '{"event":"cmd_started","timestamp":1700000000,"directive":"echo b"}\n',
    '{"event":"cmd_output","timestamp":1700000000,"output":"b\\n"}\n',
    '{"event":"cmd_finished","timestamp":1700000000,"directive":"echo b","exit_code":0,"started_at":1700000000,"finished_at":1700000000}\n',
    '{"event":"cmd_started","timestamp":1700000000,"directive":"block"}\n',
  ];
  const get = async (query: string) => {
    const res = await t.app.request(`/jobs/L/log${query}`, { headers: AUTH });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/plain");
    return await res.text();
  };
  assert.equal(await get(""), lines.join(""));
  assert.equal(await get("?start_from=0"), lines.join(""));
  assert.equal(await get("?start_from=3"), lines.slice(3).join(""));
  assert.equal(await get("?start_from=%2B7"), lines.slice(7).join(""));
  assert.equal(await get("?start_from=+7"), lines.join(""), "a query + is a space");
  assert.equal(await get("?start_from=8"), "");
  assert.equal(await get("?start_from=1000"), "");
  assert.equal(await get("?start_from=abc"), lines.join(""));
  assert.equal(await get("?start_from=-4"), lines.join(""));
});

Deno.test("teardown: finished callback, archivator fetch, log deleted, teardown callback", async () => {
  await using receiver = startCallbackReceiver();
  const logger = recordingLogger({ levels: false });
  await using t = await setup({ logger });
  await (await t.app.request(post("/jobs", jobRequest("T", ["echo hi"], receiver.base)))).body
    ?.cancel();
  const [finished] = await receiver.waitFor(1);
  assert.deepEqual(finished, {
    path: "/finished",
    body: '{"result": "passed"}',
    authorization: "Bearer cb-token",
  });
  const job = ScriptedJob.created[0];
  await job.jobFinishedLogged;

  // A reader that is not the archivator does not release the teardown.
  let res = await t.app.request("/jobs/T/log", { headers: AUTH });
  const full = await res.text();
  assert.match(full, /"event":"job_finished","timestamp":1700000000,"result":"passed"}\n$/);
  // Nor does an archivator fetch that is abandoned half-way.
  res = await t.app.request("/jobs/T/log", { headers: { ...AUTH, "X-Client-Name": "archivator" } });
  await res.body?.cancel();
  assert.equal(receiver.received.length, 1);

  res = await t.app.request("/jobs/T/log?start_from=2", {
    headers: { ...AUTH, "X-Client-Name": "archivator" },
  });
  assert.equal(await res.text(), full.split("\n").slice(2).join("\n"));
  const callbacks = await receiver.waitFor(2);
  assert.deepEqual(callbacks[1], {
    path: "/teardown_finished",
    body: "{}",
    authorization: "Bearer cb-token",
  });
  assert.equal(await job.finished, "passed");

  // The log file is gone: the original answers 500 with the read error.
  res = await t.app.request("/jobs/T/log", { headers: AUTH });
  assert.equal(res.status, 500);
  const [line, json] = (await res.text()).split("\n");
  assert.deepEqual(JSON.parse(json), { message: line });
  assert.deepEqual([...Deno.readDirSync(t.dir)], []);
  assert.ok(logger.lines.some((l) => l.includes("Job log was archived")));
});

Deno.test("an archivator fetch during the job does not count for the teardown", async () => {
  await using receiver = startCallbackReceiver();
  const logger = recordingLogger();
  await using t = await setup({ logger });
  await (await t.app.request(post("/jobs", jobRequest("A", ["block"], receiver.base)))).body
    ?.cancel();
  const early = await t.app.request("/jobs/A/log", {
    headers: { ...AUTH, "X-Client-Name": "archivator" },
  });
  assert.match(await early.text(), /"directive":"block"/);
  ScriptedJob.created[0].release();
  // After job_finished the teardown either waits for an archivator fetch (the early one did
  // not count) or, wrongly, goes on to the teardown_finished callback.
  const waiting = await Promise.race([
    logger.waitForLine((l) => l === "info: [job=A] Waiting for the job log to be archived")
      .then(() => true),
    receiver.waitFor(2).then(() => false),
  ]);
  assert.ok(waiting, "the teardown went on without an archivator fetch after the job");
  assert.equal(receiver.received.length, 1);
  const late = await t.app.request("/jobs/A/log", {
    headers: { ...AUTH, "X-Client-Name": "archivator" },
  });
  await late.text();
  await receiver.waitFor(2);
  assert.equal(receiver.received[1].path, "/teardown_finished");
});

Deno.test("POST /stop and /jobs/terminate stop the job; without a job they do nothing", async () => {
  await using receiver = startCallbackReceiver();
  await using t = await setup();
  let res = await t.app.request(post("/stop", ""));
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "");
  res = await t.app.request(post("/jobs/terminate", ""));
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "");

  await (await t.app.request(post("/jobs", jobRequest("S", ["block"], receiver.base)))).body
    ?.cancel();
  res = await t.app.request(post("/jobs/terminate", ""));
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "");
  const [finished] = await receiver.waitFor(1);
  assert.equal(finished.body, '{"result": "stopped"}');
  await (await t.app.request("/jobs/S/log", {
    headers: { ...AUTH, "X-Client-Name": "archivator" },
  })).text();
  assert.equal(await ScriptedJob.created[0].finished, "stopped");
});

Deno.test("GET /agent_logs serves the agent log file, 404 when missing", async () => {
  await using t = await setup();
  let res = await t.app.request("/agent_logs", { headers: AUTH });
  assert.equal(res.status, 404);
  assert.equal(await res.text(), "");
  await Deno.writeTextFile(`${t.dir}/agent_log`, "Aug 11 21:07:26.243 : hello\n");
  res = await t.app.request("/agent_logs", { headers: AUTH });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/plain");
  assert.equal(await res.text(), "Aug 11 21:07:26.243 : hello\n");
});

Deno.test("every request gets a Common Log Format line in the agent log", async () => {
  const logger = recordingLogger({ levels: false });
  await using t = await setup({ logger });
  await (await t.app.request("/is_alive?x=1")).text();
  await (await t.app.request("/nope")).text();
  await (await t.app.request("/status")).text();
  const clf = logger.lines.filter((l) => l.includes("HTTP/1.1"));
  const time = String.raw`\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]`;
  assert.equal(clf.length, 3, clf.join("\n"));
  assert.match(clf[0], new RegExp(`^- - - ${time} "GET /is_alive\\?x=1 HTTP/1\\.1" 200 3$`));
  assert.match(clf[1], new RegExp(`^- - - ${time} "GET /nope HTTP/1\\.1" 404 19$`));
  assert.match(clf[2], new RegExp(`^- - - ${time} "GET /status HTTP/1\\.1" 401 38$`));
});
