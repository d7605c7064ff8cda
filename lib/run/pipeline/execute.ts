/**
 * Runs a planned pipeline (PIPELINES.md §2.7, §4.1, §6.2): prepares the run directory and the
 * toolbox, starts each job through the job engine in its own sandbox HOME (containers through
 * the container executor), lets the scheduler order blocks, runs `after_pipeline`, handles
 * Ctrl-C, and prints the live view (prefixed `[Block / Job]` when jobs run in parallel), or
 * JSON lines, then the summary.
 *
 * Redaction: each job hands `PlannedJob.secretValues` (and `--redacted-vars`) to the job
 * engine, whose redactor (DECISIONS.md 24) clears every event before the live view and the
 * `--log-dir` file see it; `--insecure-secrets` leaves the secrets' values out of it.
 *
 * @module
 */

import { Job } from "../../engine/job.ts";
import type { EventSink } from "../../engine/events.ts";
import { encodeEvent } from "../../engine/events.ts";
import { cleanUpAfterCrashedAgents, createExecutor } from "../../../executors/for_job.ts";
import { createLivePrinter } from "../live_printer.ts";
import { createLogger, type Logger, parseLogFormat, parseLogLevel } from "../../util/agent_log.ts";
import { errorMessage } from "../../util/errors.ts";
import { PipelineError } from "./schema.ts";
import type { validatePipeline } from "./validate.ts";
import type { GitFacts } from "./git_facts.ts";
import type { Secret } from "./secrets.ts";
import { expandAfterPipeline, type PlannedJob, type RunInfo } from "./expand.ts";
import type { buildPlan } from "./plan.ts";
import { type JobOutcome, runBlocks, type SchedulerBlock } from "./scheduler.ts";
import { formatDuration, formatSummary, jobFileStem, prefixedWriter } from "./summary.ts";
import {
  cacheRoot,
  prepareRun,
  removeServices,
  sandboxJob,
  toolboxEnv,
  toolboxSettings,
} from "./toolbox.ts";
import type { RunPipelineOptions } from "./options.ts";
import { absolute, parseEnvPairs, readEnvFile, realDir } from "./cli_values.ts";

/** Semaphore fails a job with more environment variables than this. */
const MAX_ENV_VARS = 300;

function logFormatOf(value: string) {
  try {
    return parseLogFormat(value);
  } catch (error) {
    throw new PipelineError(`--log-format: ${errorMessage(error)}`);
  }
}

function agentLogger(
  writeErr: (t: string) => void,
  logFormat: string | undefined,
  verbose: boolean,
): Logger {
  const level = Deno.env.get("SEMAPHORE_AGENT_LOG_LEVEL") || (verbose ? "info" : undefined);
  const format = logFormat ?? (Deno.env.get("SEMAPHORE_AGENT_LOG_FORMAT") || "text");
  return createLogger({
    level: level ? parseLogLevel(level) : "warn",
    format: logFormatOf(format),
    stdout: false,
    onLine: writeErr,
  });
}

export interface ExecuteContext {
  readonly options: RunPipelineOptions;
  readonly images: Readonly<Record<string, string>>;
  readonly plan: ReturnType<typeof buildPlan>;
  readonly pipeline: ReturnType<typeof validatePipeline>;
  readonly facts: GitFacts;
  readonly runInfo: RunInfo;
  readonly secrets: Map<string, Secret>;
  readonly baseEnv: Readonly<Record<string, string>>;
  readonly repoRoot: string;
  readonly write: (t: string) => void;
  readonly writeErr: (t: string) => void;
  readonly color: boolean;
  readonly state: string;
}

