/**
 * After the agent dies (`kill -9` mid-job), the next agent removes what its shell job left
 * (DECISIONS.md 23): processes, cgroup, host directory and env files, judged dead by the free
 * lock on the job's owner file, never by a PID; a live agent's job is left alone.
 */

import assert from "node:assert/strict";
import { cleanUpAfterCrashedAgents } from "../executors/for_job.ts";
import { JOB_CGROUP_PREFIX, jobIsolation } from "../executors/job_cgroup.ts";
import { exists } from "../lib/util/exists.ts";
import { recordingLogger } from "./support/recording_logger.ts";
import { eventWaiter, makeHome, startTestJob, testShellEnv } from "./support/job_harness.ts";
import { processesWith } from "./support/processes.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** The job record (host dir, cgroup dirs, files) whose cgroup holds `pid`. */
async function recordHolding(
  pid: number,
  parent = "/tmp",
): Promise<{ dir: string; cgroups: string[]; files: string[] } | undefined> {
  for await (const entry of Deno.readDir(parent)) {
    if (!entry.name.startsWith("agent-temp-directory-")) continue;
    const dir = `${parent}/${entry.name}`;
    try {
      const record = JSON.parse(await Deno.readTextFile(`${dir}/job.json`));
      for (const cgroup of record.cgroup?.dirs ?? []) {
        const procs = await Deno.readTextFile(`${cgroup}/cgroup.procs`);
        if (procs.split("\n").includes(String(pid))) {
          return { dir, cgroups: record.cgroup.dirs, files: record.files };
        }
      }
    } catch {
      // not readable, or another agent's job that just ended
    }
  }
  return undefined;
}

Deno.test("a new agent removes the processes, cgroup and files of a job whose agent was killed", async () => {
  const marker = `agent-crash-${crypto.randomUUID()}`;
  const home = await makeHome();
  // The agents' job dirs and env files: only these two agents look there.
  const tmp = await Deno.makeTempDir({ prefix: "agent-crash-tmp-" });
  const job = await Deno.makeTempFile({ suffix: ".yaml" });
  const sleeper = `exec -a ${marker} sleep 1000`;
  await Deno.writeTextFile(
    job,
    [
      "env_vars:",
      "  - name: SECRET",
      "    value: c2VjcmV0", // the env file that holds it must go too
      "commands:",
      `  - directive: ${JSON.stringify(`setsid env -i bash -c '(${sleeper}) &'`)}`,
      `  - directive: ${JSON.stringify(`nohup bash -c '${sleeper}' >/dev/null 2>&1 &`)}`,
      `  - directive: ${JSON.stringify(`${sleeper}`)}`,
    ].join("\n") + "\n",
  );
  const agent = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "run", job],
    env: { ...testShellEnv(home), TMPDIR: tmp },
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    let pids: number[] = [];
    for (let i = 0; i < 1500 && pids.length < 3; i++) {
      await new Promise((r) => setTimeout(r, 20));
      pids = processesWith(marker);
    }
    assert.equal(pids.length, 3);
    const record = await recordHolding(pids[0], tmp);
    assert.ok(record, "the job recorded its cgroup");
    agent.kill("SIGKILL");
    await agent.status;
    assert.equal(processesWith(marker).length, 3, "the job outlives its agent");

    // The next agent, here `agent run` of another job, cleans up as it starts.
    await Deno.writeTextFile(job, "commands:\n  - directive: echo next\n");
    const next = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "run", job],
      env: { ...testShellEnv(home), TMPDIR: tmp, SEMAPHORE_AGENT_LOG_LEVEL: "info" },
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(next.code, 0);
    assert.deepEqual(processesWith(marker), []);
    for (const dir of [record.dir, ...record.cgroups, ...record.files]) {
      assert.equal(await exists(dir), false, `${dir} is left`);
    }
    const said = new TextDecoder().decode(next.stderr);
    assert.match(said, /Killed \d+ leftover process\(es\) of a dead agent's job/);
    assert.match(said, /Removed the leftover cgroup /);
    assert.match(said, new RegExp(`Removed leftover job directory ${record.dir}`));
  } finally {
    try {
      agent.kill("SIGKILL");
    } catch {
      // already dead
    }
    await Deno.remove(job);
    await Deno.remove(home, { recursive: true });
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("cleanUpAfterCrashedAgents() leaves a live agent's job alone", async () => {
  const marker = `agent-live-${crypto.randomUUID()}`;
  const waiter = eventWaiter((e) => e.event === "cmd_started" && e.directive === "sleep 60");
  const { job, done, home } = await startTestJob({
    request: {
      commands: [
        { directive: `setsid env -i bash -c '(exec -a ${marker} sleep 1000) &'` },
        { directive: "sleep 60" },
      ],
    },
    onEvent: waiter.onEvent,
  });
  try {
    await waiter.seen;
    let pids: number[] = [];
    for (let i = 0; i < 500 && pids.length < 1; i++) {
      await new Promise((r) => setTimeout(r, 10));
      pids = processesWith(marker);
    }
    assert.equal(pids.length, 1);
    const record = await recordHolding(pids[0]);
    assert.ok(record);
    await cleanUpAfterCrashedAgents(recordingLogger());
    assert.deepEqual(processesWith(marker), pids);
    assert.ok(await exists(record.dir));
  } finally {
    await job.stop();
    await done;
    await Deno.remove(home, { recursive: true });
  }
  assert.deepEqual(processesWith(marker), []);
});

Deno.test("cleanUpAfterCrashedAgents() removes empty job cgroups older than a minute, and only those", async () => {
  const isolation = await jobIsolation();
  assert.ok(isolation.kind === "v1");
  const parent = isolation.parents.pids!;
  const old = `${parent}/${JOB_CGROUP_PREFIX}${crypto.randomUUID()}`;
  const young = `${parent}/${JOB_CGROUP_PREFIX}${crypto.randomUUID()}`;
  const busy = `${parent}/${JOB_CGROUP_PREFIX}${crypto.randomUUID()}`;
  for (const dir of [old, young, busy]) await Deno.mkdir(dir);
  const sleeper = new Deno.Command("sh", {
    args: ["-c", `echo $$ > ${busy}/cgroup.procs && exec sleep 1000`],
  }).spawn();
  try {
    while ((await Deno.readTextFile(`${busy}/cgroup.procs`)).trim() === "") {
      await new Promise((r) => setTimeout(r, 5));
    }
    const twoMinutesAgo = new Date(Date.now() - 120_000);
    await Deno.utime(old, twoMinutesAgo, twoMinutesAgo);
    await Deno.utime(busy, twoMinutesAgo, twoMinutesAgo);
    const logger = recordingLogger();
    await cleanUpAfterCrashedAgents(logger);
    assert.equal(await exists(old), false);
    assert.ok(await exists(young));
    assert.ok(await exists(busy));
    assert.ok(logger.lines.includes(`info: Removed the empty leftover cgroup ${old}`));
  } finally {
    sleeper.kill("SIGKILL");
    await sleeper.status;
    for (const dir of [old, young, busy]) await Deno.remove(dir).catch(() => {});
  }
});
