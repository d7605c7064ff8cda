import assert from "node:assert/strict";
import { DockerClient } from "../executors/docker_api.ts";
import { HOST_DIR_LABEL, JOB_LABEL } from "../executors/docker_leftovers.ts";
import {
  dockerSkipReason,
  ensureTestImages,
  TEST_IMAGES,
  testImagesReady,
} from "./support/test_images.ts";
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

Deno.test("runJobFile() shows output without escape sequences and logs it unchanged", async () => {
  const path = await writeJob(
    "commands:\n  - directive: printf '\\033]52;c;QUFB\\007\\033[2J\\033[32mgreen\\033[0m\\n'\n",
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
  // deno-lint-ignore no-control-regex -- the escape sequences are what is checked
  assert.match(out, /\n\x1b\[32mgreen\x1b\[0m\n\x1b\[0m✓ exit 0/);
  assert.ok(!out.includes("\x1b]") && !out.includes("\x07"), JSON.stringify(out));
  assert.ok(!out.includes("\x1b[2J"), JSON.stringify(out));
  const log = await Deno.readTextFile(logFile);
  assert.ok(
    log.includes('"output":"\\u001b]52;c;QUFB\\u0007\\u001b[2J\\u001b[32mgreen\\u001b[0m\\n"'),
    log,
  );
  await Deno.remove(path);
  await Deno.remove(logFile);
});

Deno.test("runJobFile() creates the --log-file readable by its user alone", async () => {
  const path = await writeJob("commands:\n  - directive: echo hello\n");
  const dir = await Deno.makeTempDir({ prefix: "local_run_log_file_" });
  const previous = Deno.umask(0o000);
  try {
    const code = await runJobFile({
      path,
      logFile: `${dir}/job.jsonl`,
      write: () => {},
      shellEnv: await env(),
    });
    assert.equal(code, 0);
    assert.equal((await Deno.stat(`${dir}/job.jsonl`)).mode! & 0o777, 0o600);
  } finally {
    Deno.umask(previous);
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(path);
  }
});

Deno.test("runJobFile() prints what the job used after its result", async () => {
  const path = await writeJob("commands:\n  - directive: sleep 0.2\n");
  let out = "";
  const code = await runJobFile({
    path,
    write: (t) => out += t,
    color: false,
    shellEnv: await env(),
  });
  assert.equal(code, 0);
  assert.match(
    out,
    /\nJob passed in [^\n]+\nResources used: CPU \d+\.\d\d s user, \d+\.\d\d s system; peak memory [\d.]+ [KM]iB; peak processes \d+; block IO \S+ \S+ read, \S+ \S+ written; wall (0\.[2-9]|[1-9])\d* s\n$/,
  );
  await Deno.remove(path);
});

Deno.test("runJobFile() rejects a job limit that is not one with exit code 2", async () => {
  const path = await writeJob("commands:\n  - directive: echo never\n");
  let out = "";
  await assert.rejects(
    () => runJobFile({ path, write: (t) => out += t, limits: { pids: "many" } }),
    (error: unknown) => {
      assert.ok(error instanceof UsageError);
      assert.equal(error.exitCode, 2);
      assert.equal(error.message, "--job-pids-limit: 'many' is not a positive number of processes");
      return true;
    },
  );
  assert.equal(out, "");
  await Deno.remove(path);
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

Deno.test("runJobFile() rejects an env var name that is not a shell name, running nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "local_run_env_name_" });
  const marker = `${dir}/injected`;
  const path = await writeJob(
    `env_vars:\n  - name: "$(touch ${marker})"\n    value: YQ==\ncommands:\n  - directive: touch ${marker}\n`,
  );
  await assert.rejects(
    () => runJobFile({ path, write: () => {}, shellEnv: {} }),
    (error: unknown) => {
      assert.ok(error instanceof UsageError);
      assert.equal(error.exitCode, 2);
      assert.equal(
        error.message,
        `${path}: env_vars[0].name: "$(touch ${marker})" is not a variable name ` +
          "([A-Za-z_][A-Za-z0-9_]*)",
      );
      return true;
    },
  );
  await assert.rejects(() => Deno.stat(marker), Deno.errors.NotFound);
  await Deno.remove(path);
  await Deno.remove(dir, { recursive: true });
});

for (const signal of ["SIGTERM", "SIGHUP"] as const) {
  Deno.test(`agent run stops the job on ${signal}, skips epilogues and exits 130`, async () => {
    await stopsOn(signal);
  });
}

async function stopsOn(signal: Deno.Signal): Promise<void> {
  const marker = `agent-${signal.toLowerCase()}-${crypto.randomUUID()}`;
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
  child.kill(signal);
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
}

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

Deno.test("agent run of a shell job asks Docker only when a dead agent's job left its host dir", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "agent-docker-asked-" });
  // A daemon that hangs up at once: the agent counts it as unreachable and goes on.
  const socket = `${tmp}/docker.sock`;
  const listener = Deno.listen({ transport: "unix", path: socket });
  const accepted: string[] = [];
  let onAccepted = () => {};
  const accepting = (async () => {
    for await (const conn of listener) {
      const first = new Uint8Array(64);
      const n = await conn.read(first).catch(() => null);
      accepted.push(new TextDecoder().decode(first.subarray(0, n ?? 0)));
      conn.close();
      onAccepted();
    }
  })();
  /** Connections accepted so far: a probe of our own, accepted last, flushes the queue. */
  const acceptedNow = async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const probed = new Promise<void>((resolve, reject) => {
      onAccepted = () => accepted.includes("probe") && resolve();
      timer = setTimeout(() => reject(new Error("the probe was not accepted in 10 s")), 10_000);
    });
    const probe = await Deno.connect({ transport: "unix", path: socket });
    try {
      await probe.write(new TextEncoder().encode("probe"));
      await probed;
    } finally {
      clearTimeout(timer);
      probe.close();
    }
    accepted.splice(accepted.indexOf("probe"), 1);
    return accepted.length;
  };
  const path = await writeJob(`commands:\n  - directive: "true"\n`);
  const run = () =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../main.ts", import.meta.url).pathname, "run", path],
      stdout: "null",
      stderr: "piped",
      env: {
        HOME: home,
        DENO_DIR: denoDir(),
        TMPDIR: tmp,
        DOCKER_HOST: `unix://${socket}`,
        SEMAPHORE_AGENT_LOG_LEVEL: "debug",
      },
    }).output();
  try {
    const quiet = await run();
    assert.equal(quiet.code, 0, new TextDecoder().decode(quiet.stderr));
    assert.equal(await acceptedNow(), 0);

    // A dead agent's job: its host dir has an owner file that nobody locks.
    const dead = await Deno.makeTempDir({ dir: tmp, prefix: "agent-temp-directory-" });
    await Deno.writeTextFile(`${dead}/.owner`, `${Deno.hostname()}/999999999`);
    const swept = await run();
    const stderr = new TextDecoder().decode(swept.stderr);
    assert.equal(swept.code, 0, stderr);
    assert.ok(await acceptedNow() >= 1, stderr);
    assert.match(accepted[0], /^GET \S*\/version HTTP\/1\.1\r\n/); // the daemon's version
    assert.match(stderr, new RegExp(`Removed leftover job directory ${dead}\n`));
    await assert.rejects(Deno.stat(dead), Deno.errors.NotFound);
  } finally {
    listener.close();
    await accepting.catch(() => {});
    await Deno.remove(path);
    await Deno.remove(tmp, { recursive: true });
  }
});

