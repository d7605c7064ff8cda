/**
 * Tests of main.ts.
 *
 * Each command evaluates only its own modules (observed through V8 coverage, which lists every
 * script the runtime evaluated), and the plain `version` / `run` command lines read without
 * commander give what commander gives.
 *
 * What a job can read of the agent that runs it (DECISIONS.md 21), end to end: the built
 * `dist/agent start` and `dist/agent serve` run as a non-root user with their secrets in the
 * environment, as the README advises; the job, running as that same user, tries every route it
 * has (`/proc/<pid>/environ`, `cmdline`, `mem`, `maps` and `fd` of each ancestor, `ps e`, every
 * `/proc/*\/environ`, the temp dirs) and prints whatever it can read. The registration token,
 * the access token and the JWT secret must appear nowhere in its output.
 *
 * Needs root (to make and become the user, `useradd` makes it when missing), `setpriv` and
 * `unshare` (util-linux): the agent gets a private `/tmp` (hosted jobs write the literal
 * `/tmp/ssh_jump_point`, which other tests' agents running as root own). Skipped otherwise,
 * unless `AGENT_TEST_REQUIRE_ALL=1`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AGENT, ensureBuilt } from "./support/compiled_agent.ts";
import { FakeHub } from "./support/fake_hub.ts";
import { makeLeafCert, SECRET, startCallbackReceiver, TOKEN } from "./support/serve_agent.ts";
import { join } from "node:path";
import { readCommandLine, readPlainCommandLine } from "../main.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** Deno's cache of this process, kept for the child whose HOME is empty. */
function denoDir(): string {
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "/tmp", ".cache");
  return Deno.env.get("DENO_DIR") ?? join(cache, "deno");
}

/**
 * Runs `deno run main.ts ...args` with V8 coverage on and returns the scripts it evaluated:
 * repository files as relative paths, npm packages as `npm:<name>`.
 */
