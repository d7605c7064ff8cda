/**
 * `deno task bench [--quick] [--source]`: the figures of DESIGN.md "Benchmarks", each beside
 * its floor measured in the same run on the same machine:
 *
 * - per-command overhead: a job of 1000 `true` commands, against `true` commands sourced by
 *   `bash --login` in a bare PTY (`script -qfec`, the agent's own PTY shim; 100 times as many
 *   lines there, since one takes about a microsecond);
 * - output throughput: a command printing 100 MB, against the same command under a bare PTY;
 *   every byte must reach the JSONL log (checked);
 * - peak memory (VmHWM) of the agent process during that job and during a job printing a tenth
 *   of it (memory must not grow with the output), against a Deno runtime that runs an empty
 *   script;
 * - `agent run` of a one-command job and `agent version`, against `deno run` of an empty file
 *   (the note says how far above it).
 *
 * The agent is `dist/agent` when it exists (build it with `bash compile.sh`), else
 * `deno run -A main.ts`; `--source` forces the latter. Every job and floor runs with HOME set to
 * an empty temporary directory, so the machine's `~/.bashrc` and `~/.profile` play no part.
 * `--quick` uses 200 commands and 10 MB.
 *
 * More figures plug in through {@linkcode EXTRA_BENCHES}: a module there exports a function
 * taking a {@linkcode BenchContext} and resolving with {@linkcode BenchRow}s (Docker figures in
 * `docker_bench.ts`, the `POST /jobs` start latency of `agent serve` in `serve_bench.ts`, the
 * cost of a job's cgroup in `cgroup_bench.ts`, the cost of redacting 20 secrets in
 * `redaction_bench.ts`). A
 * listed module that does not exist yet is skipped with a note.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** One line of the table. */
export interface BenchRow {
  /** What is measured, e.g. `per-command overhead`. */
  readonly figure: string;
  /** The agent's figure, formatted with its unit. */
  readonly agent: string;
  /** The floor's figure, formatted with its unit. */
  readonly floor: string;
  /** How far the agent is from the floor, e.g. `3.2x`. */
  readonly ratio: string;
  /** What the floor is, in a few words. */
  readonly note: string;
}

/** What an extra benchmark module gets. */
export interface BenchContext {
  /** The repository root. */
  readonly root: string;
  /** The command line that starts the agent (`dist/agent` or `deno run -A main.ts`). */
  readonly agent: readonly string[];
  /** Smaller sizes. */
  readonly quick: boolean;
  /** Environment for agent processes: HOME is an empty temporary directory. */
  readonly env: Readonly<Record<string, string>>;
  /** A temporary directory removed after the run. */
  readonly tmp: string;
}

/** An extra benchmark module and the name of its exported function. */
export interface ExtraBench {
  /** Path relative to this file. */
  readonly module: string;
  /** `(context: BenchContext) => Promise<BenchRow[]>`. */
  readonly exportName: string;
}

/** Benchmarks that live in their own modules, run after the core ones when present. */
export const EXTRA_BENCHES: readonly ExtraBench[] = [
  { module: "./serve_bench.ts", exportName: "serveBench" },
  { module: "./docker_bench.ts", exportName: "dockerBench" },
  { module: "./metrics_bench.ts", exportName: "metricsBench" },
  { module: "./pipeline_bench.ts", exportName: "pipelineBench" },
  { module: "./cgroup_bench.ts", exportName: "cgroupBench" },
  { module: "./redaction_bench.ts", exportName: "redactionBench" },
];

interface Timed {
  readonly ms: number;
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to the end and times it (wall clock). */
async function timed(
  argv: readonly string[],
  env: Readonly<Record<string, string>>,
  options: { keepStdout?: boolean } = {},
): Promise<Timed> {
  const start = performance.now();
  const output = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: ROOT,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: options.keepStdout ? "piped" : "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - start;
  const text = new TextDecoder();
  return {
    ms,
    code: output.code,
    stdout: options.keepStdout ? text.decode(output.stdout) : "",
    stderr: text.decode(output.stderr),
  };
}

function mustSucceed(what: string, result: Timed, expectedCode = 0): Timed {
  if (result.code !== expectedCode) {
    throw new Error(
      `Cannot measure ${what}: exit ${result.code}, expected ${expectedCode}\n${result.stderr}`,
    );
  }
  return result;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function medianOf(runs: number, fn: () => Promise<number>): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < runs; i++) values.push(await fn());
  return median(values);
}

