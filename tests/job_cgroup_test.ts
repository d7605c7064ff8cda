/**
 * A cgroup per shell job (DECISIONS.md 23) on this host's layouts: the v1 controllers with the
 * v2 `cgroup.kill` hierarchy beside them (what `jobIsolation()` picks here and what real jobs
 * below run in), and the v2 hierarchy alone (a `JobCgroup` made there directly). Escapes,
 * accounting and limits run real jobs; each test leaves no cgroup and no process behind.
 */

import assert from "node:assert/strict";
import {
  detectJobIsolation,
  JOB_CGROUP_PREFIX,
  JobCgroup,
  type JobIsolation,
  jobIsolation,
} from "../executors/job_cgroup.ts";
import { PtyProcess } from "../executors/pty.ts";
import { eventWaiter, runTestJob, simplify, startTestJob } from "./support/job_harness.ts";
import type { JobEvent } from "../lib/engine/events.ts";
import { processesWith } from "./support/processes.ts";

const cmd = (directive: string) => ({ directive, alias: "" });

/** Job cgroup directories that exist now under any hierarchy (ours and other agents'). */
function jobCgroupDirs(isolation: JobIsolation): Set<string> {
  const parents = isolation.kind === "v2"
    ? [isolation.parent]
    : isolation.kind === "v1"
    ? [...Object.values(isolation.parents), ...(isolation.killer ? [isolation.killer] : [])]
    : [];
  const out = new Set<string>();
  for (const parent of parents) {
    for (const entry of Deno.readDirSync(parent)) {
      if (entry.name.startsWith(JOB_CGROUP_PREFIX)) out.add(`${parent}/${entry.name}`);
    }
  }
  return out;
}