async function evaluatedModules(args: string[]): Promise<string[]> {
  const tmp = await Deno.makeTempDir({ prefix: "agent-main-test-" });
  try {
    const home = join(tmp, "home");
    await Deno.mkdir(home);
    const coverage = join(tmp, "coverage");
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--cached-only",
        `--coverage=${coverage}`,
        join(ROOT, "main.ts"),
        ...args,
      ],
      cwd: ROOT,
      env: { HOME: home, DENO_DIR: denoDir() },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    const modules = new Set<string>();
    for await (const entry of Deno.readDir(coverage)) {
      const { url } = JSON.parse(await Deno.readTextFile(join(coverage, entry.name)));
      const path = new URL(url).pathname;
      const npm = /\/registry\.npmjs\.org\/((?:@[^/]+\/)?[^/]+)\//.exec(path);
      modules.add(
        npm ? `npm:${npm[1]}` : path.startsWith(`${ROOT}/`) ? path.slice(ROOT.length + 1) : url,
      );
    }
    return [...modules].sort();
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

Deno.test("main() evaluates only main.ts, the version and the error types for `agent version`", async () => {
  assert.deepEqual(await evaluatedModules(["version"]), [
    "lib/util/errors.ts",
    "lib/util/version.ts",
    "main.ts",
  ]);
});

Deno.test("main() evaluates no Hono, jose, commander, server/ or lib/start/ module for `agent run`", async () => {
  const modules = await evaluatedModules(["run", "examples/hello.yaml"]);
  assert.ok(modules.includes("lib/run/local_run.ts"), modules.join("\n"));
  assert.ok(modules.includes("executors/shell.ts"), modules.join("\n"));
  const foreign = modules.filter((m) =>
    ["npm:hono", "npm:jose", "npm:commander"].includes(m) || m.startsWith("server/") ||
    m.startsWith("lib/start/")
  );
  assert.deepEqual(foreign, []);
});

/** Command lines that {@linkcode readPlainCommandLine} reads itself, and what they mean. */
const PLAIN_FORMS: readonly string[][] = [
  ["version"],
  ["run", "job.yaml"],
  ["run", "job file.yaml"],
  ["run", "job.yaml", "--log-file", "out.jsonl"],
  ["run", "--log-file", "out.jsonl", "job.yaml"],
  ["run", "--log-file=out.jsonl", "job.yaml", "--debug"],
  ["run", "--debug", "job.yaml"],
  ["run", "job.yaml", "--log-file="],
  ["run", "--log-format", "json", "job.yaml"],
  ["run", "job.yaml", "--log-format=text", "--log-file", "out.jsonl", "--debug"],
];

Deno.test("readPlainCommandLine() reads every plain form as commander does", async (t) => {
  for (const args of PLAIN_FORMS) {
    await t.step(args.join(" "), async () => {
      const plain = readPlainCommandLine(args);
      assert.notEqual(plain, undefined);
      assert.deepEqual(plain, await readCommandLine(args));
    });
  }
});

Deno.test("readPlainCommandLine() leaves `run` to commander when a defaults file adds flags", async () => {
  const config = await Deno.makeTempDir({ prefix: "agent-runrc-" });
  const previous = Deno.env.get("XDG_CONFIG_HOME");
  try {
    await Deno.mkdir(join(config, "semaphore-agent"));
    await Deno.writeTextFile(join(config, "semaphore-agent", "runrc"), "--log-format json\n");
    Deno.env.set("XDG_CONFIG_HOME", config);
    assert.equal(readPlainCommandLine(["run", "job.yaml"]), undefined);
    const invocation = await readCommandLine(["run", "job.yaml"]);
    assert.ok(typeof invocation === "object" && invocation.command === "run");
    assert.equal(invocation.options.logFormat, "json");
  } finally {
    if (previous === undefined) Deno.env.delete("XDG_CONFIG_HOME");
    else Deno.env.set("XDG_CONFIG_HOME", previous);
    await Deno.remove(config, { recursive: true });
  }
});

Deno.test("readPlainCommandLine() leaves help, errors, other flags and other commands to commander", () => {
  const others = [
    ["run"],
    ["run", "a.yaml", "b.yaml"],
    ["run", "-h"],
    ["run", "a.yaml", "--help"],
    ["run", "a.yaml", "--log-file"],
    ["run", "a.yaml", "--log-file", "-x"],
    ["run", "a.yaml", "--log-file", "x", "--log-file", "y"],
    ["run", "a.yaml", "--debug", "--debug"],
    ["run", "a.yaml", "--log-format", "json", "--log-format=text"],
    ["run", "a.yaml", "--debug=true"],
    ["run", "a.yaml", "--verbose"],
    ["run", "--", "a.yaml"],
    ["run", "-"],
    ["version", "x"],
    ["version", "--help"],
    ["serve"],
    ["start"],
    ["help"],
  ];
  for (const args of others) assert.equal(readPlainCommandLine(args), undefined, args.join(" "));
});

/** The non-root user the agent runs as. */
const USER = "agent-secrets-test";

async function succeeds(cmd: string, args: string[]): Promise<boolean> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output()
    .catch(() => undefined);
  return out?.success ?? false;
}

async function output(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder();
  assert.ok(out.success, `${cmd} ${args.join(" ")}: ${text.decode(out.stderr)}`);
  return text.decode(out.stdout).trim();
}

async function skipReason(): Promise<string | undefined> {
  let reason: string | undefined;
  if (Deno.uid() !== 0) reason = "needs root, to run the agent as a non-root user";
  else if (!(await succeeds("setpriv", ["--version"]))) reason = "no setpriv (util-linux)";
  else if (!(await succeeds("unshare", ["-m", "true"]))) reason = "unshare -m does not work";
  if (reason === undefined || Deno.env.get("AGENT_TEST_REQUIRE_ALL") === "1") return undefined;
  console.log(`Skipping the non-root secrets tests: ${reason}`);
  return reason;
}

const skip = await skipReason();