/** `agent run` as a child process: the real CLI, with its own TMPDIR and HOME. */
function spawnAgentRun(
  args: readonly string[],
  options: { tmp: string; home?: string; cwd?: string },
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../main.ts", import.meta.url).pathname, "run", ...args],
    cwd: options.cwd,
    stdout: "piped",
    stderr: "piped",
    env: { HOME: options.home ?? home, DENO_DIR: denoDir(), TMPDIR: options.tmp },
  }).spawn();
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

/** Reads `stream` until `text` shows, then closes it (a reader such as `head` going away). */
async function closeAfter(stream: ReadableStream<Uint8Array>, text: string): Promise<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  await reader.cancel();
  return out;
}

Deno.test("agent run runs a job from a directory named echo under a login prompt", async () => {
  const parent = await Deno.makeTempDir({ prefix: "agent-run-test-" });
  await Deno.mkdir(`${parent}/echo`);
  await Deno.mkdir(`${parent}/tmp`);
  const profileHome = await makeHome();
  // The prompt of Debian's profile: it lands on the handshake marker's line.
  await Deno.writeTextFile(`${profileHome}/.bash_profile`, "PS1='\\u@\\h:\\w\\$ '\n");
  const path = await writeJob("commands:\n  - directive: echo from-echo-dir\n");
  const child = spawnAgentRun([path], {
    tmp: `${parent}/tmp`,
    home: profileHome,
    cwd: `${parent}/echo`,
  });
  const [status, out] = await Promise.all([
    child.status,
    readAll(child.stdout),
    child.stderr.cancel(),
  ]);
  assert.equal(status.code, 0, out);
  assert.match(out, /\$ echo from-echo-dir\nfrom-echo-dir\n✓ exit 0/);
  await Deno.remove(parent, { recursive: true });
  await Deno.remove(profileHome, { recursive: true });
  await Deno.remove(path);
});

