import assert from "node:assert/strict";
import {
  AUTH,
  type KeyKind,
  runAgent,
  SECRET,
  startCallbackReceiver,
  startServeAgent,
} from "./support/serve_agent.ts";
import { USER_AGENT, VERSION } from "../lib/util/version.ts";
import { DockerClient } from "../executors/docker_api.ts";
import { dockerSkipReason, TEST_IMAGES, testImagesReady } from "./support/test_images.ts";
import { startStatsdReceiver } from "./support/statsd_receiver.ts";

const dockerSkip = await dockerSkipReason();

/** Timestamps replaced by `T`, as SEMAPHORE_COMPAT.md §6.2 writes the typical log. */
function normalize(log: string): string {
  return log.replace(/"(timestamp|started_at|finished_at)":\d+/g, '"$1":T');
}

const HELLO_WORLD_LOG = [
  '{"event":"job_started","timestamp":T}',
  '{"event":"cmd_started","timestamp":T,"directive":"Exporting environment variables"}',
  '{"event":"cmd_finished","timestamp":T,"directive":"Exporting environment variables","exit_code":0,"started_at":T,"finished_at":T}',
  '{"event":"cmd_started","timestamp":T,"directive":"Injecting Files"}',
  '{"event":"cmd_finished","timestamp":T,"directive":"Injecting Files","exit_code":0,"started_at":T,"finished_at":T}',
  '{"event":"cmd_started","timestamp":T,"directive":"echo Hello World"}',
  '{"event":"cmd_output","timestamp":T,"output":"Hello World\\n"}',
  '{"event":"cmd_finished","timestamp":T,"directive":"echo Hello World","exit_code":0,"started_at":T,"finished_at":T}',
  '{"event":"cmd_started","timestamp":T,"directive":"Exporting environment variables"}',
  '{"event":"cmd_output","timestamp":T,"output":"Exporting SEMAPHORE_JOB_RESULT\\n"}',
  '{"event":"cmd_finished","timestamp":T,"directive":"Exporting environment variables","exit_code":0,"started_at":T,"finished_at":T}',
  '{"event":"job_finished","timestamp":T,"result":"passed"}',
].map((line) => line + "\n");

async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "serve_e2e_" });
  await Deno.mkdir(`${path}/home`);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

function jobBody(id: string, commands: string[], callbacks: string, extra = {}): string {
  return JSON.stringify({
    job_id: id,
    commands: commands.map((directive) => ({ directive })),
    callbacks: {
      finished: `${callbacks}/finished`,
      teardown_finished: `${callbacks}/teardown_finished`,
      token: "callback-token",
    },
    ...extra,
  });
}