/** Reads `stream` until `text` has arrived (or it ends), then lets it go. */
async function readUntil(stream: ReadableStream<Uint8Array>, text: string): Promise<void> {
  const reader = stream.getReader();
  let seen = "";
  try {
    while (!seen.includes(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Commands that start processes which leave the job's session, parent chain and tag: `setsid
 * env -i`, a double fork, `env -u SEMAPHORE_JOB_PROCESS_TAG`, `nohup`. Each is a `sleep`
 * renamed to `marker` (argv[0]) so it can be found.
 */
function escapes(marker: string): string[] {
  const sleeper = `exec -a ${marker} sleep 1000`;
  return [
    `setsid env -i bash -c '(${sleeper}) &'`,
    `bash -c '(bash -c "${sleeper}" &) &'`,
    `env -u SEMAPHORE_JOB_PROCESS_TAG bash -c '${sleeper} &'`,
    `nohup bash -c '${sleeper}' >/dev/null 2>&1 &`,
    `until [ "$(pgrep -fc '^${marker} ')" -ge 4 ]; do sleep 0.01; done`,
  ];
}

Deno.test("detectJobIsolation() picks the v1 controllers and the v2 cgroup.kill hierarchy here", async () => {
  const isolation = await detectJobIsolation();
  assert.equal(isolation.kind, "v1", isolation.description);
  assert.ok(isolation.kind === "v1");
  for (const controller of ["pids", "memory", "cpuacct", "freezer", "blkio"] as const) {
    assert.ok(isolation.parents[controller], `no ${controller} in ${isolation.description}`);
  }
  assert.equal(isolation.killer, "/sys/fs/cgroup/unified");
  assert.equal(
    isolation.description,
    "cgroup v1: a cgroup per job in pids, memory, cpuacct, blkio (and cpu with --job-cpu-limit), " +
      "and in /sys/fs/cgroup/unified: stopped by cgroup.kill",
  );
});

for (
  const [ending, tail, expected] of [
    ["passes", [cmd("true")], "passed"],
    ["fails", [cmd("false")], "failed"],
    ["exits 130", [cmd("(exit 130)")], "stopped"],
  ] as const
) {
  Deno.test(`a job's escaped processes are gone before job_finished when it ${ending}`, async () => {
    const marker = `agent-escape-${crypto.randomUUID()}`;
    let leftAtFinish: number[] | undefined;
    const { result, events } = await runTestJob({
      request: { commands: [...escapes(marker).map(cmd), ...tail] },
      onEvent(event) {
        if (event.event === "job_finished") leftAtFinish = processesWith(marker);
      },
    });
    assert.equal(result, expected, simplify(events).join("\n"));
    assert.deepEqual(leftAtFinish, []);
    assert.deepEqual(processesWith(marker), []);
  });
}

Deno.test("a stopped job's escaped processes are gone before job_finished", async () => {
  const marker = `agent-escape-${crypto.randomUUID()}`;
  const waiter = eventWaiter((e) => e.event === "cmd_started" && e.directive === "sleep 60");
  let leftAtFinish: number[] | undefined;
  const { job, done } = await startTestJob({
    request: { commands: [...escapes(marker).map(cmd), cmd("sleep 60")] },
    onEvent(event, job) {
      waiter.onEvent(event, job);
      if (event.event === "job_finished") leftAtFinish = processesWith(marker);
    },
  });
  await waiter.seen;
  assert.equal(processesWith(marker).length, 4); // they did run
  await job.stop();
  assert.equal(await done, "stopped");
  assert.deepEqual(leftAtFinish, []);
  assert.deepEqual(processesWith(marker), []);
});

Deno.test("a job stopped while a loop forks leaves no process", async () => {
  const marker = `agent-forkloop-${crypto.randomUUID()}`;
  const loop = `while :; do (exec -a ${marker} sleep 1000) & done`;
  const waiter = eventWaiter((e) => e.event === "cmd_started" && e.directive === loop);
  let leftAtFinish: number[] | undefined;
  const { job, done } = await startTestJob({
    request: { commands: [cmd(loop)] },
    limits: { pids: 2000 }, // the host keeps its pids whatever the test does
    onEvent(event, job) {
      waiter.onEvent(event, job);
      if (event.event === "job_finished") leftAtFinish = processesWith(marker);
    },
  });
  await waiter.seen;
  while (processesWith(marker).length < 20) await new Promise((r) => setTimeout(r, 10));
  await job.stop();
  assert.equal(await done, "stopped");
  assert.deepEqual(leftAtFinish, []);
  assert.deepEqual(processesWith(marker), []);
});

Deno.test("a job's cgroup is removed before job_finished", async () => {
  const isolation = await jobIsolation();
  let output = "";
  let during: string[] = [];
  let atFinish: string[] | undefined;
  // The job says which cgroup it is in: other tests' jobs make and remove theirs meanwhile.
  const ours = () => {
    const name = new RegExp(`${JOB_CGROUP_PREFIX}[0-9a-f-]{36}`).exec(output)?.[0];
    return name ? [...jobCgroupDirs(isolation)].filter((d) => d.endsWith(`/${name}`)) : [];
  };
  await runTestJob({
    request: { commands: [cmd("cat /proc/self/cgroup"), cmd("true")] },
    onEvent(event: JobEvent) {
      if (event.event === "cmd_output") output += event.output;
      if (event.event === "cmd_started" && event.directive === "true") during = ours();
      if (event.event === "job_finished") atFinish = ours();
    },
  });
  // One directory per hierarchy while it ran, none at job_finished.
  assert.ok(during.length >= 1, output);
  assert.deepEqual(atFinish, []);
});

Deno.test("a job that burns 1 s of CPU reports 1 s of CPU", async () => {
  // The burner stops at 1 s of its own CPU time (user + system, in clock ticks of 1/100 s).
  const burn = `bash -c 'while :; do read -r -a f < /proc/self/stat; ` +
    `[ $(( f[13] + f[14] )) -ge 100 ] && break; done'`;
  const { result, job } = await runTestJob({ request: { commands: [cmd(burn)] } });
  assert.equal(result, "passed");
  const usage = job.usage!;
  const cpu = usage.cpuUserSeconds! + usage.cpuSystemSeconds!;
  assert.ok(cpu >= 0.8 && cpu <= 1.2, `CPU ${cpu} s`);
  assert.ok(usage.wallSeconds >= 1);
});

Deno.test("a job that holds 200 MB and has 50 background processes reports both peaks", async () => {
  const { result, job } = await runTestJob({
    request: {
      commands: [
        cmd("head -c 200M /dev/zero | tail -n 1 > /dev/null"),
        cmd("for i in $(seq 50); do sleep 1000 & done"),
      ],
    },
  });
  assert.equal(result, "passed");
  const usage = job.usage!;
  assert.ok(usage.peakMemoryBytes! >= 200 * 1024 * 1024, `peak ${usage.peakMemoryBytes}`);
  assert.ok(usage.peakProcesses! >= 51, `peak processes ${usage.peakProcesses}`);
  assert.ok(usage.blockReadBytes !== undefined && usage.blockWriteBytes !== undefined);
});

Deno.test("a job under a 256 MiB memory limit that allocates 1 GiB fails and says why", async () => {
  const { result, events } = await runTestJob({
    request: {
      commands: [cmd("head -c 1G /dev/zero | tail -n 1 > /dev/null; echo after"), cmd("echo no")],
    },
    limits: { memoryBytes: 256 * 1024 * 1024 },
  });
  assert.equal(result, "failed");
  const lines = simplify(events);
  const at = lines.indexOf("directive: head -c 1G /dev/zero | tail -n 1 > /dev/null; echo after");
  assert.match(lines[at + 1], /\nKilled: the job reached its memory limit \(256 MiB\)\n$/);
  assert.equal(lines[at + 2], "Exit Code: 1");
  assert.ok(!lines.includes("directive: echo no"));
});

Deno.test("a fork bomb under a process limit of 100 fails the job; the agent stays responsive", async () => {
  let longestPause = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    longestPause = Math.max(longestPause, now - last);
    last = now;
  }, 10);
  try {
    const { result, events, job } = await runTestJob({
      request: {
        commands: [cmd("bomb() { bomb | bomb & }; bomb; sleep 5"), cmd("echo no")],
        epilogue_always_commands: [cmd("echo epilogue ran")],
      },
      limits: { pids: 100 },
    });
    assert.equal(result, "failed");
    const lines = simplify(events);
    const at = lines.indexOf("directive: bomb() { bomb | bomb & }; bomb; sleep 5");
    assert.match(lines[at + 1], /\nKilled: the job reached its process limit \(100\)\n$/);
    assert.notEqual(lines[at + 2], "Exit Code: 0");
    assert.ok(lines.includes("epilogue ran\n"), JSON.stringify(lines));
    assert.ok(job.usage!.peakProcesses! <= 100);
  } finally {
    clearInterval(timer);
  }
  assert.ok(longestPause < 1000, `the event loop paused ${longestPause} ms`);
});