Deno.test("agent run stops the job, cleans up and exits 1 with one line when stdout closes", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "agent-run-test-" });
  const marker = `agent-closed-stdout-${crypto.randomUUID()}`;
  const path = await writeJob(
    `env_vars:\n  - name: A\n    value: YQ==\n` +
      `commands:\n  - directive: "while true; do echo line; sleep 0.01; done; : ${marker}"\n` +
      `epilogue_always_commands:\n  - directive: echo epilogue-ran\n`,
  );
  const logFile = `${tmp}/job.jsonl`;
  const child = spawnAgentRun([path, "--log-file", logFile], { tmp });
  const [shown, stderr, status] = await Promise.all([
    closeAfter(child.stdout, "line\nline\n"),
    readAll(child.stderr),
    child.status,
  ]);
  assert.match(shown, /\$ while true/);
  assert.equal(status.code, 1);
  assert.equal(
    stderr,
    "agent: Cannot write the job's output: Broken pipe (os error 32); the job was stopped\n",
  );
  const events = (await Deno.readTextFile(logFile)).trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(events.at(-1).result, "stopped");
  assert.ok(!events.some((e) => e.directive === "echo epilogue-ran"), "no epilogue runs");
  // The job's env file and command directory are gone; only the log file stays.
  assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name), ["job.jsonl"]);
  assert.ok(!psContains(marker), "no process of the job is left");
  await Deno.remove(tmp, { recursive: true });
  await Deno.remove(path);
});

Deno.test("agent run stops the job and exits 1 with one line when --log-file is full", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "agent-run-test-" });
  const path = await writeJob(
    "env_vars:\n  - name: A\n    value: YQ==\ncommands:\n  - directive: echo hello\n",
  );
  const child = spawnAgentRun([path, "--log-file", "/dev/full"], { tmp });
  const [out, stderr, status] = await Promise.all([
    readAll(child.stdout),
    readAll(child.stderr),
    child.status,
  ]);
  assert.equal(status.code, 1);
  assert.equal(
    stderr,
    "agent: Cannot write the log file '/dev/full': No space left on device (os error 28); " +
      "the job was stopped\n",
  );
  assert.match(out, /\nJob stopped in /);
  assert.deepEqual([...Deno.readDirSync(tmp)], []);
  await Deno.remove(tmp, { recursive: true });
  await Deno.remove(path);
});

Deno.test("agent run stops a running job when --log-file fails in the middle", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "agent-run-test-" });
  const fifo = `${tmp}/log.fifo`;
  assert.ok((await new Deno.Command("mkfifo", { args: [fifo] }).output()).success);
  const path = await writeJob(
    "commands:\n  - directive: while true; do echo line; sleep 0.01; done\n" +
      "epilogue_always_commands:\n  - directive: echo epilogue-ran\n",
  );
  const child = spawnAgentRun([path, "--log-file", fifo], { tmp });
  // The log's reader goes away once the command's output flows, as a full disk would fail.
  const reader = await Deno.open(fifo, { read: true });
  await closeAfter(reader.readable, '"output":"line\\n');
  const [out, stderr, status] = await Promise.all([
    readAll(child.stdout),
    readAll(child.stderr),
    child.status,
  ]);
  assert.equal(status.code, 1);
  assert.equal(
    stderr,
    `agent: Cannot write the log file '${fifo}': Broken pipe (os error 32); the job was stopped\n`,
  );
  assert.match(out, /\nline\n/);
  assert.ok(!out.includes("epilogue-ran"));
  assert.match(out, /\n✗ exit 1 \(\d+(ms|\.\d+s)\)\n\nJob stopped in /);
  assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name), ["log.fifo"]);
  await Deno.remove(tmp, { recursive: true });
  await Deno.remove(path);
});