Deno.test("agent serve runs a job over HTTPS: log with and without start_from, callbacks, archival", async () => {
  await using dir = await tempDir();
  await using receiver = startCallbackReceiver();
  await using agent = await startServeAgent({
    dir: dir.path,
    env: { HOME: `${dir.path}/home` },
    args: ["--callback-retry-attempts", "5"],
  });
  await agent.waitForLine(/: Callback retry attempts: 5$/);
  assert.ok(agent.lines.some((l) => l.endsWith(`: Agent ${VERSION} listening on ${agent.base}`)));

  let res = await agent.fetch("/status", { headers: AUTH });
  assert.equal(await res.text(), `{"state":"waiting-for-job","version":"${VERSION}"}`);

  res = await agent.fetch("/jobs", {
    method: "POST",
    headers: AUTH,
    body: jobBody("e2e-1", ["echo Hello World"], receiver.base),
  });
  assert.equal(res.status, 200);
  assert.equal(await res.text(), '{"message": "ok"}');
  res = await agent.fetch("/status", { headers: AUTH });
  assert.equal(await res.text(), `{"state":"job-received","version":"${VERSION}"}`);

  const [finished] = await receiver.waitFor(1);
  assert.equal(finished.path, "/finished");
  assert.equal(finished.body, '{"result": "passed"}');
  assert.equal(finished.headers.get("authorization"), "Bearer callback-token");
  assert.equal(finished.headers.get("user-agent"), USER_AGENT);
  assert.equal(finished.headers.get("content-type"), null);

  // The archivator's own fetch waits for job_finished; a plain reader polls for it.
  let log = "";
  while (!log.includes('"job_finished"')) {
    res = await agent.fetch("/jobs/e2e-1/log", { headers: AUTH });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/plain");
    log = await res.text();
  }
  assert.equal(normalize(log), HELLO_WORLD_LOG.join(""));
  res = await agent.fetch("/jobs/e2e-1/log?start_from=5", { headers: AUTH });
  assert.equal(normalize(await res.text()), HELLO_WORLD_LOG.slice(5).join(""));
  res = await agent.fetch("/jobs/e2e-1/log?start_from=12", { headers: AUTH });
  assert.equal(await res.text(), "");
  res = await agent.fetch("/jobs/other/log", { headers: AUTH });
  assert.equal(res.status, 403);
  assert.equal(await res.text(), '{"message": "job other is not running"}');
  assert.equal(receiver.received.length, 1, "no teardown before the archivator read");

  res = await agent.fetch("/jobs", {
    method: "POST",
    headers: AUTH,
    body: jobBody("e2e-2", ["true"], receiver.base),
  });
  assert.equal(res.status, 422);
  assert.equal(await res.text(), '{"message": "another job is already running"}');
  res = await agent.fetch("/jobs", {
    method: "POST",
    headers: AUTH,
    body: jobBody("e2e-1", ["true"], receiver.base),
  });
  assert.equal(await res.text(), '{"message": "job is already running"}');

  res = await agent.fetch("/jobs/e2e-1/log", {
    headers: { ...AUTH, "X-Client-Name": "archivator" },
  });
  assert.equal(await res.text(), log);
  const callbacks = await receiver.waitFor(2);
  assert.equal(callbacks[1].path, "/teardown_finished");
  assert.equal(callbacks[1].body, "{}");
  assert.equal(callbacks[1].headers.get("authorization"), "Bearer callback-token");

  await agent.waitForLine(/Job finished with result: passed/);
  res = await agent.fetch("/jobs/e2e-1/log", { headers: AUTH });
  assert.equal(res.status, 500, "the log file was deleted after teardown");
  const [line, json] = (await res.text()).split("\n");
  assert.deepEqual(JSON.parse(json), { message: line });
  const leftovers = [...Deno.readDirSync(dir.path)].map((e) => e.name);
  assert.ok(!leftovers.some((n) => n.startsWith("job_log_")), leftovers.join(" "));

  res = await agent.fetch("/agent_logs", { headers: AUTH });
  assert.equal(res.status, 200);
  assert.match(await res.text(), /"POST \/jobs HTTP\/1\.1" 200 17/);

  const status = await agent.stop("SIGTERM");
  assert.equal(status.code, 143);
});

Deno.test("agent serve redacts secrets from the job log, with --redacted-vars patterns", async () => {
  await using dir = await tempDir();
  await using receiver = startCallbackReceiver();
  await using agent = await startServeAgent({
    dir: dir.path,
    env: { HOME: `${dir.path}/home` },
    args: ["--redacted-vars", "MY_*", "--callback-retry-attempts", "5"],
  });
  await agent.waitForLine(/listening on/);
  const b64 = (text: string) => btoa(text);
  const res = await agent.fetch("/jobs", {
    method: "POST",
    headers: AUTH,
    body: jobBody(
      "redact-1",
      ['echo "$DB_PASSWORD $MY_VAR"', "echo hunter2-secret"],
      receiver.base,
      {
        env_vars: [
          { name: "DB_PASSWORD", value: b64("hunter2-secret") },
          { name: "MY_VAR", value: b64("custom-secret") },
        ],
      },
    ),
  });
  assert.equal(res.status, 200);
  await receiver.waitFor(1);
  let log = "";
  while (!log.includes('"job_finished"')) {
    log = await (await agent.fetch("/jobs/redact-1/log", { headers: AUTH })).text();
  }
  assert.ok(log.includes('"output":"[REDACTED] [REDACTED]\\n"'), log);
  assert.ok(log.includes('"directive":"echo [REDACTED]"'), log);
  assert.ok(!log.includes("hunter2-secret") && !log.includes("custom-secret"), log);
  await (await agent.fetch("/jobs/redact-1/log", {
    headers: { ...AUTH, "X-Client-Name": "archivator" },
  })).text();
  await receiver.waitFor(2);
  await agent.waitForLine(/Job finished with result: passed/);
  assert.equal((await agent.stop("SIGTERM")).code, 143);
});

Deno.test("agent serve accepts EC (with and without parameters), PKCS#1 RSA and PKCS#8 keys", async (t) => {
  for (const kind of ["ec-with-params", "ec-sec1", "rsa-pkcs1", "pkcs8"] as KeyKind[]) {
    await t.step(kind, async () => {
      await using dir = await tempDir();
      await using agent = await startServeAgent({ dir: dir.path, keyKind: kind });
      const res = await agent.fetch("/is_alive");
      assert.equal(await res.text(), "yes");
      assert.equal((await agent.stop("SIGINT")).code, 130);
    });
  }
});