/** Writes a YAML job running each of `directives` once. */
async function writeJob(path: string, directives: readonly string[]): Promise<void> {
  const lines = ["job_id: bench", "commands:"];
  for (const d of directives) lines.push(`  - directive: ${JSON.stringify(d)}`);
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
}

/** A command line under the bare PTY shim the agent itself uses. */
function barePty(command: string): string[] {
  return ["script", "-qfec", command, "/dev/null"];
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'"'"'`)}'`;
}

/** Sums the `cmd_output` bytes of one command in a JSONL log, streaming it line by line. */
async function loggedOutputBytes(
  path: string,
  directive: string,
): Promise<{ bytes: number; finished: boolean }> {
  using file = await Deno.open(path);
  const decoder = new TextDecoder();
  let rest = "";
  let bytes = 0;
  let finished = false;
  let inside = false;
  const encoder = new TextEncoder();
  const take = (line: string) => {
    if (line === "") return;
    const event = JSON.parse(line);
    if (event.event === "cmd_started") inside = event.directive === directive;
    if (event.event === "cmd_output" && inside) bytes += encoder.encode(event.output).length;
    if (event.event === "cmd_finished") inside = false;
    if (event.event === "job_finished") finished = true;
  };
  for await (const chunk of file.readable) {
    rest += decoder.decode(chunk, { stream: true });
    const lines = rest.split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) take(line);
  }
  take(rest + decoder.decode());
  return { bytes, finished };
}

