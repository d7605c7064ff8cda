/**
 * The sweep jobs without a cgroup rely on (DECISIONS.md 18, 23): it never blocks the event loop
 * (issue 8 item 12), and an agent without cgroup access (a non-root user, run here through
 * `setpriv`) is a child subreaper whose jobs' escaped processes do not outlive them.
 */

import assert from "node:assert/strict";
import { findProcessTree, killProcessTree } from "../executors/process_tree.ts";
import { processesWith } from "./support/processes.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const NOBODY = 65534;

Deno.test("killProcessTree() lets the event loop run while it scans /proc", async () => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 0);
  try {
    // A tag no process has: every process's environment is read.
    const killed = await killProcessTree({
      rootPid: -1,
      tag: `NO_SUCH_TAG=${crypto.randomUUID()}`,
    });
    assert.equal(killed, 0);
  } finally {
    clearInterval(timer);
  }
  assert.ok(ticks > 0, "a timer fired while the sweep ran");
});

Deno.test("findProcessTree() finds a tagged process that left the session and its parent", async () => {
  const tag = `SEMAPHORE_JOB_PROCESS_TAG=${crypto.randomUUID()}`;
  const child = new Deno.Command("setsid", {
    args: ["bash", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"],
    env: { [tag.split("=")[0]]: tag.split("=")[1] },
    stdout: "piped",
  }).spawn();
  const pid = Number(new TextDecoder().decode((await child.output()).stdout).trim());
  try {
    assert.ok((await findProcessTree({ rootPid: -1, tag })).includes(pid));
    assert.ok((await killProcessTree({ rootPid: -1, tag })) >= 1);
    assert.deepEqual(await findProcessTree({ rootPid: -1, tag }), []);
  } finally {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // killed by the test
    }
  }
});

/**
 * A place to run `agent run` as the user nobody, who cannot make cgroups: a private Deno cache (a
 * copy of the npm packages) and a HOME, both owned by nobody.
 */
async function nobodySandbox(): Promise<
  { dir: string; agent(jobYaml: string): Deno.Command } & AsyncDisposable
> {
  const dir = await Deno.makeTempDir({ prefix: "agent-nonroot-" });
  const cache = `${Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`}/npm`;
  await new Deno.Command("cp", { args: ["-r", cache, `${dir}/deno-npm`] }).output();
  await Deno.mkdir(`${dir}/deno`);
  await Deno.rename(`${dir}/deno-npm`, `${dir}/deno/npm`);
  await Deno.mkdir(`${dir}/home`);
  await Deno.mkdir(`${dir}/tmp`); // the agents' job dirs: only these agents look there
  await new Deno.Command("chown", { args: ["-R", `${NOBODY}:${NOBODY}`, dir] }).output();
  await Deno.chmod(dir, 0o755);
  let jobs = 0;
  return {
    dir,
    agent(jobYaml: string) {
      const job = `${dir}/job-${jobs++}.yaml`;
      Deno.writeTextFileSync(job, jobYaml, { mode: 0o644 });
      return new Deno.Command("setpriv", {
        args: [
          `--reuid=${NOBODY}`,
          `--regid=${NOBODY}`,
          "--clear-groups",
          Deno.execPath(),
          "run",
          "-A",
          "--frozen",
          MAIN,
          "run",
          job,
        ],
        clearEnv: true,
        env: {
          PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
          HOME: `${dir}/home`,
          DENO_DIR: `${dir}/deno`,
          TMPDIR: `${dir}/tmp`,
          SEMAPHORE_AGENT_LOG_LEVEL: "info",
        },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      });
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Runs `agent run` on a job file as the user nobody. */
async function runAsNobody(jobYaml: string): Promise<{ code: number; out: string; log: string }> {
  await using sandbox = await nobodySandbox();
  const { code, stdout, stderr } = await sandbox.agent(jobYaml).output();
  const text = new TextDecoder();
  return { code, out: text.decode(stdout), log: text.decode(stderr) };
}

function escapeJob(marker: string, last: string): string {
  const sleeper = `exec -a ${marker} sleep 1000`;
  const commands = [
    `setsid env -i bash -c '(${sleeper}) &'`,
    `bash -c '(bash -c "${sleeper}" &) &'`,
    `env -u SEMAPHORE_JOB_PROCESS_TAG bash -c '${sleeper} &'`,
    `nohup bash -c '${sleeper}' >/dev/null 2>&1 &`,
    `until [ "$(pgrep -fc '^${marker} ')" -ge 4 ]; do sleep 0.01; done; echo escaped`,
    last,
  ];
  return `commands:\n${commands.map((c) => `  - directive: ${JSON.stringify(c)}\n`).join("")}`;
}

for (
  const [ending, last, code] of [["passes", "id -u", 0], ["exits 130", "(exit 130)", 130]] as const
) {
  Deno.test(`a non-root agent's job that ${ending} leaves none of its escaped processes`, async () => {
    const marker = `agent-nonroot-${crypto.randomUUID()}`;
    const { code: exit, out, log } = await runAsNobody(escapeJob(marker, last));
    assert.equal(exit, code, `${out}\n${log}`);
    assert.match(out, /\nescaped\n/);
    assert.match(
      log,
      /Job isolation: no cgroups: cannot make a cgroup in \/sys\/fs\/cgroup\/\w+: Permission denied; the agent is a child subreaper and sweeps each job.s processes by tree, session and tag\n/,
    );
    assert.deepEqual(processesWith(marker), []);
  });
}