const dockerSkip = await dockerSkipReason();

Deno.test({
  name: "agent run removes a container job's containers when stdout closes",
  ignore: dockerSkip !== undefined,
  async fn() {
    await ensureTestImages();
    const tmp = await Deno.makeTempDir({ prefix: "agent-run-test-" });
    const jobId = `run-closed-stdout-${crypto.randomUUID()}`;
    const path = await writeJob(
      `job_id: ${jobId}\nexecutor: dockercompose\ncompose:\n  containers:\n` +
        `    - name: main-${jobId.slice(-8)}\n      image: ${TEST_IMAGES.bash}\n` +
        `commands:\n  - directive: "while true; do echo line; sleep 0.01; done"\n`,
    );
    const child = spawnAgentRun([path], { tmp });
    const [, stderr, status] = await Promise.all([
      closeAfter(child.stdout, "line\nline\n"),
      readAll(child.stderr),
      child.status,
    ]);
    assert.equal(status.code, 1);
    // The agent's own warnings (no /dev/kvm here) come before its one closing line.
    assert.deepEqual(stderr.split("\n").filter((line) => line.startsWith("agent:")), [
      "agent: Cannot write the job's output: Broken pipe (os error 32); the job was stopped",
    ]);
    await using client = await DockerClient.connect();
    const filters = { label: [`${JOB_LABEL}=${jobId}`] };
    assert.deepEqual(await client.listContainers(filters), [], "containers left behind");
    assert.deepEqual(await client.listNetworks(filters), [], "networks left behind");
    await Deno.remove(tmp, { recursive: true });
    await Deno.remove(path);
  },
});

Deno.test("agent run fails with one line and exit code 2 on a file that never ends", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../main.ts", import.meta.url).pathname, "run", "/dev/zero"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Unbounded reading would run until memory is gone: the deadline turns that into a failure.
  const deadline = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const out = await child.output();
  clearTimeout(deadline);
  assert.equal(out.code, 2);
  assert.equal(new TextDecoder().decode(out.stdout), "");
  assert.equal(
    new TextDecoder().decode(out.stderr),
    "agent: /dev/zero: Cannot read job file: the file is larger than 16777216 bytes\n",
  );
});

Deno.test({
  name: "agent run of a shell job also removes the containers a killed agent's job left",
  ignore: dockerSkip !== undefined,
  async fn() {
    await testImagesReady();
    await using client = await DockerClient.connect();
    // A dead agent's job: its host dir has an owner file that nobody locks.
    const hostDir = await Deno.makeTempDir({ dir: "/tmp", prefix: "agent-temp-directory-" });
    await Deno.writeTextFile(`${hostDir}/.owner`, `${Deno.hostname()}/999999999`);
    const jobId = `leftover-${crypto.randomUUID()}`;
    const id = await client.createContainer(undefined, {
      Image: TEST_IMAGES.nobash,
      Cmd: ["sleep", "60"],
      Labels: { [JOB_LABEL]: jobId, [HOST_DIR_LABEL]: hostDir },
      HostConfig: { NetworkMode: "none" },
    });
    const path = await writeJob(`commands:\n  - directive: echo shell job\n`);
    try {
      const run = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL("../main.ts", import.meta.url).pathname, "run", path],
        stdout: "piped",
        stderr: "piped",
        env: { HOME: home, DENO_DIR: denoDir() },
      }).output();
      assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
      assert.equal(await client.inspectContainer(id), undefined);
    } finally {
      await client.removeContainer(id).catch(() => {});
      await Deno.remove(hostDir, { recursive: true }).catch(() => {});
      await Deno.remove(path);
    }
  },
});
