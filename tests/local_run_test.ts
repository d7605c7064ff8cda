import assert from "node:assert/strict";
import { runJobFile } from "../lib/run/local_run.ts";
import { UsageError } from "../lib/util/errors.ts";
import { makeHome, testShellEnv } from "./support/job_harness.ts";

/** Job shells get an empty HOME: the machine's login profile is not part of these tests. */
const home = await makeHome();
globalThis.addEventListener("unload", () => Deno.removeSync(home, { recursive: true }));

function env(): Promise<Record<string, string>> {
  return Promise.resolve(testShellEnv(home));
}

async function writeJob(yaml: string): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".yaml" });
  await Deno.writeTextFile(path, yaml);
  return path;
}

Deno.test("runJobFile() prints the job readably and exits 0 when it passes", async () => {
  const path = await writeJob(
    'job_id: "a"\ncommands:\n  - directive: echo hello\n  - directive: "true"\n    alias: Nothing\n',
  );
  const logFile = await Deno.makeTempFile({ suffix: ".jsonl" });
  let out = "";
  const code = await runJobFile({
    path,
    logFile,
    write: (t) => out += t,
    color: false,
    shellEnv: await env(),
  });
  assert.equal(code, 0);
  assert.match(out, /\$ echo hello\nhello\n✓ exit 0 \(\d+ms\)\n/);
  assert.match(out, /\$ Nothing\nRunning: true\n✓ exit 0/);
  assert.match(out, /\nJob passed in /);
  const lines = (await Deno.readTextFile(logFile)).trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines[0].event, "job_started");
  assert.deepEqual(lines.at(-1).result, "passed");
  assert.ok(lines.some((l) => l.event === "cmd_output" && l.output === "hello\n"));
  await Deno.remove(path);
  await Deno.remove(logFile);
});

Deno.test("runJobFile() exits 1 for a failed job and 130 for a stopped one", async () => {
  const failing = await writeJob("commands:\n  - directive: exit 3\n");
  assert.equal(await runJobFile({ path: failing, write: () => {}, shellEnv: await env() }), 1);
  const stopping = await writeJob("commands:\n  - directive: echo 'exit 130' | sh\n");
  assert.equal(await runJobFile({ path: stopping, write: () => {}, shellEnv: await env() }), 130);
  await Deno.remove(failing);
  await Deno.remove(stopping);
});

Deno.test("runJobFile() rejects a bad job file with one line naming file and field", async () => {
  const bad = await writeJob("commands:\n  - directive: [1, 2]\n");
  await assert.rejects(
    () => runJobFile({ path: bad, write: () => {} }),
    (error: unknown) => {
      assert.ok(error instanceof UsageError);
      assert.equal(error.exitCode, 2);
      assert.ok(error.message.includes(bad), error.message);
      assert.ok(error.message.includes("commands[0].directive"), error.message);
      assert.ok(!error.message.includes("\n"));
      return true;
    },
  );
  await assert.rejects(() => runJobFile({ path: `${bad}.missing`, write: () => {} }), UsageError);
  const unknown = await writeJob("executor: kubernetes\ncommands: []\n");
  await assert.rejects(() => runJobFile({ path: unknown, write: () => {} }), {
    message: `${unknown}: unknown executor type`,
  });
  await Deno.remove(bad);
  await Deno.remove(unknown);
});

Deno.test("agent run stops the job on SIGTERM, skips epilogues and exits 130", async () => {
  const marker = `agent-sigterm-${crypto.randomUUID()}`;
  const path = await writeJob(
    `commands:\n  - directive: "bash -c 'sleep 300; : ${marker}'"\n` +
      `epilogue_always_commands:\n  - directive: echo epilogue-ran\n`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../main.ts", import.meta.url).pathname, "run", path],
    stdout: "piped",
    stderr: "null",
    env: { HOME: home, DENO_DIR: denoDir() },
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes(marker)) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  // The command is written to the shell right after it is shown; wait until it runs.
  for (let i = 0; i < 500 && !psContains(marker); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(psContains(marker), `the job's command runs:\n${out}`);
  child.kill("SIGTERM");
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  const status = await child.status;
  assert.equal(status.code, 130);
  assert.ok(!out.includes("epilogue-ran"));
  assert.match(out, /Job stopped/);
  assert.ok(!psContains(marker), "no process of the job is left");
  await Deno.remove(path);
});

function psContains(text: string): boolean {
  const ps = new Deno.Command("ps", { args: ["-eo", "args"], stdout: "piped" }).outputSync();
  return new TextDecoder().decode(ps.stdout).split("\n").some((l) =>
    l.includes(text) && !l.includes("ps -eo")
  );
}

/** Deno's cache, so a child with another HOME still finds the npm packages. */
function denoDir(): string {
  return Deno.env.get("DENO_DIR") ??
    `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`}/deno`;
}

Deno.test("agent run --log-format json writes the agent log on stderr as JSON lines naming the job", async () => {
  const path = await writeJob(`job_id: json-log-job\ncommands:\n  - directive: "true"\n`);
  const main = new URL("../main.ts", import.meta.url).pathname;
  const run = (format: string) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", main, "run", path, "--log-format", format],
      stdout: "null",
      stderr: "piped",
      env: { HOME: home, DENO_DIR: denoDir(), SEMAPHORE_AGENT_LOG_LEVEL: "debug" },
    }).output();
  try {
    const ok = await run("json");
    assert.equal(ok.code, 0);
    const lines = new TextDecoder().decode(ok.stderr).trimEnd().split("\n");
    const entries = lines.map((l) => JSON.parse(l));
    assert.ok(entries.length > 0);
    for (const entry of entries) {
      assert.deepEqual(Object.keys(entry), ["time", "level", "msg", "agent", "job_id"]);
      assert.equal(entry.job_id, "json-log-job");
    }
    const bad = await run("xml");
    assert.equal(bad.code, 2);
    assert.equal(
      new TextDecoder().decode(bad.stderr),
      "agent: Log format xml not supported (text, json)\n",
    );
  } finally {
    await Deno.remove(path);
  }
});