/** The uid and gid of {@linkcode USER}, made (a system user without home) when missing. */
async function testUser(): Promise<{ uid: number; gid: number }> {
  if (!(await succeeds("id", ["-u", USER]))) {
    await output("useradd", ["--system", "--user-group", "--no-create-home", USER]);
  }
  return {
    uid: Number(await output("id", ["-u", USER])),
    gid: Number(await output("id", ["-g", USER])),
  };
}

/**
 * What the job runs: for each ancestor, its command line and whether its environ, mem, maps
 * and fd can be read (with what was read), then `ps e` of everyone, every readable environ,
 * and every readable file in the temp dirs.
 */
const PROBE = String.raw`p=$$
while [ "$p" -gt 1 ]; do
  set -- $(sed 's/.*) //' /proc/$p/stat); parent=$2
  echo "ancestor $p: $(tr '\0' ' ' < /proc/$p/cmdline)"
  for f in environ mem maps; do
    if text=$(tr '\0' '\n' 2>/dev/null < /proc/$p/$f); then echo "$f: read"; echo "$text"; else echo "$f: denied"; fi
  done
  if ls -l /proc/$p/fd/ 2>/dev/null; then echo "fd: read"; else echo "fd: denied"; fi
  p=$parent
done
ps axeww
for f in /proc/[0-9]*/environ; do tr '\0' '\n' < $f 2>/dev/null; done
grep -rs . /tmp "$TMPDIR" "$HOME" 2>/dev/null | head -n 100000
echo probe done`;

/** The job's output lines, from JSONL event lines. */
function outputOf(lines: readonly string[]): string {
  return lines.map((line) => JSON.parse(line)).filter((e) => e.event === "cmd_output")
    .map((e) => e.output).join("");
}

/** Checks the probe's findings: the agent's own files were closed to it, no secret leaked. */
function assertNothingFound(probe: string, agentPid: number, secrets: readonly string[]): void {
  assert.ok(probe.includes("probe done"), probe);
  const agent = probe.indexOf(`ancestor ${agentPid}: `);
  assert.ok(agent !== -1, `the agent ${agentPid} is not among the job's ancestors:\n${probe}`);
  const [, ...findings] = probe.slice(agent).split("\n", 5);
  assert.deepEqual(findings, ["environ: denied", "mem: denied", "maps: denied", "fd: denied"]);
  for (const secret of secrets) {
    assert.ok(!probe.includes(secret), `the job found ${secret}:\n${probe}`);
  }
}

/** A dir outside /tmp (the agent gets a private /tmp) that belongs to the test user. */
async function userDir(user: { uid: number; gid: number }): Promise<string> {
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "main_test_" });
  await Deno.chmod(dir, 0o755);
  for (const sub of ["home", "cache", "work"]) {
    await Deno.mkdir(`${dir}/${sub}`);
    await Deno.chown(`${dir}/${sub}`, user.uid, user.gid);
  }
  // The checkout may live under /tmp (CI clones into a temp folder), which the private /tmp
  // hides: the agent runs from a copy beside the test user's files.
  await Deno.copyFile(AGENT, `${dir}/agent`);
  await Deno.chmod(`${dir}/agent`, 0o755);
  return dir;
}

/**
 * Spawns `dist/agent <args>` as the test user with a private /tmp, in a clean environment
 * (`env` plus HOME, the unpack cache and PATH). The agent keeps the child's pid (each step
 * execs the next).
 */