/** Reads VmHWM (peak resident set) of a process, in kB; undefined once it is gone. */
async function peakRssKb(pid: number): Promise<number | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = status.match(/^VmHWM:\s+(\d+) kB/m);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Runs `agent run ...args` to the end, sampling its peak memory (VmHWM) every 20 ms. */
async function runSampled(
  agent: readonly string[],
  args: readonly string[],
  env: Readonly<Record<string, string>>,
): Promise<{ code: number; stderr: string; ms: number; peakKb: number }> {
  const child = new Deno.Command(agent[0], {
    args: [...agent.slice(1), "run", ...args],
    cwd: ROOT,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const start = performance.now();
  const stderr = new Response(child.stderr).text();
  let peakKb = 0;
  let done = false;
  const status = child.status.then((s) => {
    done = true;
    return s;
  });
  while (!done) {
    peakKb = Math.max(peakKb, (await peakRssKb(child.pid)) ?? 0);
    await Promise.race([status, new Promise((r) => setTimeout(r, 20))]);
  }
  const { code } = await status;
  return { code, stderr: await stderr, ms: performance.now() - start, peakKb };
}

const fmtMs = (ms: number) => ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
const fmtDelta = (ms: number) => `${ms < 0 ? "-" : "+"}${fmtMs(Math.abs(ms))}`;
const fmtUs = (ms: number) => ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1000).toFixed(1)} µs`;
const fmtMb = (kb: number) => `${(kb / 1024).toFixed(1)} MiB`;
const fmtRate = (bytes: number, ms: number) => `${(bytes / 1e6 / (ms / 1000)).toFixed(1)} MB/s`;
const ratio = (a: number, b: number) => b > 0 ? `${(a / b).toFixed(1)}x` : "n/a";

function printTable(rows: readonly BenchRow[]): void {
  const header: BenchRow = {
    figure: "figure",
    agent: "agent",
    floor: "floor",
    ratio: "ratio",
    note: "floor is",
  };
  const all = [header, ...rows];
  const keys = ["figure", "agent", "floor", "ratio", "note"] as const;
  const widths = keys.map((k) => Math.max(...all.map((r) => [...r[k]].length)));
  const line = (r: BenchRow) =>
    keys.map((k, i) => [...r[k]].length < widths[i] ? r[k].padEnd(widths[i]) : r[k]).join(" | ")
      .trimEnd();
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("-|-"));
  for (const r of rows) console.log(line(r));
}

/** Runs the benchmarks and prints the table. */
export async function main(args: readonly string[]): Promise<number> {
  const quick = args.includes("--quick");
  const fromSource = args.includes("--source");
  const commands = quick ? 200 : 1000;
  const outputBytes = quick ? 10_000_000 : 100_000_000;

  const dist = join(ROOT, "dist", "agent");
  let useDist = !fromSource;
  if (useDist) {
    try {
      await Deno.stat(dist);
    } catch {
      useDist = false;
    }
  }
  const deno = Deno.execPath();
  const agent = useDist ? [dist] : [deno, "run", "-A", join(ROOT, "main.ts")];

  const tmp = await Deno.makeTempDir({ prefix: "agent-bench-" });
  const home = join(tmp, "home");
  await Deno.mkdir(home);
  const cacheHome = Deno.env.get("XDG_CACHE_HOME") ??
    join(Deno.env.get("HOME") ?? "/tmp", ".cache");
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: home,
    // Keeps the launcher's unpacked runtime and Deno's caches warm despite the empty HOME.
    XDG_CACHE_HOME: cacheHome,
    DENO_DIR: Deno.env.get("DENO_DIR") ?? join(cacheHome, "deno"),
    TERM: "xterm",
    LANG: Deno.env.get("LANG") ?? "C.UTF-8",
  };

  console.log(
    `agent: ${agent.join(" ")}${quick ? " (--quick)" : ""}; ${commands} commands, ${
      outputBytes / 1e6
    } MB; HOME=${home}`,
  );
  const rows: BenchRow[] = [];
  try {
    // Warm-up: unpack the launcher, fill code caches.
    await writeJob(join(tmp, "one.yaml"), ["true"]);
    for (let i = 0; i < 2; i++) {
      mustSucceed("the warm-up job", await timed([...agent, "run", join(tmp, "one.yaml")], env));
    }

    // --- start: one-command job and version vs deno running an empty file, interleaved so
    // that a busy machine weighs on each the same
    await Deno.writeTextFile(join(tmp, "empty.js"), "");
    const starts = { oneJob: [] as number[], denoEmpty: [] as number[], version: [] as number[] };
    for (let i = 0; i < 7; i++) {
      starts.denoEmpty.push(
        mustSucceed(
          "deno startup",
          await timed([deno, "run", "--no-config", join(tmp, "empty.js")], env),
        ).ms,
      );
      starts.oneJob.push(
        mustSucceed("a one-command job", await timed([...agent, "run", join(tmp, "one.yaml")], env))
          .ms,
      );
      starts.version.push(
        mustSucceed("agent version", await timed([...agent, "version"], env)).ms,
      );
    }
    const oneJobMs = median(starts.oneJob);
    const denoEmptyMs = median(starts.denoEmpty);
    const versionMs = median(starts.version);

    // --- per-command overhead: N `true` commands vs the same sourced by bash in a bare PTY
    await writeJob(join(tmp, "many.yaml"), Array(commands).fill("true"));
    const manyMs = mustSucceed(
      `a job of ${commands} commands`,
      await timed([...agent, "run", join(tmp, "many.yaml")], env),
    ).ms;
    const perCommandMs = (manyMs - oneJobMs) / (commands - 1);
    // bash runs a sourced `true` in about a microsecond: 100 times as many lines keep the
    // difference above the noise of starting bash.
    const floorCommands = commands * 100;
    await Deno.writeTextFile(join(tmp, "many.sh"), "true\n".repeat(floorCommands));
    await Deno.writeTextFile(join(tmp, "one.sh"), "true\n");
    const sourced = (file: string) =>
      barePty(`bash --login -c ${shellQuote(`source ${join(tmp, file)}`)}`);
    const floorManyMs = await medianOf(
      3,
      async () =>
        mustSucceed("bash sourcing the commands", await timed(sourced("many.sh"), env)).ms,
    );
    const floorOneMs = await medianOf(
      3,
      async () => mustSucceed("bash sourcing one command", await timed(sourced("one.sh"), env)).ms,
    );
    const floorPerCommandMs = Math.max(0, (floorManyMs - floorOneMs) / (floorCommands - 1));

    rows.push({
      figure: `per-command overhead (${commands} x true)`,
      agent: fmtUs(perCommandMs),
      floor: fmtUs(floorPerCommandMs),
      ratio: ratio(perCommandMs, floorPerCommandMs),
      note: "bash --login sourcing them in script -qfec",
    });
    rows.push({
      figure: `job of ${commands} x true, wall`,
      agent: fmtMs(manyMs),
      floor: fmtMs(floorOneMs + floorPerCommandMs * (commands - 1)),
      ratio: ratio(manyMs, floorOneMs + floorPerCommandMs * (commands - 1)),
      note: "bash start + the same commands, bare PTY",
    });

    // --- throughput and peak memory: one command printing outputBytes
    const producer =
      `yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c ${outputBytes}`;
    await writeJob(join(tmp, "output.yaml"), [producer]);
    const logFile = join(tmp, "output.jsonl");
    const outputRun = await runSampled(
      agent,
      ["--log-file", logFile, join(tmp, "output.yaml")],
      env,
    );
    if (outputRun.code !== 0) {
      throw new Error(
        `Cannot measure output throughput: exit ${outputRun.code}\n${outputRun.stderr}`,
      );
    }
    const { peakKb, ms: outputMs } = outputRun;
    const logged = await loggedOutputBytes(logFile, producer);
    if (logged.bytes !== outputBytes || !logged.finished) {
      throw new Error(
        `Cannot measure output throughput: the log holds ${logged.bytes} output bytes of ${outputBytes}${
          logged.finished ? "" : " and no job_finished"
        }`,
      );
    }
    const logSize = (await Deno.stat(logFile)).size;
    await Deno.remove(logFile);
    const agentOutputMs = Math.max(1, outputMs - oneJobMs);
    // Both sides net of starting up: the agent's one-command job, the PTY running `true`.
    const floorOutputTotalMs = await medianOf(
      3,
      async () => mustSucceed("the bare PTY output", await timed(barePty(producer), env)).ms,
    );
    const floorStartMs = await medianOf(
      3,
      async () => mustSucceed("the bare PTY start", await timed(barePty("true"), env)).ms,
    );
    const floorOutputMs = Math.max(1, floorOutputTotalMs - floorStartMs);

    rows.push({
      figure: `output throughput (${outputBytes / 1e6} MB)`,
      agent: fmtRate(outputBytes, agentOutputMs),
      floor: fmtRate(outputBytes, floorOutputMs),
      ratio: ratio(agentOutputMs, floorOutputMs),
      note: "same command in script -qfec to /dev/null (ratio: time)",
    });

    const denoRss = mustSucceed(
      "deno's own peak memory",
      await timed(
        [deno, "eval", "--no-config", `console.log(Deno.readTextFileSync("/proc/self/status"))`],
        env,
        { keepStdout: true },
      ),
    );
    const floorKb = Number(denoRss.stdout.match(/^VmHWM:\s+(\d+) kB/m)?.[1] ?? 0);
    rows.push({
      figure: `peak RSS, job printing ${outputBytes / 1e6} MB`,
      agent: fmtMb(peakKb),
      floor: fmtMb(floorKb),
      ratio: ratio(peakKb, floorKb),
      note: "deno running an empty script",
    });
    // The same with a tenth of the output: memory must not grow with the output.
    const smallBytes = outputBytes / 10;
    await writeJob(join(tmp, "small.yaml"), [producer.replace(`${outputBytes}`, `${smallBytes}`)]);
    const small = await runSampled(agent, [join(tmp, "small.yaml")], env);
    if (small.code !== 0) {
      throw new Error(`Cannot measure peak memory: exit ${small.code}\n${small.stderr}`);
    }
    rows.push({
      figure: `peak RSS, job printing ${smallBytes / 1e6} MB`,
      agent: fmtMb(small.peakKb),
      floor: fmtMb(floorKb),
      ratio: ratio(small.peakKb, floorKb),
      note: "deno running an empty script",
    });
    rows.push({
      figure: "agent run, one-command job",
      agent: fmtMs(oneJobMs),
      floor: fmtMs(denoEmptyMs),
      ratio: ratio(oneJobMs, denoEmptyMs),
      note: `deno run of an empty file; ${fmtDelta(oneJobMs - denoEmptyMs)}`,
    });
    rows.push({
      figure: "agent version",
      agent: fmtMs(versionMs),
      floor: fmtMs(denoEmptyMs),
      ratio: ratio(versionMs, denoEmptyMs),
      note: `deno run of an empty file; ${fmtDelta(versionMs - denoEmptyMs)}`,
    });

    const context: BenchContext = { root: ROOT, agent, quick, env, tmp };
    const notes: string[] = [
      `log check: ${logged.bytes} output bytes in a ${(logSize / 1e6).toFixed(1)} MB JSONL log`,
    ];
    for (const extra of EXTRA_BENCHES) {
      const url = new URL(extra.module, import.meta.url);
      try {
        await Deno.stat(url);
      } catch {
        notes.push(`${extra.module}: not present, skipped`);
        continue;
      }
      const mod = await import(url.href);
      const fn = mod[extra.exportName] as ((c: BenchContext) => Promise<BenchRow[]>) | undefined;
      if (typeof fn !== "function") {
        notes.push(`${extra.module}: exports no ${extra.exportName}(), skipped`);
        continue;
      }
      try {
        rows.push(...await fn(context));
      } catch (error) {
        notes.push(`${extra.module}: ${error instanceof Error ? error.message : error}`);
      }
    }

    console.log();
    printTable(rows);
    console.log();
    for (const note of notes) console.log(note);
    return 0;
  } catch (error) {
    if (rows.length > 0) printTable(rows);
    console.error(`bench: ${error instanceof Error ? error.message : error}`);
    return 1;
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
