import assert from "node:assert/strict";
import { createExecutor } from "../executors/for_job.ts";
import { startShellAhead } from "../executors/shell_ahead.ts";
import { JOB_CGROUP_PREFIX } from "../executors/job_cgroup.ts";
import { makeHome, runTestJob, testShellEnv } from "./support/job_harness.ts";
import { processesWith } from "./support/processes.ts";
import { createLogger } from "../lib/util/agent_log.ts";
import { parseJobRequestJson } from "../lib/engine/job_request.ts";

/** Runs `test` with a new HOME whose `~/.bash_profile` is `profile`; removes that HOME after. */
async function withProfile(
  profile: string,
  test: (home: string) => Promise<void>,
): Promise<void> {
  const home = await makeHome();
  try {
    await Deno.writeTextFile(`${home}/.bash_profile`, profile);
    await test(home);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
}

/**
 * Runs `test` with a HOME whose login profile records the shell's pid and leaves a background
 * process named `marker` behind; removes that HOME after.
 */
function withProfiledHome(
  test: (home: string, marker: string) => Promise<void>,
): Promise<void> {
  const marker = `ahead-${crypto.randomUUID()}`;
  return withProfile(
    `echo $$ >> "$HOME/shell.pid"\n(exec -a ${marker} sleep 300) &\n`,
    (home) => test(home, marker),
  );
}

async function shellPids(home: string): Promise<string[]> {
  return (await Deno.readTextFile(`${home}/shell.pid`)).trim().split("\n");
}

/** Whether `pid` runs (a zombie does not). */
function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** The job host dir whose crash record names the job shell `pid` (by its process tag). */
function hostDirOf(pid: number): string | undefined {
  const tag = Deno.readTextFileSync(`/proc/${pid}/environ`).split("\0")
    .find((v) => v.startsWith("SEMAPHORE_JOB_PROCESS_TAG="))?.split("=")[1];
  assert.ok(tag, "the job shell has a process tag");
  const parent = Deno.env.get("TMPDIR") || "/tmp";
  for (const entry of Deno.readDirSync(parent)) {
    if (!entry.name.startsWith("agent-temp-directory-")) continue;
    try {
      if (Deno.readTextFileSync(`${parent}/${entry.name}/job.json`).includes(tag)) {
        return `${parent}/${entry.name}`;
      }
    } catch {
      // being made or removed, or another job's
    }
  }
  return undefined;
}

/** The job cgroup of `pid` (its name), if it is in one. */
function jobCgroupOf(pid: number): string | undefined {
  const lines = Deno.readTextFileSync(`/proc/${pid}/cgroup`).split("\n");
  const path = lines.map((l) => l.split(":").slice(2).join(":")).find((p) =>
    p.includes(JOB_CGROUP_PREFIX)
  );
  return path?.split("/").find((part) => part.startsWith(JOB_CGROUP_PREFIX));
}

/** Every cgroup directory named `name` under /sys/fs/cgroup. */
async function cgroupDirsNamed(name: string): Promise<string[]> {
  const out = await new Deno.Command("find", {
    args: ["/sys/fs/cgroup", "-maxdepth", "5", "-type", "d", "-name", name],
    stderr: "null",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l);
}

Deno.test("a shell started ahead that no job takes is discarded with its processes, cgroup and directory", () =>
  withProfiledHome(async (home, marker) => {
    const ahead = startShellAhead({ shellEnv: testShellEnv(home) });
    await ahead.ready;
    // The login profile ran: the shell and what it left in the background live.
    const [pid] = (await shellPids(home)).map(Number);
    assert.ok(alive(pid));
    assert.equal(processesWith(marker).length, 1);
    const hostDir = hostDirOf(pid);
    assert.ok(hostDir);
    const cgroup = jobCgroupOf(pid);
    if (cgroup) assert.notDeepEqual(await cgroupDirsNamed(cgroup), []);

    await ahead.discard();
    assert.deepEqual(processesWith(marker), []);
    assert.ok(!alive(pid));
    await assert.rejects(() => Deno.stat(hostDir), Deno.errors.NotFound);
    if (cgroup) assert.deepEqual(await cgroupDirsNamed(cgroup), []);
  }));

Deno.test("a job takes the shell started ahead for it: its commands run in that shell", () =>
  withProfiledHome(async (home, marker) => {
    const shellEnv = testShellEnv(home);
    const limits = {};
    const ahead = startShellAhead({ shellEnv, limits });
    await ahead.ready;
    const run = await runTestJob({
      request: { commands: [{ directive: 'echo "pid=$$"' }] },
      home,
      shellEnv,
      limits,
      createExecutor: (setup) => createExecutor(setup, ahead),
    });
    assert.equal(run.result, "passed");
    const [pid] = await shellPids(home);
    const output = run.events.flatMap((e) => e.event === "cmd_output" ? [e.output] : []).join("");
    assert.ok(output.includes(`pid=${pid}\n`), output);
    // One login: the job started no shell of its own. Its teardown ended the shell ahead.
    assert.deepEqual(await shellPids(home), [pid]);
    assert.equal(ahead.take(shellEnv, limits, true), undefined);
    assert.deepEqual(processesWith(marker), []);
    await ahead.discard(); // taken: nothing left to do
  }));

Deno.test("a shell started ahead goes only to a self-hosted job with its very environment and limits", () =>
  withProfiledHome(async (home, marker) => {
    const shellEnv = testShellEnv(home);
    const limits = {};
    const ahead = startShellAhead({ shellEnv, limits });
    assert.equal(ahead.take({ ...shellEnv }, limits, true), undefined);
    assert.equal(ahead.take(shellEnv, {}, true), undefined);
    assert.equal(ahead.take(shellEnv, limits, false), undefined);
    await ahead.ready;
    assert.equal(processesWith(marker).length, 1);
    await ahead.discard();
    assert.deepEqual(processesWith(marker), []);
    assert.equal(ahead.take(shellEnv, limits, true), undefined); // discarded
  }));

Deno.test("a shell discarded the moment it is spawned is gone, with what it went on to start", () =>
  withProfiledHome(async (home, marker) => {
    for (let round = 0; round < 5; round++) {
      const ahead = startShellAhead({ shellEnv: testShellEnv(home) });
      await ahead.spawned;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), 15_000);
      });
      try {
        assert.equal(await Promise.race([ahead.discard().then(() => "done"), deadline]), "done");
      } finally {
        clearTimeout(timer);
      }
      assert.deepEqual(processesWith(marker), []);
    }
  }));