Deno.test("agent serve stays up under hostile input", async () => {
  await using dir = await tempDir();
  await using receiver = startCallbackReceiver();
  await using agent = await startServeAgent({ dir: dir.path, env: { HOME: `${dir.path}/home` } });
  const postJobs = async (body: string, headers: Record<string, string> = AUTH) => {
    const res = await agent.fetch("/jobs", { method: "POST", headers, body });
    return { status: res.status, body: await res.text() };
  };
  const header = (json: string) => btoa(json).replace(/=+$/, "");
  const hostile: Array<[string, Promise<{ status: number; body: string }>, number]> = [];
  const cases: Array<[string, () => Promise<{ status: number; body: string }>, number]> = [
    ["no token", () => postJobs("{}", {}), 401],
    ["wrong secret", () =>
      postJobs("{}", {
        Authorization:
          "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.4Adcj3UFYzPUVaVF43FmMab6RlaQD8A9V8wFzzht-KQ",
      }), 401],
    [
      "alg none",
      () => postJobs("{}", { Authorization: `Bearer ${header('{"alg":"none"}')}.e30.` }),
      401,
    ],
    ["garbage token", () => postJobs("{}", { Authorization: "Bearer x.y.z" }), 401],
    ["three-part header", () => postJobs("{}", { Authorization: "Bearer a b" }), 401],
    ["10 MB of garbage", () => postJobs("x".repeat(10 * 1024 * 1024)), 422],
    ["truncated JSON", () => postJobs('{"job_id": "x", "commands": [{"directive": "ec'), 422],
    ["wrong types", () => postJobs('{"job_id": ["x"], "commands": "echo"}'), 422],
    [
      "bad file mode type",
      () => postJobs('{"job_id": "x", "files": [{"path": "a", "content": "", "mode": 644}]}'),
      422,
    ],
    ["not an object", () => postJobs("42"), 422],
    ["unknown executor", () => postJobs('{"job_id": "x", "executor": "kubernetes"}'), 500],
  ];
  for (const [name, make, expected] of cases) hostile.push([name, make(), expected]);
  for (const [name, outcome, expected] of hostile) {
    assert.equal((await outcome).status, expected, name);
  }
  const res = await agent.fetch("/is_alive");
  assert.equal(await res.text(), "yes");
  const ok = await postJobs(jobBody("after", ["true"], receiver.base));
  assert.deepEqual(ok, { status: 200, body: '{"message": "ok"}' });
  await receiver.waitFor(1);
});

Deno.test("agent serve stops the running job on SIGTERM and reports it", async () => {
  await using dir = await tempDir();
  await using receiver = startCallbackReceiver();
  await using agent = await startServeAgent({ dir: dir.path, env: { HOME: `${dir.path}/home` } });
  const res = await agent.fetch("/jobs", {
    method: "POST",
    headers: AUTH,
    body: jobBody("long", ["sleep 600"], receiver.base),
  });
  assert.equal(await res.text(), '{"message": "ok"}');
  // The command runs once its cmd_started is in the log.
  for (;;) {
    const log = await (await agent.fetch("/jobs/long/log", { headers: AUTH })).text();
    if (log.includes('"directive":"sleep 600"')) break;
  }
  const status = await agent.stop("SIGTERM");
  assert.equal(status.code, 143);
  assert.deepEqual(receiver.received.map((r) => [r.path, r.body]), [
    ["/finished", '{"result": "stopped"}'],
    ["/teardown_finished", "{}"],
  ]);
  assert.ok(![...Deno.readDirSync(dir.path)].some((e) => e.name.startsWith("job_log_")));
});