Deno.test("a job under a CPU limit of 0.5 gets a CFS quota of half a CPU", async () => {
  const read = "while read -r l; do case $l in *:cpu,*|*:cpu:*) p=${l##*:};; esac; " +
    "done < /proc/self/cgroup; read -r q < /sys/fs/cgroup/cpu$p/cpu.cfs_quota_us; " +
    "read -r t < /sys/fs/cgroup/cpu$p/cpu.cfs_period_us; echo $q/$t";
  const { result, events } = await runTestJob({
    request: { commands: [cmd(read)] },
    limits: { cpus: 0.5 },
  });
  assert.equal(result, "passed");
  const lines = simplify(events);
  assert.equal(lines[lines.indexOf(`directive: ${read}`) + 1], "50000/100000\n");
});

Deno.test("JobCgroup in the v2 hierarchy alone: escapes are killed, CPU is measured", async () => {
  const isolation: JobIsolation = {
    kind: "v2",
    parent: "/sys/fs/cgroup/unified",
    controllers: [],
    description: "test",
  };
  const cgroup = await JobCgroup.create(isolation, `${JOB_CGROUP_PREFIX}${crypto.randomUUID()}`);
  const marker = `agent-escape-${crypto.randomUUID()}`;
  const pty = new PtyProcess({
    command: [
      "bash",
      "--noprofile",
      "--norc",
      "-c",
      [
        ...escapes(marker),
        // 0.3 s of CPU time of its own (clock ticks of 1/100 s)
        "while :; do read -r -a f < /proc/self/stat; [ $(( f[13] + f[14] )) -ge 30 ] && break; done",
        "echo ready; sleep 1000",
      ].join("\n"),
    ],
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    processTag: `SEMAPHORE_JOB_PROCESS_TAG=${crypto.randomUUID()}`,
    cgroup,
  });
  try {
    await readUntil(pty.readable, "ready");
    assert.equal(processesWith(marker).length, 4);
    assert.ok(cgroup.pids().includes(pty.pid));
    await pty.kill();
    assert.deepEqual(cgroup.pids(), []);
    assert.deepEqual(processesWith(marker), []);
    const usage = await cgroup.usage();
    const cpu = usage.cpuUserSeconds! + usage.cpuSystemSeconds!;
    assert.ok(cpu >= 0.3 && cpu < 0.5, JSON.stringify(usage));
  } finally {
    await pty.kill();
    await cgroup.remove();
  }
  await assert.rejects(Deno.stat(cgroup.dirs[0]), Deno.errors.NotFound);
});

Deno.test("JobCgroup.kill() empties a v1 cgroup by freeze + kill + thaw without cgroup.kill", async () => {
  // The v1 freezer alone (no v2 directory): what kernels before 5.14 leave.
  const isolation = await jobIsolation();
  assert.ok(isolation.kind === "v1");
  const cgroup = await JobCgroup.create(
    { ...isolation, killer: undefined },
    `${JOB_CGROUP_PREFIX}${crypto.randomUUID()}`,
  );
  const marker = `agent-escape-${crypto.randomUUID()}`;
  const pty = new PtyProcess({
    command: [
      "bash",
      "--noprofile",
      "--norc",
      "-c",
      [...escapes(marker), "echo ready; sleep 1000"]
        .join("\n"),
    ],
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    processTag: `SEMAPHORE_JOB_PROCESS_TAG=${crypto.randomUUID()}`,
    cgroup,
  });
  try {
    await readUntil(pty.readable, "ready");
    assert.equal(processesWith(marker).length, 4);
    assert.ok(await cgroup.kill());
    assert.deepEqual(processesWith(marker), []);
  } finally {
    await pty.kill();
    await cgroup.remove();
  }
});