function spawnAsUser(
  user: { uid: number; gid: number },
  dir: string,
  args: readonly string[],
  env: Record<string, string>,
): Deno.ChildProcess {
  return new Deno.Command("unshare", {
    args: [
      "-m",
      "sh",
      "-c",
      'mount -t tmpfs -o mode=1777 tmpfs /tmp && exec "$@"',
      "sh",
      "setpriv",
      `--reuid=${user.uid}`,
      `--regid=${user.gid}`,
      "--clear-groups",
      "--",
      `${dir}/agent`,
      ...args,
    ],
    cwd: `${dir}/work`,
    clearEnv: true,
    env: {
      HOME: `${dir}/home`,
      XDG_CACHE_HOME: `${dir}/cache`,
      PATH: Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

Deno.test({
  name: "agent start run as a non-root user: its job finds no token by any route",
  ignore: skip !== undefined,
  async fn() {
    await ensureBuilt();
    const user = await testUser();
    const dir = await userDir(user);
    const registrationToken = `registration-${crypto.randomUUID()}`;
    const accessToken = `access-${crypto.randomUUID()}`;
    await using hub = await FakeHub.start({ registrationToken, accessToken, nextSyncAfterMs: 50 });
    try {
      const jobId = hub.assignJob({ commands: [PROBE] });
      const child = spawnAsUser(user, dir, [
        "start",
        "--endpoint",
        hub.endpoint,
        "--no-https",
        "--disconnect-after-job",
      ], {
        SEMAPHORE_AGENT_TOKEN: registrationToken, // not --token: that shows in ps
        SEMAPHORE_AGENT_LOG_FILE_PATH: `${dir}/work/agent.log`,
      });
      const status = await child.output();
      const text = new TextDecoder();
      assert.equal(status.code, 0, text.decode(status.stdout) + text.decode(status.stderr));
      assert.equal(hub.jobResult(jobId), "passed");
      const probe = outputOf(hub.jobLog(jobId).events);
      assertNothingFound(probe, child.pid, [registrationToken, accessToken]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "agent serve run as a non-root user: its job finds no JWT secret by any route",
  ignore: skip !== undefined,
  sanitizeResources: false, // the HTTP client's pooled connection outlives the test body
  async fn() {
    await ensureBuilt();
    const user = await testUser();
    const dir = await userDir(user);
    await using callbacks = startCallbackReceiver();
    const tls = await makeLeafCert(`${dir}/work`);
    await Deno.chown(tls.keyPath, user.uid, user.gid);
    const child = spawnAsUser(user, dir, [
      "serve",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--tls-cert-path",
      tls.certPath,
      "--tls-key-path",
      tls.keyPath,
    ], { SEMAPHORE_AGENT_AUTH_TOKEN_SECRET: SECRET });
    const client = Deno.createHttpClient({ caCerts: [tls.cert] });
    const stderr = new Response(child.stderr).text();
    // stdout is read to its end (the agent logs there), the port taken from the first line.
    let seen = "";
    const listening = Promise.withResolvers<number>();
    const drained = (async () => {
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        seen += chunk;
        const match = /listening on https:\/\/127\.0\.0\.1:(\d+)\n/.exec(seen);
        if (match) listening.resolve(Number(match[1]));
      }
      listening.resolve(0);
    })();
    try {
      const port = await listening.promise;
      if (port === 0) assert.fail(`agent serve did not start:\n${seen}\n${await stderr}`);
      const base = `https://127.0.0.1:${port}`;
      const auth = { Authorization: `Bearer ${TOKEN}` };
      const job = {
        job_id: "secrets-job",
        commands: [{ directive: PROBE }],
        callbacks: { finished: `${callbacks.base}/finished`, teardown_finished: "" },
      };
      const posted = await fetch(`${base}/jobs`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify(job),
        client,
      });
      assert.equal(posted.status, 200, await posted.text());
      const [finished] = await callbacks.waitFor(1);
      assert.equal(finished.body, '{"result": "passed"}');
      const log = await fetch(`${base}/jobs/secrets-job/log`, {
        headers: { ...auth, "X-Client-Name": "archivator" }, // lets teardown end
        client,
      });
      assert.equal(log.status, 200);
      const events = (await log.text()).split("\n").filter((line) => line !== "");
      assertNothingFound(outputOf(events), child.pid, [SECRET]);
      child.kill("SIGTERM"); // stops the job and cleans up
      await child.status;
    } finally {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await child.status;
      await drained;
      await stderr;
      client.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
