/**
 * Regression tests from a review of `agent serve` and `agent start` against
 * SEMAPHORE_COMPAT.md §2.1, §3.1, §3.2, §5.1, §7 and §8. Each test pins one difference from the
 * original that the review reproduced on the wire or in the agent's output.
 *
 * @module
 */

import assert from "node:assert/strict";
import { loadConfig } from "../lib/start/config.ts";
import { AUTH, startServeAgent } from "./support/serve_agent.ts";
import { FakeHub } from "./support/fake_hub.ts";
import { VERSION } from "../lib/util/version.ts";

async function withConfigFile(text: string, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/config.yaml`;
  await Deno.writeTextFile(path, text);
  try {
    await fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("loadConfig() treats an empty SEMAPHORE_AGENT_* variable as unset, as viper does", async (t) => {
  // viper.getEnv: `return val, ok && (v.allowEmptyEnv || val != "")`; the agent never calls
  // AllowEmptyEnv(true), so `SEMAPHORE_AGENT_X=` falls through to the config file / default.
  const file = 'endpoint: "myorg.semaphoreci.com"\ntoken: "tok"\nupload-job-logs: always\n';
  await withConfigFile(file, async (path) => {
    const load = (env: Record<string, string>) =>
      loadConfig({ "config-file": path }, { getEnv: (name) => env[name] });
    await t.step("an empty string variable does not hide the config file value", async () => {
      const config = await load({
        SEMAPHORE_AGENT_ENDPOINT: "",
        SEMAPHORE_AGENT_UPLOAD_JOB_LOGS: "",
      });
      assert.equal(config.endpoint, "myorg.semaphoreci.com");
      assert.equal(config.uploadJobLogs, "always");
    });
    await t.step("an empty bool or int variable is the default, not an error", async () => {
      const config = await load({
        SEMAPHORE_AGENT_DISCONNECT_AFTER_JOB: "",
        SEMAPHORE_AGENT_DISCONNECT_AFTER_IDLE_TIMEOUT: "",
        SEMAPHORE_AGENT_NO_HTTPS: "",
      });
      assert.equal(config.disconnectAfterJob, false);
      assert.equal(config.disconnectAfterIdleTimeout, 0);
      assert.equal(config.noHttps, false);
    });
  });
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

Deno.test("agent start: a bool flag never takes the next argument as its value (pflag NoOptDefVal)", async () => {
  // pflag: `--disconnect-after-job false` sets the flag to true and leaves `false` as a
  // positional argument; only `--disconnect-after-job=false` sets false.
  const home = await Deno.makeTempDir();
  const tmp = await Deno.makeTempDir();
  try {
    await using hub = await FakeHub.start({ nextSyncAfterMs: 200 });
    hub.scheduleShutdown();
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../main.ts", import.meta.url).pathname,
        "start",
        "--endpoint",
        hub.endpoint,
        "--token",
        hub.registrationToken,
        "--no-https",
        "--disconnect-after-job",
        "false",
      ],
      env: { HOME: home, TMPDIR: tmp },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(hub.registrations.length, 1);
    assert.equal(hub.registrations[0].single_job, true);
  } finally {
    await Deno.remove(home, { recursive: true }).catch(() => {});
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
});