Deno.test("agent serve takes the secret from a file and refuses bad configuration", async (t) => {
  await using dir = await tempDir();
  await t.step("secret file", async () => {
    await Deno.writeTextFile(`${dir.path}/secret`, `${SECRET}\n`);
    await using agent = await startServeAgent({
      dir: dir.path,
      args: ["--auth-token-secret-file", `${dir.path}/secret`],
      env: { SEMAPHORE_AGENT_AUTH_TOKEN_SECRET: "" },
    });
    const res = await agent.fetch("/status", { headers: AUTH });
    assert.equal(res.status, 200);
    await res.body?.cancel();
  });
  await t.step("StatsD flags", async () => {
    await using agent = await startServeAgent({
      dir: dir.path,
      args: ["--statsd-host", "127.0.0.1", "--statsd-port", "8125", "--statsd-namespace", "x.y"],
    });
    await agent.waitForLine(/: Sending metrics to StatsD at 127\.0\.0\.1:8125$/);
  });
  const fail = async (args: string[], env: Record<string, string>, message: RegExp) => {
    const out = await runAgent(["serve", "--port", "0", "--host", "127.0.0.1", ...args], {
      TMPDIR: dir.path,
      ...env,
    });
    assert.equal(out.code, 1, out.stderr);
    assert.match(out.stderr, message);
    assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
  };
  await t.step("no secret", async () => {
    await fail([], { SEMAPHORE_AGENT_AUTH_TOKEN_SECRET: "" }, /^agent: Auth token is empty\n$/);
  });
  await t.step("unreadable secret file", async () => {
    await fail(
      ["--auth-token-secret-file", `${dir.path}/missing`],
      {},
      /^agent: Cannot read --auth-token-secret-file .*missing/,
    );
  });
  await t.step("job limits that are not limits, from a flag or a variable", async () => {
    await fail(
      ["--auth-token-secret", "s", "--job-memory-limit", "lots"],
      {},
      /^agent: --job-memory-limit: 'lots' is not a memory size of at least 1 MiB \(e\.g\. 512M, 2G\)\n$/,
    );
    await fail(
      ["--auth-token-secret", "s"],
      { SEMAPHORE_AGENT_JOB_PIDS_LIMIT: "0" },
      /^agent: SEMAPHORE_AGENT_JOB_PIDS_LIMIT: '0' is not a positive number of processes\n$/,
    );
  });
  await t.step("missing certificate", async () => {
    await fail(
      ["--auth-token-secret", "s", "--tls-cert-path", `${dir.path}/nope.crt`],
      {},
      /^agent: Cannot read --tls-cert-path .*nope\.crt/,
    );
  });
  await t.step("key that is not a key", async () => {
    await Deno.writeTextFile(`${dir.path}/bad.key`, "not a key\n");
    await Deno.writeTextFile(
      `${dir.path}/fake.crt`,
      "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    );
    await fail(
      [
        "--auth-token-secret",
        "s",
        "--tls-cert-path",
        `${dir.path}/fake.crt`,
        "--tls-key-path",
        `${dir.path}/bad.key`,
      ],
      {},
      /^agent: Cannot use --tls-key-path .*bad\.key: not a PEM private key/,
    );
  });
  await t.step("bad --files entry", async () => {
    await fail(
      ["--auth-token-secret", "s", "--files", "a:b:c"],
      {},
      /^agent: Error parsing --files: a:b:c is not a valid file injection\n$/,
    );
  });
});

Deno.test("agent serve streams a large log completely", async () => {
  await using dir = await tempDir();
  await using receiver = startCallbackReceiver();
  await using agent = await startServeAgent({ dir: dir.path, env: { HOME: `${dir.path}/home` } });
  // About 20 MB of output: 200000 lines of 100 characters.
  const command = "yes $(printf '%0100d' 7) | head -n 200000";
  const res = await agent.fetch("/jobs", {
    method: "POST",
    headers: AUTH,
    body: jobBody("big", [command], receiver.base),
  });
  assert.equal(await res.text(), '{"message": "ok"}');
  await receiver.waitFor(1);
  const started = performance.now();
  const log = await (await agent.fetch("/jobs/big/log", {
    headers: { ...AUTH, "X-Client-Name": "archivator" },
  })).text();
  const seconds = (performance.now() - started) / 1000;
  const output = log.split("\n").filter((l) => l.includes('"cmd_output"'))
    .map((l) => JSON.parse(l).output as string).join("");
  assert.equal(output.split("\n").filter((l) => /^\d{100}$/.test(l)).length, 200000);
  assert.ok(log.endsWith('"result":"passed"}\n'));
  console.log(`streamed ${(log.length / 1e6).toFixed(1)} MB in ${seconds.toFixed(2)} s`);
  await receiver.waitFor(2);
});

Deno.test({
  name: "agent serve sends a container job's pull metrics to StatsD with its namespace and tags",
  ignore: dockerSkip !== undefined,
  async fn() {
    await testImagesReady();
    await using statsd = await startStatsdReceiver();
    await using docker = await DockerClient.connect();
    // An image of its own: docker_executor_test tags and removes another android image.
    const image = "agent-test/semaphoreci/android:serve-e2e";
    await docker.tagImage(TEST_IMAGES.bash, image);
    try {
      await using dir = await tempDir();
      await using receiver = startCallbackReceiver();
      await using agent = await startServeAgent({
        dir: dir.path,
        env: { HOME: `${dir.path}/home` },
        args: [
          "--statsd-host",
          "127.0.0.1",
          "--statsd-port",
          String(statsd.port),
          "--statsd-namespace",
          "serve.e2e",
        ],
      });
      const res = await agent.fetch("/jobs", {
        method: "POST",
        headers: AUTH,
        body: jobBody("statsd-1", ["true"], receiver.base, {
          executor: "dockercompose",
          compose: {
            containers: [{ name: `main-${crypto.randomUUID().slice(0, 8)}`, image }],
          },
        }),
      });
      assert.equal(await res.text(), '{"message": "ok"}');
      const [finished] = await receiver.waitFor(1);
      assert.equal(finished.body, '{"result": "passed"}');
      const packets = await statsd.received(2);
      const prefix = "tagged.serve.e2e.semaphoreci_android.no_tag.no_tag.";
      assert.equal(packets.length, 2, packets.join("\n"));
      assert.equal(packets[0], `${prefix}compose.docker.pull.rate:1|g`);
      assert.match(
        packets[1],
        new RegExp(
          `^${
            prefix.replaceAll(".", "\\.")
          }compose\\.docker\\.pull\\.duration:\\d+(\\.\\d+)?(e-\\d+)?\\|g$`,
        ),
      );
      // The archivator's fetch lets the teardown (and the container removal) finish.
      const log = await agent.fetch("/jobs/statsd-1/log", {
        headers: { ...AUTH, "X-Client-Name": "archivator" },
      });
      await log.text();
      await receiver.waitFor(2);
      await agent.waitForLine(/Job finished with result: passed/);
    } finally {
      await docker.removeImage(image);
    }
  },
});

async function withServeAgent(
  fn: (agent: Awaited<ReturnType<typeof startServeAgent>>) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const home = await Deno.makeTempDir();
  try {
    await using agent = await startServeAgent({ dir, env: { HOME: home } });
    await fn(agent);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.remove(home, { recursive: true }).catch(() => {});
  }
}

Deno.test("agent serve answers 500 for a push-logger job (hosted jobs get no refresh function)", async () => {
  // §5.1 step 3 with the server's `RefreshTokenFn: nil`: the HTTP logger cannot be created,
  // `http.Error(w, err, 500)` followed by `{"message": "<err>"}`.
  await withServeAgent(async (agent) => {
    const res = await agent.fetch("/jobs", {
      method: "POST",
      headers: AUTH,
      body: JSON.stringify({
        job_id: "push-job",
        commands: [{ directive: "echo hi" }],
        logger: { method: "push", url: "http://127.0.0.1:1/logs", token: "t" },
      }),
    });
    const body = await res.text();
    assert.equal(res.status, 500);
    assert.equal(
      body,
      'HTTP logger needs a refresh token function\n{"message": "HTTP logger needs a refresh token function"}',
    );
    const status = await agent.fetch("/status", { headers: AUTH });
    assert.equal(await status.text(), '{"state":"waiting-for-job","version":"' + VERSION + '"}');
  });
});

Deno.test("agent serve: GET /status has the Content-Type Go sniffs for its body", async () => {
  // `w.WriteHeader(200); fmt.Fprint(w, jsonString)`: net/http sniffs the first write, and JSON
  // is not in its sniff table, so the header is `text/plain; charset=utf-8` (as POST /jobs).
  await withServeAgent(async (agent) => {
    const status = await agent.fetch("/status", { headers: AUTH });
    await status.body?.cancel();
    assert.equal(status.headers.get("content-type"), "text/plain; charset=utf-8");
  });
});

Deno.test("agent serve writes the Common Log Format line raw, without the logrus prefix", async () => {
  // §7.1: gorilla/handlers.LoggingHandler(logfile, router) writes straight to the agent log
  // writer (file + stdout); only logrus lines carry the `Jan _2 15:04:05.000 : ` prefix.
  await withServeAgent(async (agent) => {
    const alive = await agent.fetch("/is_alive");
    await alive.body?.cancel();
    const line = await agent.waitForLine(/"GET \/is_alive HTTP\/[\d.]+" 200 3$/);
    assert.match(
      line,
      /^127\.0\.0\.1 - - \[\d{2}\/\w{3}\/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET \/is_alive HTTP\/[\d.]+" 200 3$/,
    );
  });
});
