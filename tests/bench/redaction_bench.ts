/**
 * Redaction benchmarks for `deno task bench` (DECISIONS.md 24, the redaction issue), each
 * beside its floor measured in the same run: the same `agent run` job with 20 secrets defined
 * (20 `*_TOKEN` variables of 32 random bytes in base64, so 20 values and about 200 forms to
 * search for) against the job with none.
 *
 * - output throughput: a command printing 100 MB (10 MB with `--quick`), every byte checked in
 *   the JSONL log. Goal: >= 90 % of the throughput without secrets (ratio <= 1.11 in time).
 * - per-command overhead: a job of 200 `true` commands, net of a one-command job. Goal: the
 *   same as without secrets.
 *
 * - the agent process's CPU time for that output and per command: the same comparisons, less
 *   sensitive to a busy machine than wall time.
 *
 * The two jobs alternate, three times each, and the medians are compared. Runs on its own too:
 * `deno run -A tests/bench/redaction_bench.ts [--quick] [--source]` (`BENCH_DEBUG=1` also prints
 * every run's times).
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { BenchContext, BenchRow } from "./bench.ts";
import { encodeBase64 } from "../../lib/util/base64.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PRODUCER =
  "yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c BYTES";
const SECRETS = 20;
const RUNS = 3;

function jobYaml(id: string, directives: readonly string[], secrets: number): string {
  const lines = [`job_id: ${id}`, secrets > 0 ? "env_vars:" : "env_vars: []"];
  for (let i = 0; i < secrets; i++) {
    const value = encodeBase64(
      btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32)))),
    );
    lines.push(`  - name: BENCH_${i}_TOKEN`, `    value: ${value}`);
  }
  lines.push("commands:");
  for (const d of directives) lines.push(`  - directive: ${JSON.stringify(d)}`);
  return lines.join("\n") + "\n";
}

/** CPU seconds (user + system) a process has used so far; undefined once it is gone. */
async function cpuSeconds(pid: number): Promise<number | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks
  } catch {
    return undefined;
  }
}