Deno.test("a shell executor stopped while its shell starts says so, not that the shell failed", async () => {
  const home = await makeHome();
  try {
    const lines: string[] = [];
    const logger = createLogger({
      stdout: false,
      level: "debug",
      format: "json",
      onLine: (line) => lines.push(line),
    });
    const executor = createExecutor({
      request: parseJobRequestJson(JSON.stringify({ job_id: "stopped-early", commands: [] })),
      sink: { write() {} },
      logger,
      selfHosted: true,
      shellEnv: testShellEnv(home),
    });
    try {
      const starting = executor.start();
      await executor.stop();
      assert.equal(await starting, 1);
    } finally {
      await executor.cleanup();
    }
    const said = lines.map((line) => JSON.parse(line) as { level: string; msg: string });
    assert.deepEqual(said.filter((l) => l.level === "error"), []);
    assert.ok(
      said.some((l) => l.msg === "[job=stopped-early] The job was stopped while its shell started"),
      lines.join(""),
    );
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("a discarded shell ends its login profile instead of being killed in it", () =>
  // A slow profile that leaves state behind until its last line (as pyenv's lock does).
  withProfile(
    `touch "$HOME/lock"\nsleep 0.3\nrm "$HOME/lock"\ntouch "$HOME/profile-done"\n`,
    async (home) => {
      const ahead = startShellAhead({ shellEnv: testShellEnv(home) });
      await ahead.spawned;
      await ahead.discard();
      await Deno.stat(`${home}/profile-done`);
      await assert.rejects(() => Deno.stat(`${home}/lock`), Deno.errors.NotFound);
    },
  ));

Deno.test("a shell started ahead has its handshake before `spawned` resolves: it starts while the agent's thread is held", () =>
  // Each prompt the interactive login shell shows leaves a line: the first before it reads any
  // input, one more after each line of the handshake it runs.
  withProfile(`PROMPT_COMMAND='echo prompt >> "$HOME/prompts"'\n`, async (home) => {
    const ahead = startShellAhead({ shellEnv: testShellEnv(home) });
    await ahead.spawned;
    // What `agent run` does next holds the thread (loading and parsing the request): no event
    // loop turn until the shell has run its handshake, or until the deadline.
    const deadline = Date.now() + 20_000;
    let prompts = 0;
    while (prompts < 3 && Date.now() < deadline) {
      try {
        prompts = Deno.readTextFileSync(`${home}/prompts`).split("\n").length - 1;
      } catch {
        // no prompt yet
      }
    }
    assert.ok(prompts >= 3, `the shell ran ${Math.max(0, prompts - 1)} handshake lines`);
    await ahead.ready;
    await ahead.discard();
  }));
