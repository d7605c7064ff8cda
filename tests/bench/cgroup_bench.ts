/**
 * The cost of a job's cgroup (DECISIONS.md 23) for `deno task bench`, beside its floor measured
 * in the same run: the PTY shim (`script -qfec true /dev/null`) spawned as a job shell is, to
 * its exit, against the same shim spawned the way the agent spawns it in a cgroup: the cgroup
 * made in every hierarchy and the shim joining it (`sh` writing its pid, then `exec script`).
 * Goal: <= 5 ms above the floor per job start. A second row: the cgroup emptied, measured and
 * removed at job end.
 *
 * @module
 */

import type { BenchContext, BenchRow } from "./bench.ts";
import { JOB_CGROUP_PREFIX, JobCgroup, jobIsolation } from "../../executors/job_cgroup.ts";

const JOIN = 'for f; do echo $$ > "$f" || exit 125; done; exec script -qfec true /dev/null';

async function spawn(command: string, args: string[]): Promise<void> {
  const status = await new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  if (!status.success) throw new Error(`${command} exited ${status.code}`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The rows: the cgroup's cost per job start against the bare shim. */
export async function cgroupBench(context: BenchContext): Promise<BenchRow[]> {
  const isolation = await jobIsolation();
  if (isolation.kind === "none") {
    return [{
      figure: "cgroup per job start",
      agent: "n/a",
      floor: "n/a",
      ratio: "n/a",
      note: isolation.description,
    }];
  }
  const runs = context.quick ? 10 : 30;
  const bare: number[] = [];
  const started: number[] = [];
  const ended: number[] = [];
  for (let i = 0; i < runs; i++) {
    let start = performance.now();
    await spawn("script", ["-qfec", "true", "/dev/null"]);
    bare.push(performance.now() - start);
    start = performance.now();
    const cgroup = await JobCgroup.create(isolation, `${JOB_CGROUP_PREFIX}${crypto.randomUUID()}`);
    try {
      await spawn("sh", ["-c", JOIN, "sh", ...cgroup.procsFiles]);
      started.push(performance.now() - start);
      start = performance.now();
      await cgroup.kill();
      await cgroup.usage();
    } finally {
      await cgroup.remove();
    }
    ended.push(performance.now() - start);
  }
  const startMs = median(started);
  const floorMs = median(bare);
  const endMs = median(ended);
  return [
    {
      figure: "job start with its cgroup",
      agent: `${startMs.toFixed(1)} ms`,
      floor: `${floorMs.toFixed(1)} ms`,
      ratio: `+${(startMs - floorMs).toFixed(1)} ms`,
      note: `the PTY shim without a cgroup (${isolation.kind}; goal <= +5 ms)`,
    },
    {
      figure: "job end: cgroup emptied, measured, removed",
      agent: `${endMs.toFixed(1)} ms`,
      floor: "0 ms",
      ratio: `+${endMs.toFixed(1)} ms`,
      note: "nothing (a job without a cgroup)",
    },
  ];
}
