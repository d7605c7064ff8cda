/**
 * `agent run PIPELINE.yml` (DECISIONS.md 25, PIPELINES.md): read and validate the pipeline,
 * read the git facts and secrets, plan, then list (`-l`), dry-run (`-n`), write the requests
 * (`--print-requests`) or run every job through the job engine, each in its own sandbox HOME
 * with the local toolbox; print a summary; resolve with the exit code (0 passed, 1 failed,
 * 130 stopped by a person, 2 invalid).
 *
 * @module
 */

import { Job } from "../../engine/job.ts";
import type { EventSink } from "../../engine/events.ts";
import { encodeEvent } from "../../engine/events.ts";
import type { HostEnvVar } from "../../engine/executor.ts";
import { scrubbedEnvironment } from "../../engine/agent_environment.ts";
import { cleanUpAfterCrashedAgents, createExecutor } from "../../../executors/for_job.ts";
import { createLivePrinter } from "../live_printer.ts";
import { createLogger, type Logger, parseLogFormat, parseLogLevel } from "../../util/agent_log.ts";
import { errorMessage, UsageError } from "../../util/errors.ts";
import { parseYaml, PipelineError, readPipeline, resolveRepoPath } from "./schema.ts";
import { promotionParameters, promotionTargets, substituteParameters } from "./promotions.ts";
import { validatePipeline } from "./validate.ts";
import { findRepoRoot, type GitFacts, type GitFlags, readGitFacts } from "./git_facts.ts";
import { loadSecrets, type Secret } from "./secrets.ts";
import { expandAfterPipeline, type PlannedJob, type RunInfo, secretUses } from "./expand.ts";
import {
  buildPlan,
  evaluateConditionText,
  formatDryRun,
  formatGraph,
  formatPlan,
  type Selection,
} from "./plan.ts";
import { writeRequests } from "./request_file.ts";
import { type JobOutcome, runBlocks, type SchedulerBlock } from "./scheduler.ts";
import { formatDuration, formatSummary, jobFileStem, prefixedWriter } from "./summary.ts";
import { redactingSink } from "./redact_sink.ts";
import {
  cacheRoot,
  containerToolboxCommand,
  prepareJobHome,
  prepareRun,
  stateDir,
  toolboxEnv,
  type ToolboxSettings,
} from "./toolbox.ts";

/** Options of {@linkcode runPipelineFile}: the pipeline flags of `agent run`. */
export interface RunPipelineOptions extends GitFlags, Selection {
  /** The pipeline file (relative to the current directory). */
  readonly path: string;
  /** `-C`: the repository root. @default the file's repository */
  readonly directory?: string;
  readonly list?: boolean;
  /** `--promote NAME` (repeatable): run these promotions after the pipeline, chains followed. */
  readonly promote?: readonly string[];
  /** `--auto-promote`: run every promotion whose condition holds after the pipeline. */
  readonly autoPromote?: boolean;
  /** `--param NAME=VALUE`: promotion parameters. */
  readonly params?: readonly string[];
  /** Set when this run is a promotion of another pipeline (internal). */
  readonly promotion?: PromotionContext;
  /** `-P OS_IMAGE=IMAGE` (repeatable; `*=IMAGE` for every VM job). */
  readonly images?: readonly string[];
  /** `-g`: the block graph as text, or `dot`. */
  readonly graph?: "text" | "dot";
  /** `--condition EXPR`: print its value and exit. */
  readonly condition?: string;
  readonly dryRun?: boolean;
  readonly printRequests?: string;
  readonly secretFiles?: readonly string[];
  readonly secretsDir?: string;
  /** `-s NAME:VAR[=VALUE]`. */
  readonly secrets?: readonly string[];
  readonly allowMissingSecrets?: boolean;
  readonly insecureSecrets?: boolean;
  readonly allowHostPaths?: boolean;
  readonly env?: readonly string[];
  readonly envFile?: string;
  /** `--jobs N`. @default CPUs */
  readonly concurrency?: number;
  readonly failFast?: boolean;
  readonly noTimeouts?: boolean;
  readonly bind?: boolean;
  readonly useGitignore?: boolean;
  readonly cacheDir?: string;
  readonly noCache?: boolean;
  readonly artifactsDir?: string;
  readonly keep?: boolean;
  readonly userProfile?: boolean;
  readonly allowSudo?: boolean;
  readonly strictVersions?: boolean;
  readonly lenient?: boolean;
  readonly logDir?: string;
  readonly quiet?: boolean;
  /** `--json`: one JSON object per line on stdout (job events tagged with block and job). */
  readonly json?: boolean;
  /** `-v`: the agent's own log at info level on stderr. */
  readonly verbose?: boolean;
  readonly project?: string;
  readonly orgUrl?: string;
  /** `--log-format`: text or json. @default SEMAPHORE_AGENT_LOG_FORMAT, else text */
  readonly logFormat?: string;
  /** Where output goes. @default stdout */
  readonly write?: (text: string) => void;
  /** Where notices and warnings go. @default stderr */
  readonly writeErr?: (text: string) => void;
  /** @default stdout is a terminal and NO_COLOR unset */
  readonly color?: boolean;
  /** The environment jobs start from (tests). @default the agent's, scrubbed */
  readonly baseEnv?: Readonly<Record<string, string>>;
}