Deno.test("a non-root agent killed mid-job: the next one removes the job's escaped processes", async () => {
  const marker = `agent-nonroot-${crypto.randomUUID()}`;
  await using sandbox = await nobodySandbox();
  const agent = sandbox.agent(escapeJob(marker, "sleep 1000")).spawn();
  try {
    // The agent records the job's processes every second; wait until the record names them.
    let recorded = false;
    for (let i = 0; i < 1500 && !recorded; i++) {
      await new Promise((r) => setTimeout(r, 20));
      const pids = processesWith(marker);
      if (pids.length < 4) continue;
      for await (const entry of Deno.readDir(`${sandbox.dir}/tmp`)) {
        if (!entry.name.startsWith("agent-temp-directory-")) continue;
        try {
          const path = `${sandbox.dir}/tmp/${entry.name}/job.json`;
          const record = JSON.parse(await Deno.readTextFile(path));
          const known = new Set((record.processes ?? []).map((p: { pid: number }) => p.pid));
          if (pids.every((pid) => known.has(pid))) recorded = true;
        } catch {
          // another job's, or being written
        }
      }
    }
    assert.ok(recorded, "the job's processes were recorded");
    agent.kill("SIGKILL");
    await agent.status;
    assert.equal(processesWith(marker).length, 4, "the job outlives its agent");
    const next = await sandbox.agent("commands:\n  - directive: echo next\n").output();
    assert.equal(next.code, 0, new TextDecoder().decode(next.stderr));
    assert.match(
      new TextDecoder().decode(next.stderr),
      /Killed \d+ leftover process\(es\) of a dead agent's job/,
    );
    assert.deepEqual(processesWith(marker), []);
  } finally {
    try {
      agent.kill("SIGKILL");
    } catch {
      // dead
    }
    await agent.status;
    for (const pid of processesWith(marker)) Deno.kill(pid, "SIGKILL");
  }
});

Deno.test("a non-root agent killed before its record names a job's escapes: the next one finds them by the mark they inherited", async () => {
  const marker = `agent-nonroot-mark-${crypto.randomUUID()}`;
  await using sandbox = await nobodySandbox();
  const agent = sandbox.agent(escapeJob(marker, "sleep 1000")).spawn();
  try {
    // Killed as soon as the escapes run: the once-a-second record has not seen them yet.
    for (let i = 0; i < 1500 && processesWith(marker).length < 4; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(processesWith(marker).length, 4, "the job's escapes run");
    agent.kill("SIGKILL");
    await agent.status;
    assert.equal(processesWith(marker).length, 4, "the job outlives its agent");
    const next = await sandbox.agent("commands:\n  - directive: echo next\n").output();
    assert.equal(next.code, 0, new TextDecoder().decode(next.stderr));
    assert.deepEqual(processesWith(marker), []);
  } finally {
    try {
      agent.kill("SIGKILL");
    } catch {
      // dead
    }
    await agent.status;
    for (const pid of processesWith(marker)) Deno.kill(pid, "SIGKILL");
  }
});
