/**
 * Pipeline figures of `agent run` (issue 13), for `deno task bench`:
 *
 * - planning: `agent run -l` of a 200-job pipeline (10 blocks × 10 jobs × a 2-value matrix),
 *   against `agent version` (target: at most 0.2 s above it);
 * - parallelism: a block of 32 jobs that each `sleep 1`, with `--jobs 4` against `--jobs 1`
 *   (target: at least 3× faster). `--quick` uses 8 jobs.
 *
 * @module
 */

import type { BenchContext, BenchRow } from "./bench.ts";

async function timedRun(
  argv: readonly string[],
  cwd: string,
  env: Readonly<Record<string, string>>,
): Promise<number> {
  const start = performance.now();
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - start;
  if (!out.success) {
    throw new Error(
      `Cannot measure '${argv.slice(-3).join(" ")}': exit ${out.code}: ${
        new TextDecoder().decode(out.stderr).trim()
      }`,
    );
  }
  return ms;
}

async function medianOf(runs: number, fn: () => Promise<number>): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < runs; i++) values.push(await fn());
  values.sort((a, b) => a - b);
  return values[Math.floor(values.length / 2)];
}

async function gitRepo(dir: string, pipeline: string): Promise<void> {
  await Deno.mkdir(`${dir}/.semaphore`, { recursive: true });
  await Deno.writeTextFile(`${dir}/.semaphore/semaphore.yml`, pipeline);
  for (
    const args of [
      ["init", "-q", "-b", "master"],
      ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "--allow-empty", "-m", "b"],
    ]
  ) {
    await new Deno.Command("git", { args: ["-C", dir, ...args], stdout: "null", stderr: "null" })
      .output();
  }
}

const HEAD = "version: v1.0\nagent: {machine: {type: e1-standard-2}}\nblocks:\n";

/** The pipeline rows of the bench table. */
export async function pipelineBench(context: BenchContext): Promise<BenchRow[]> {
  const { agent, env, tmp, quick } = context;
  const rows: BenchRow[] = [];

  const plan = `${tmp}/pipeline-plan`;
  let text = HEAD;
  for (let b = 0; b < 10; b++) {
    text += `  - name: Block ${b}\n    task:\n      jobs:\n`;
    for (let j = 0; j < 10; j++) {
      text += `        - name: Job ${j}\n          commands: [make test]\n` +
        `          matrix: [{env_var: V, values: ["1", "2"]}]\n`;
    }
  }
  await gitRepo(plan, text);
  const runs = quick ? 3 : 7;
  const versionMs = await medianOf(runs, () => timedRun([...agent, "version"], plan, env));
  const listMs = await medianOf(runs, () => timedRun([...agent, "run", "-l"], plan, env));
  rows.push({
    figure: "pipeline plan (-l, 200 jobs)",
    agent: `${Math.round(listMs)} ms`,
    floor: `${Math.round(versionMs)} ms`,
    ratio: `+${((listMs - versionMs) / 1000).toFixed(2)} s`,
    note: "agent version (target: +0.20 s at most)",
  });

  const jobs = quick ? 8 : 32;
  const sleep = `${tmp}/pipeline-sleep`;
  await gitRepo(
    sleep,
    HEAD +
      `  - name: Sleep\n    task:\n      jobs:\n        - {name: S, commands: [sleep 1], parallelism: ${jobs}}\n`,
  );
  const serialMs = await timedRun([...agent, "run", "-q", "--jobs", "1"], sleep, env);
  const parallelMs = await timedRun([...agent, "run", "-q", "--jobs", "4"], sleep, env);
  rows.push({
    figure: `${jobs} jobs of sleep 1, --jobs 4`,
    agent: `${(parallelMs / 1000).toFixed(1)} s`,
    floor: `${(serialMs / 1000).toFixed(1)} s`,
    ratio: `${(serialMs / parallelMs).toFixed(1)}x faster`,
    note: "--jobs 1 (target: 3x faster at least)",
  });
  return rows;
}