/** What a promoted pipeline inherits from the one it follows. */
export interface PromotionContext {
  /** The pipeline text, parameters already substituted. */
  readonly text: string;
  readonly promotedBy: string;
  readonly artefactIds: readonly string[];
  readonly params: readonly (readonly [string, string])[];
  readonly workflowId: string;
  readonly workflowNumber: number;
  readonly depth: number;
}

/** Writes text to a file descriptor; once the reader is gone (a closed pipe), drops it. */
function writer(file: { writeSync(p: Uint8Array): number }): (t: string) => void {
  const encoder = new TextEncoder();
  let closed = false;
  return (text) => {
    if (closed) return;
    const bytes = encoder.encode(text);
    let written = 0;
    try {
      while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
    } catch {
      closed = true; // e.g. `agent run | head`: the rest of the output has no reader
    }
  };
}

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

function absolute(path: string): string {
  if (path.startsWith("/")) return path;
  return `${Deno.cwd()}/${path}`.replace(/\/\.\//g, "/");
}

function realDir(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

/** UUIDv5 (RFC 9562) in the URL namespace: a stable project id from the remote URL. */
async function uuidV5(name: string): Promise<string> {
  const ns = "6ba7b8119dad11d180b400c04fd430c8".match(/../g)!.map((h) => parseInt(h, 16));
  const data = new Uint8Array([...ns, ...new TextEncoder().encode(name)]);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-1", data)).slice(0, 16);
  hash[6] = (hash[6] & 0x0f) | 0x50;
  hash[8] = (hash[8] & 0x3f) | 0x80;
  const hex = [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}

function nextWorkflowNumber(state: string, projectId: string): number {
  const path = `${state}/workflow-numbers/${projectId}`;
  let n = 0;
  try {
    n = Number.parseInt(Deno.readTextFileSync(path), 10) || 0;
  } catch {
    // first run
  }
  n++;
  try {
    Deno.mkdirSync(`${state}/workflow-numbers`, { recursive: true });
    Deno.writeTextFileSync(path, `${n}\n`);
  } catch {
    // a read-only state dir only loses the counter
  }
  return n;
}

function parseEnvPairs(pairs: readonly string[], flag: string): HostEnvVar[] {
  return pairs.map((pair) => {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new PipelineError(`${flag}: expected NAME=VALUE, found '${pair}'`);
    return { name: pair.slice(0, eq), value: pair.slice(eq + 1) };
  });
}

function readEnvFile(path: string): HostEnvVar[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    throw new PipelineError(`--env-file: cannot read '${path}': ${errorMessage(error)}`);
  }
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  return parseEnvPairs(lines.map((l) => l.replace(/^export\s+/, "")), `--env-file ${path}`);
}

/** `-s NAME:VAR[=VALUE]`: no value → the environment (a prompt needs a terminal). */
function secretOverrides(specs: readonly string[]) {
  return specs.map((spec) => {
    const m = /^([^:]+):([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$/s.exec(spec);
    if (!m) throw new PipelineError(`--secret: expected NAME:VAR[=VALUE], found '${spec}'`);
    let value: string | undefined = m[3];
    if (value === undefined) {
      value = Deno.env.get(m[2]);
      if (value === undefined && Deno.stdin.isTerminal()) {
        value = prompt(`Value of ${m[2]} for secret '${m[1]}':`) ?? undefined;
      }
      if (value === undefined) {
        throw new PipelineError(`--secret ${spec}: ${m[2]} is not set in the environment`);
      }
    }
    return { secret: m[1], name: m[2], value: value as string };
  });
}

/**
 * Runs (or lists, dry-runs, prints) a pipeline file and resolves with the exit code.
 *
 * @throws {UsageError} (exit 2) an invalid pipeline, flag, secret or git fact.
 */
export async function runPipelineFile(options: RunPipelineOptions): Promise<number> {
  try {
    return await run(options);
  } catch (error) {
    if (error instanceof PipelineError) {
      throw new UsageError(`${options.path}: ${error.message}`, { cause: error });
    }
    throw error;
  }
}

async function run(options: RunPipelineOptions): Promise<number> {
  const write = options.write ?? writer(Deno.stdout);
  const writeErr = options.writeErr ?? writer(Deno.stderr);
  const color = options.color ?? (Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR"));
  const pipelinePath = realDir(absolute(options.path));
  const pipelineDir = pipelinePath.slice(0, pipelinePath.lastIndexOf("/")) || "/";
  const repoRoot = realDir(
    options.directory ? absolute(options.directory) : findRepoRoot(pipelineDir) ?? Deno.cwd(),
  );
  let text: string;
  try {
    text = options.promotion?.text ?? Deno.readTextFileSync(pipelinePath);
  } catch (error) {
    throw new PipelineError(`Cannot read pipeline file: ${errorMessage(error)}`);
  }
  const { pipeline: def, notices, warnings } = readPipeline(parseYaml(text), {
    pipelineDir,
    repoRoot,
    lenient: options.lenient,
  });
  const pipeline = validatePipeline(def);
  for (const line of [...notices, ...warnings]) writeErr(`${line}\n`);

  // What shows no variable values needs only the branch (no git process: -l starts fast).
  const light = Boolean(
    options.list || options.graph || options.dryRun || options.condition !== undefined,
  );
  const facts = await readGitFacts(repoRoot, options, light);
  const baseEnv = options.baseEnv ?? scrubbedEnvironment();
  const projectName = options.project ?? facts.repoName;
  const projectId = await uuidV5(facts.url);
  const state = stateDir(baseEnv);
  const pipelineFile = `/${
    pipelinePath.startsWith(`${repoRoot}/`) ? pipelinePath.slice(repoRoot.length + 1) : pipelinePath
  }`;
  if (options.condition !== undefined) {
    write(`${evaluateConditionText(options.condition, facts, pipelineFile)}\n`);
    return 0;
  }
  const needsValues = !options.list && !options.dryRun && !options.graph;
  const pipelineId = crypto.randomUUID();
  const promotion = options.promotion;
  const runInfo: RunInfo = {
    workflowId: promotion?.workflowId ?? crypto.randomUUID(),
    workflowNumber: promotion?.workflowNumber ??
      (needsValues && !options.printRequests ? nextWorkflowNumber(state, projectId) : 0),
    pipelineId,
    projectName,
    projectId,
    orgUrl: options.orgUrl ?? "http://localhost",
    createdAt: Math.floor(Date.now() / 1000),
    promotedBy: promotion?.promotedBy,
    artefactIds: [...(promotion?.artefactIds ?? []), pipelineId],
    params: promotion?.params,
  };
  const givenParams = new Map(
    parseEnvPairs(options.params ?? [], "--param").map((e) => [e.name, e.value]),
  );
  for (const name of promotion ? [] : options.promote ?? []) {
    const target = def.promotions.find((p) => p.name === name);
    // Parameters are checked before anything runs.
    if (target) promotionParameters(target, givenParams);
    else {
      throw new PipelineError(
        `--promote: no promotion '${name}' (promotions: ${
          def.promotions.map((p) => `'${p.name}'`).join(", ") || "none"
        })`,
      );
    }
  }

  // Secrets: values only when jobs run or requests are written (§8.4).
  let secrets = new Map<string, Secret>();
  if (needsValues) {
    secrets = loadSecrets({
      files: options.secretFiles,
      dir: options.secretsDir,
      overrides: secretOverrides(options.secrets ?? []),
      warn: (line) => writeErr(`${line}\n`),
    });
  }
  const images: Record<string, string> = {};
  for (const spec of options.images ?? []) {
    const eq = spec.indexOf("=");
    if (eq <= 0 || eq === spec.length - 1) {
      throw new PipelineError(`--image: expected OS_IMAGE=IMAGE, found '${spec}'`);
    }
    images[spec.slice(0, eq)] = spec.slice(eq + 1);
  }
  const plan = buildPlan(pipeline, {
    facts,
    run: runInfo,
    secrets,
    images,
    pipelineFile,
    selection: { ...options, forceFailFast: options.failFast },
  });

  if (options.graph) {
    write(formatGraph(plan, options.graph));
    return 0;
  }
  if (options.list) {
    write(formatPlan(plan));
    return 0;
  }
  if (options.dryRun) {
    // Names only: which secrets would be found, never their values.
    let known: Set<string> | undefined;
    try {
      known = new Set(
        loadSecrets({ files: options.secretFiles, dir: options.secretsDir }).keys(),
      );
    } catch (error) {
      writeErr(`warning: ${errorMessage(error)}\n`);
    }
    write(formatDryRun(plan, known));
    return 0;
  }

  const selectedBlocks = plan.blocks.filter((b) => b.selected);
  // A missing secret stops the run before anything starts (§2.3, §8.10).
  if (!options.allowMissingSecrets) {
    const uses = secretUses(pipeline);
    const needed = new Set<string>();
    for (const b of selectedBlocks) {
      if (!b.skipped) { for (const j of b.jobs) j.secretNames.forEach((n) => needed.add(n)); }
    }
    for (const j of plan.afterPipeline) j.secretNames.forEach((n) => needed.add(n));
    for (const [name, where] of uses) {
      const block = where.startsWith("block '") ? where.slice(7, -1) : undefined;
      const used = needed.has(name) ||
        (block !== undefined && selectedBlocks.some((b) => b.block.name === block && !b.skipped));
      if (used && !secrets.has(name)) {
        throw new PipelineError(
          `secret '${name}' not found (used by ${where}); put it in ${
            options.secretsDir ?? "the secrets dir"
          } or pass --secret-file, or --allow-missing-secrets`,
        );
      }
    }
  }
  const runJobs = [
    ...selectedBlocks.flatMap((b) => b.skipped ? [] : b.jobs),
    ...plan.afterPipeline,
  ];
  // Secret files at absolute host paths are never written (§8.9).
  if (!options.allowHostPaths) {
    for (const job of runJobs) {
      if (job.containers) continue;
      for (const f of job.request.files) {
        if (f.path.startsWith("/")) {
          throw new PipelineError(
            `a secret of block '${job.blockName}' has the file '${f.path}' outside the job's ` +
              "home; give --allow-host-paths to write it on this machine",
          );
        }
      }
    }
  }
  if (options.printRequests) {
    const all = [...selectedBlocks.flatMap((b) => b.jobs), ...plan.afterPipeline];
    const paths = await writeRequests(options.printRequests, all);
    if (all.some((j) => j.secretValues.length > 0)) {
      writeErr(`warning: the requests in ${options.printRequests} hold secret values\n`);
    }
    write(paths.map((p) => `${p}\n`).join(""));
    return 0;
  }

  const outcome = await execute({
    options,
    images,
    plan,
    pipeline,
    facts,
    runInfo,
    secrets,
    baseEnv,
    repoRoot,
    write,
    writeErr,
    color,
    state,
  });
  if (outcome.code === 130 || (!options.promote?.length && !options.autoPromote)) {
    return outcome.code;
  }
  return Math.max(
    outcome.code,
    await runPromotions(options, {
      def,
      facts,
      pipelineFile,
      pipelineDir,
      repoRoot,
      runInfo,
      outcome,
      writeErr,
    }),
  );
}

/** Runs the promotions that follow a pipeline (§6.2) and resolves with the worst exit code. */
async function runPromotions(
  options: RunPipelineOptions,
  ctx: {
    def: ReturnType<typeof readPipeline>["pipeline"];
    facts: GitFacts;
    pipelineFile: string;
    pipelineDir: string;
    repoRoot: string;
    runInfo: RunInfo;
    outcome: { result: string; reason: string };
    writeErr: (t: string) => void;
  },
): Promise<number> {
  const depth = (options.promotion?.depth ?? 0) + 1;
  if (depth > 10) throw new PipelineError("promotions: more than 10 pipelines in a chain");
  const given = new Map(
    parseEnvPairs(options.params ?? [], "--param").map((e) => [e.name, e.value]),
  );
  let code = 0;
  const targets = promotionTargets(ctx.def.promotions, {
    names: options.promote ?? [],
    auto: options.autoPromote ?? false,
    facts: ctx.facts,
    pipelineFile: ctx.pipelineFile,
    outcome: ctx.outcome,
  });
  for (const { promotion, by } of targets) {
    const params = promotionParameters(promotion, given);
    const file = resolveRepoPath(promotion.pipeline_file, {
      pipelineDir: ctx.pipelineDir,
      repoRoot: ctx.repoRoot,
    });
    let raw: string;
    try {
      raw = Deno.readTextFileSync(file);
    } catch (error) {
      throw new PipelineError(
        `${promotion.path}.pipeline_file: cannot read '${promotion.pipeline_file}': ${
          errorMessage(error)
        }`,
      );
    }
    const text = substituteParameters(raw, new Map(params), (line) => ctx.writeErr(`${line}\n`));
    (options.write ?? writer(Deno.stdout))(
      `\n▶ Promotion '${promotion.name}' (${promotion.pipeline_file}, ${by})\n`,
    );
    const result = await runPipelineFile({
      ...options,
      path: file,
      blocks: undefined,
      jobs: undefined,
      matrix: undefined,
      skip: undefined,
      forceRun: undefined,
      promotion: {
        text,
        promotedBy: by === "manual" ? ctx.facts.committer : "auto-promotion",
        artefactIds: ctx.runInfo.artefactIds ?? [ctx.runInfo.pipelineId],
        params,
        workflowId: ctx.runInfo.workflowId,
        workflowNumber: ctx.runInfo.workflowNumber,
        depth,
      },
    });
    code = Math.max(code, result);
    if (result === 130) break;
  }
  return code;
}

interface ExecuteContext {
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

async function execute(
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
  const settings: ToolboxSettings = {
    sourceDir: ctx.repoRoot,
    checkout: options.bind
      ? "bind"
      : options.committed
      ? "committed"
      : options.useGitignore === false
      ? "all"
      : "copy",
    noCache: options.noCache ?? false,
    strictVersions: options.strictVersions ?? false,
    allowSudo: options.allowSudo ?? false,
    userProfile: options.userProfile ?? false,
  };
  const toolbox = toolboxEnv(dirs, settings, baseEnv.HOME ? realDir(baseEnv.HOME) : "");
  if (options.logDir) await Deno.mkdir(options.logDir, { recursive: true });
  const allJobs = [...plan.blocks.flatMap((b) => b.jobs), ...plan.afterPipeline];
  if (allJobs.some((j) => j.containers)) await cleanUpAfterCrashedAgents(logger);

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
    let sink: EventSink = {
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
    if (!options.insecureSecrets) sink = redactingSink(sink, job.secretValues);
    let job_: Job | undefined;
    const result = (async () => {
      if (options.logDir) {
        logFile = await Deno.open(`${options.logDir}/${stem}.jsonl`, {
          write: true,
          create: true,
          truncate: true,
          mode: 0o600,
        });
      }
      try {
        const { home, env } = await prepareJobHome({
          dirs,
          jobDir,
          baseEnv,
          toolbox,
          userProfile: settings.userProfile,
        });
        let request = job.request;
        const fileInjections = [];
        if (job.containers) {
          request = {
            ...request,
            commands: [
              { directive: containerToolboxCommand(toolbox), alias: "Loading the local toolbox" },
              ...request.commands,
            ],
          };
          for (
            const dir of [
              dirs.toolboxDir,
              dirs.cacheDir,
              dirs.artifactsDir,
              dirs.projectArtifactsDir,
            ]
          ) {
            fileInjections.push({ hostPath: dir, destination: dir });
          }
          fileInjections.push({ hostPath: ctx.repoRoot, destination: `${ctx.repoRoot}:ro` });
        }
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

/** Removes the `sem-service` containers a job started (label `semaphore-agent.job`). */
async function removeServices(home: string, jobId: string): Promise<void> {
  try {
    await Deno.stat(`${home}/.sem-service-used`);
  } catch {
    return;
  }
  try {
    const out = await new Deno.Command("docker", {
      args: ["ps", "-aq", "--filter", `label=semaphore-agent.job=${jobId}`],
      stdout: "piped",
      stderr: "null",
    }).output();
    const ids = new TextDecoder().decode(out.stdout).split("\n").filter((l) => l);
    if (ids.length > 0) {
      await new Deno.Command("docker", {
        args: ["rm", "-f", ...ids],
        stdout: "null",
        stderr: "null",
      })
        .output();
    }
  } catch {
    // no docker CLI: sem-service could not have started anything
  }
}