export async function execute(
  ctx: ExecuteContext,
): Promise<{ code: number; result: string; reason: string }> {
  const { options, plan, write, baseEnv } = ctx;
  const started = performance.now();
  const logger = agentLogger(ctx.writeErr, options.logFormat, options.verbose ?? false);
  const concurrency = options.concurrency ?? navigator.hardwareConcurrency ?? 1;
  const parallel = concurrency > 1;
  const hostEnvVars = [
    ...(options.envFile ? readEnvFile(options.envFile) : []),
    ...parseEnvPairs(options.env ?? [], "--env"),
  ];
  const dirs = await prepareRun({
    state: ctx.state,
    cache: options.cacheDir ? absolute(options.cacheDir) : cacheRoot(baseEnv),
    projectId: ctx.runInfo.projectId,
    workflowNumber: ctx.runInfo.workflowNumber,
    workflowId: ctx.runInfo.workflowId,
    artifactsDir: options.artifactsDir ? absolute(options.artifactsDir) : undefined,
  });
  const settings = toolboxSettings(options, ctx.repoRoot);
  const toolbox = toolboxEnv(dirs, settings, baseEnv.HOME ? realDir(baseEnv.HOME) : "");
  if (options.logDir) await Deno.mkdir(options.logDir, { recursive: true });
  // What killed agents left (processes, cgroups, files, containers), before any job starts.
  await cleanUpAfterCrashedAgents(logger);

  const json = options.json === true;
  const human = !options.quiet && !json;
  const emit = (record: Record<string, unknown>) => write(`${JSON.stringify(record)}\n`);
  const interrupted = new AbortController();
  let signals = 0;
  const onSignal = () => {
    signals++;
    if (signals === 1) {
      (json ? ctx.writeErr : write)(
        "\nStopping the pipeline... (press Ctrl-C again to exit at once)\n",
      );
      interrupted.abort();
    } else {
      Deno.exit(130);
    }
  };
  const signalNames: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signalNames) Deno.addSignalListener(s, onSignal);

  const rows = new Map<number, { block: string; job: string; result: string; ms: number }>();
  const startJob = (job: PlannedJob) => {
    const stem = jobFileStem(job.nn, job.blockName, job.name);
    const jobDir = `${dirs.runDir}/jobs/${stem}`;
    const prefix = parallel ? `[${job.blockName} / ${job.name}] ` : "";
    const out = prefixedWriter(human ? write : () => {}, prefix);
    if (!parallel && human) write(`\n=== ${job.blockName} / ${job.name}\n`);
    const printer = createLivePrinter({ write: (t) => out.write(t), color: ctx.color });
    let logFile: Deno.FsFile | undefined;
    const encoder = new TextEncoder();
    const sink: EventSink = {
      write(event) {
        if (logFile) {
          const bytes = encoder.encode(encodeEvent(event));
          let n = 0;
          while (n < bytes.length) n += logFile.writeSync(bytes.subarray(n));
        }
        if (json) emit({ ...event, block: job.blockName, job: job.name });
        else printer.write(event);
        if (event.event === "job_finished") out.flush();
      },
    };
    let job_: Job | undefined;
    const result = (async (): Promise<"passed" | "failed" | "stopped"> => {
      // Semaphore fails such a job rather than the pipeline file (PIPELINES.md §1.9).
      if (job.env.length > MAX_ENV_VARS) {
        const line = `Cannot start the job: it has ${job.env.length} environment variables, ` +
          `more than the ${MAX_ENV_VARS} Semaphore allows`;
        if (json) emit({ event: "job_error", block: job.blockName, job: job.name, error: line });
        else out.write(`${line}\n`);
        out.flush();
        return "failed";
      }
      if (options.logDir) {
        logFile = await Deno.open(`${options.logDir}/${stem}.jsonl`, {
          write: true,
          create: true,
          truncate: true,
          mode: 0o600,
        });
      }
      try {
        const { home, env, request, fileInjections } = await sandboxJob({
          dirs,
          jobDir,
          baseEnv,
          toolbox,
          settings,
          request: job.request,
        });
        job_ = Job.create({
          createExecutor,
          request,
          sink,
          logger,
          selfHosted: true,
          shellEnv: env,
          exposeKvmDevice: true,
          hostEnvVars,
          fileInjections,
          limits: options.limits,
          // The engine redacts (DECISIONS.md 24): the secrets' values whatever their names.
          redactedVars: options.redactedVars,
          secretValues: options.insecureSecrets ? [] : job.secretValues,
        });
        if (interrupted.signal.aborted) await job_.stop();
        const r = await job_.run();
        await removeServices(home, job.request.job_id);
        return r;
      } finally {
        logFile?.close();
      }
    })();
    return {
      result,
      async stop() {
        if (job_) await job_.stop();
      },
    };
  };

  const onJobEnd = (job: PlannedJob, outcome: JobOutcome, ms: number) => {
    rows.set(job.nn, { block: job.blockName, job: job.name, result: outcome, ms });
  };

  const blocks: SchedulerBlock[] = plan.blocks.filter((b) => b.selected).map((b) => ({
    index: b.block.index,
    name: b.block.name,
    dependencies: b.block.dependencies,
    jobs: b.jobs,
    skipped: b.skipped,
    failFast: b.failFast,
  }));
  const noTimeouts = options.noTimeouts ?? false;
  const outcome = await runBlocks({
    blocks,
    concurrency,
    failFast: plan.failFast,
    deadlineMs: noTimeouts ? undefined : ctx.pipeline.def.timeLimit * 60_000,
    jobDeadlines: !noTimeouts,
    signal: interrupted.signal,
    startJob,
    onJobEnd,
    onBlockStart(b) {
      if (json) emit({ event: "block_started", block: b.name, jobs: b.jobs.length });
      if (human) {
        write(
          `\n▶ Block '${b.name}' started (${b.jobs.length} job${b.jobs.length === 1 ? "" : "s"})\n`,
        );
      }
    },
    onBlockEnd(b, result, ms) {
      if (result === "skipped") {
        for (const job of b.jobs) {
          rows.set(job.nn, { block: b.name, job: job.name, result: "skipped", ms: 0 });
        }
      }
      if (json) {
        emit({ event: "block_finished", block: b.name, result, duration_ms: Math.round(ms) });
      }
      if (human) {
        write(
          `◀ Block '${b.name}' ${result}${
            result === "skipped" || result === "canceled" ? "" : ` in ${formatDuration(ms)}`
          }\n`,
        );
      }
    },
  });
  const doneAt = Math.floor(Date.now() / 1000);

  // after_pipeline runs whatever the result, but not after a person stopped the run (§6.2).
  if (ctx.pipeline.afterPipeline && !interrupted.signal.aborted) {
    const startedAt = ctx.runInfo.createdAt;
    const total = doneAt - startedAt;
    let counter = plan.afterPipeline[0]?.nn ? plan.afterPipeline[0].nn - 1 : 0;
    const afterJobs = expandAfterPipeline(ctx.pipeline, {
      facts: ctx.facts,
      run: ctx.runInfo,
      secrets: ctx.secrets,
      images: ctx.images,
      extraEnv: [
        ["SEMAPHORE_PIPELINE_RESULT", outcome.result],
        ["SEMAPHORE_PIPELINE_RESULT_REASON", outcome.reason],
        ["SEMAPHORE_PIPELINE_CREATED_AT", String(startedAt)],
        ["SEMAPHORE_PIPELINE_STARTED_AT", String(startedAt)],
        ["SEMAPHORE_PIPELINE_DONE_AT", String(doneAt)],
        ["SEMAPHORE_PIPELINE_TOTAL_DURATION", String(total)],
        ["SEMAPHORE_PIPELINE_INIT_DURATION", "0"],
        ["SEMAPHORE_PIPELINE_QUEUEING_DURATION", "0"],
        ["SEMAPHORE_PIPELINE_RUNNING_DURATION", String(total)],
      ],
    }, () => ++counter).filter((j) => plan.afterPipeline.some((p) => p.name === j.name));
    await runBlocks({
      blocks: [{
        index: -1,
        name: "After pipeline",
        dependencies: [],
        jobs: afterJobs,
        skipped: false,
        failFast: { stop: false, cancel: false },
      }],
      concurrency,
      failFast: { stop: false, cancel: false },
      jobDeadlines: !noTimeouts,
      signal: interrupted.signal,
      startJob,
      onJobEnd,
      onBlockStart() {
        if (json) emit({ event: "block_started", block: "After pipeline", jobs: afterJobs.length });
        if (human) write(`\n▶ after_pipeline started\n`);
      },
    });
  }
  for (const s of signalNames) Deno.removeSignalListener(s, onSignal);

  const ordered = [...rows.entries()].sort(([a], [b]) => a - b).map(([, r]) => r);
  const result = interrupted.signal.aborted
    ? (outcome.anyJobRan ? "stopped" : "canceled")
    : outcome.result;
  const keep = result !== "passed" || options.keep;
  if (json) {
    emit({
      event: "pipeline_finished",
      result,
      reason: outcome.reason,
      duration_ms: Math.round(performance.now() - started),
      jobs: ordered.map((r) => ({ ...r, ms: undefined, duration_ms: Math.round(r.ms) })),
      run_dir: keep ? dirs.runDir : undefined,
    });
  } else {
    write(
      formatSummary(ordered, { result, reason: outcome.reason, ms: performance.now() - started }),
    );
    if (keep) write(`Run directory kept: ${dirs.runDir}\n`);
  }
  if (!keep) await Deno.remove(dirs.runDir, { recursive: true }).catch(() => {});
  const code = interrupted.signal.aborted ? 130 : result === "passed" ? 0 : 1;
  return { code, result, reason: outcome.reason };
}