/** Runs `agent run` on a job file: wall milliseconds and the agent process's CPU seconds. */
async function timedRun(
  context: BenchContext,
  file: string,
  logFile?: string,
): Promise<{ ms: number; cpu: number }> {
  const [cmd, ...base] = context.agent;
  const start = performance.now();
  const child = new Deno.Command(cmd, {
    args: [...base, "run", ...(logFile ? ["--log-file", logFile] : []), file],
    cwd: context.root,
    env: context.env,
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let cpu = 0;
  let done = false;
  const status = child.status.finally(() => done = true);
  while (!done) {
    cpu = (await cpuSeconds(child.pid)) ?? cpu;
    await Promise.race([status, new Promise((r) => setTimeout(r, 10))]);
  }
  const { code } = await status;
  const ms = performance.now() - start;
  if (code !== 0) throw new Error(`${file}: exit ${code}\n${await stderr}`);
  await stderr;
  return { ms, cpu };
}

/** The `cmd_output` bytes of the log and whether they hold `[REDACTED]`. */
async function loggedOutput(path: string): Promise<{ bytes: number; redacted: boolean }> {
  const encoder = new TextEncoder();
  let bytes = 0;
  let redacted = false;
  let inside = false;
  for (const line of (await Deno.readTextFile(path)).split("\n")) {
    if (!line) continue;
    const event = JSON.parse(line);
    if (event.event === "cmd_started") inside = event.directive.startsWith("yes ");
    if (event.event === "cmd_output" && inside) {
      bytes += encoder.encode(event.output).length;
      if (event.output.includes("[REDACTED]")) redacted = true;
    }
  }
  return { bytes, redacted };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Runs the redaction figures. */
export async function redactionBench(context: BenchContext): Promise<BenchRow[]> {
  const outputBytes = context.quick ? 10_000_000 : 100_000_000;
  const commands = 200;
  const producer = PRODUCER.replace("BYTES", String(outputBytes));
  const files: Record<string, string> = {};
  for (const secrets of [0, SECRETS]) {
    for (
      const [name, directives] of [
        ["output", [producer]],
        ["many", Array(commands).fill("true")],
        ["one", ["true"]],
      ] as const
    ) {
      const file = join(context.tmp, `redaction-${name}-${secrets}.yaml`);
      await Deno.writeTextFile(file, jobYaml(`redaction-${name}`, directives, secrets));
      files[`${name}-${secrets}`] = file;
    }
  }
  const logFile = join(context.tmp, "redaction.jsonl");
  const times: Record<string, number[]> = {};
  const record = (key: string, run: { ms: number; cpu: number }) => {
    (times[key] ??= []).push(run.ms);
    (times[`${key}-cpu`] ??= []).push(run.cpu);
  };
  for (let run = 0; run < RUNS; run++) {
    for (const secrets of [0, SECRETS]) {
      record(`output-${secrets}`, await timedRun(context, files[`output-${secrets}`], logFile));
      const logged = await loggedOutput(logFile);
      if (logged.bytes !== outputBytes || logged.redacted) {
        throw new Error(
          `redaction bench: the log of the job with ${secrets} secrets holds ${logged.bytes} of ${outputBytes} output bytes` +
            (logged.redacted ? " and a [REDACTED] that has no secret under it" : ""),
        );
      }
      record(`many-${secrets}`, await timedRun(context, files[`many-${secrets}`]));
      record(`one-${secrets}`, await timedRun(context, files[`one-${secrets}`]));
    }
  }
  await Deno.remove(logFile);
  if (Deno.env.get("BENCH_DEBUG")) console.log(times);
  const at = (key: string) => median(times[key]);
  const rate = (ms: number) => `${(outputBytes / 1e6 / (ms / 1000)).toFixed(1)} MB/s`;
  const outputMs = (secrets: number) => Math.max(1, at(`output-${secrets}`) - at(`one-${secrets}`));
  const perCommand = (secrets: number) =>
    Math.max(0, (at(`many-${secrets}`) - at(`one-${secrets}`)) / (commands - 1));
  const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`;
  const withSecrets = outputMs(SECRETS), without = outputMs(0);
  const cpu = (secrets: number) => at(`output-${secrets}-cpu`) - at(`one-${secrets}-cpu`);
  // CPU seconds per command, in milliseconds like the wall figures.
  const cpuPerCommand = (secrets: number) =>
    Math.max(0, (at(`many-${secrets}-cpu`) - at(`one-${secrets}-cpu`)) * 1000 / (commands - 1));
  return [
    {
      figure: `output throughput, ${SECRETS} secrets (${outputBytes / 1e6} MB)`,
      agent: rate(withSecrets),
      floor: rate(without),
      ratio: `${(without / withSecrets * 100).toFixed(0)}%`,
      note: "the same job without secrets (ratio: throughput, goal >= 90%)",
    },
    {
      figure: `agent CPU for that output, ${SECRETS} secrets`,
      agent: `${cpu(SECRETS).toFixed(2)} s`,
      floor: `${cpu(0).toFixed(2)} s`,
      ratio: `${(cpu(SECRETS) / Math.max(0.01, cpu(0))).toFixed(2)}x`,
      note: "the same job without secrets (less sensitive to a busy machine)",
    },
    {
      figure: `per-command overhead, ${SECRETS} secrets (${commands} x true)`,
      agent: us(perCommand(SECRETS)),
      floor: us(perCommand(0)),
      ratio: `${(perCommand(SECRETS) / Math.max(1e-6, perCommand(0))).toFixed(2)}x`,
      note: "the same job without secrets",
    },
    {
      figure: `agent CPU per command, ${SECRETS} secrets`,
      agent: us(cpuPerCommand(SECRETS)),
      floor: us(cpuPerCommand(0)),
      ratio: `${(cpuPerCommand(SECRETS) / Math.max(1e-6, cpuPerCommand(0))).toFixed(2)}x`,
      note: "the same job without secrets (less sensitive to a busy machine)",
    },
  ];
}

if (import.meta.main) {
  const quick = Deno.args.includes("--quick");
  const dist = join(ROOT, "dist", "agent");
  let agent = [Deno.execPath(), "run", "-A", join(ROOT, "main.ts")];
  if (!Deno.args.includes("--source")) {
    try {
      await Deno.stat(dist);
      agent = [dist];
    } catch {
      // no build: run from source
    }
  }
  const tmp = await Deno.makeTempDir({ prefix: "agent-redaction-bench-" });
  const home = join(tmp, "home");
  await Deno.mkdir(home);
  const cacheHome = Deno.env.get("XDG_CACHE_HOME") ??
    join(Deno.env.get("HOME") ?? "/tmp", ".cache");
  const env = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: home,
    XDG_CACHE_HOME: cacheHome,
    DENO_DIR: Deno.env.get("DENO_DIR") ?? join(cacheHome, "deno"),
    TERM: "xterm",
    LANG: Deno.env.get("LANG") ?? "C.UTF-8",
  };
  try {
    const rows = await redactionBench({ root: ROOT, agent, quick, env, tmp });
    for (const row of rows) {
      console.log(`${row.figure}: ${row.agent} vs ${row.floor} (${row.ratio}) - ${row.note}`);
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}
