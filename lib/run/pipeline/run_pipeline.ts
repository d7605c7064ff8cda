/**
 * `agent run PIPELINE.yml` (DECISIONS.md 25, PIPELINES.md): read and validate the pipeline,
 * read the git facts and secrets, plan, then list (`-l`), dry-run (`-n`), write the requests
 * (`--print-requests`) or run every job through the job engine, each in its own sandbox HOME
 * with the local toolbox; print a summary; resolve with the exit code (0 passed, 1 failed,
 * 130 stopped by a person, 2 invalid).
 *
 * @module
 */

import { scrubbedEnvironment } from "../../engine/agent_environment.ts";
import { errorMessage, UsageError } from "../../util/errors.ts";
import { parentDir } from "../../util/clean_path.ts";
import { parseYaml, PipelineError, readPipeline, resolveRepoPath } from "./schema.ts";
import { promotionParameters, promotionTargets, substituteParameters } from "./promotions.ts";
import { validatePipeline } from "./validate.ts";
import { findRepoRoot, type GitFacts, readGitFacts } from "./git_facts.ts";
import { loadSecrets, type Secret } from "./secrets.ts";
import { type RunInfo, secretUses } from "./expand.ts";
import { buildPlan, evaluateConditionText, formatDryRun, formatGraph, formatPlan } from "./plan.ts";
import { replayMark, writeRequests } from "./request_file.ts";
import { stateDir, toolboxSettings } from "./toolbox.ts";
import type { PromotionContext, RunPipelineOptions } from "./options.ts";
import { absolute, parseEnvPairs, realDir, secretOverrides, writer } from "./cli_values.ts";
import { delay } from "../../util/delay.ts";

export type { PromotionContext, RunPipelineOptions };

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

/**
 * Runs (or lists, dry-runs, prints) a pipeline file and resolves with the exit code.
 *
 * @throws {UsageError} (exit 2) an invalid pipeline, flag, secret or git fact.
 */
export async function runPipelineFile(options: RunPipelineOptions): Promise<number> {
  if (options.watch && !options.promotion) return await watch(options);
  try {
    return await run(options);
  } catch (error) {
    if (error instanceof PipelineError) {
      throw new UsageError(`${options.path}: ${error.message}`, { cause: error });
    }
    throw error;
  }
}

/**
 * `-w`: runs the pipeline, then again after every change in the repository (`.git/` aside),
 * until Ctrl-C (exit 130). An invalid pipeline is reported and waits for the next change.
 */
async function watch(options: RunPipelineOptions): Promise<number> {
  const write = options.write ?? writer(Deno.stdout);
  const writeErr = options.writeErr ?? writer(Deno.stderr);
  const pipelinePath = realDir(absolute(options.path));
  const dir = parentDir(pipelinePath);
  const root = realDir(options.directory ? absolute(options.directory) : findRepoRoot(dir) ?? dir);
  for (;;) {
    try {
      if (await run(options) === 130) return 130;
    } catch (error) {
      if (!(error instanceof PipelineError)) throw error;
      writeErr(`agent: ${options.path}: ${error.message}\n`);
    }
    const ignored = [options.logDir, options.printRequests]
      .filter((d) => d !== undefined)
      .map((d) => realDir(absolute(d!)));
    const watching = () => write("\nWatching for changes (Ctrl-C to stop)...\n");
    if (!await nextChange(root, ignored, watching)) return 130;
    write("\nChange seen: running again\n");
  }
}

/**
 * Resolves true at the next change under `root` (outside `.git/` and the `ignored` dirs the
 * run itself writes), false on Ctrl-C.
 */
async function nextChange(
  root: string,
  ignored: readonly string[],
  onWatching: () => void,
): Promise<boolean> {
  const watcher = Deno.watchFs(root, { recursive: true });
  onWatching(); // only now: a change made after this line is seen
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    watcher.close();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    for await (const event of watcher) {
      const relevant = event.paths.some((p) =>
        !p.includes("/.git/") && !p.endsWith("/.git") &&
        !ignored.some((d) => p === d || p.startsWith(`${d}/`))
      );
      if (relevant) {
        // Let a burst of writes (an editor saving, a checkout) settle first.
        await delay(300);
        return true;
      }
    }
    return !interrupted;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    try {
      watcher.close();
    } catch {
      // already closed
    }
  }
}

async function run(options: RunPipelineOptions): Promise<number> {
  const write = options.write ?? writer(Deno.stdout);
  const writeErr = options.writeErr ?? writer(Deno.stderr);
  const color = options.color ?? (Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR"));
  const pipelinePath = realDir(absolute(options.path));
  const pipelineDir = parentDir(pipelinePath);
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

  // What shows no variable values needs only the branch (no git process: -l starts fast),
  // unless a change_in range names the commit range, which only git can tell.
  const light = Boolean(
    options.list || options.graph || options.dryRun || options.condition !== undefined,
  ) && ![text, options.condition ?? ""].some((t) => t.includes("$SEMAPHORE_GIT_COMMIT_RANGE"));
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
    const mark = replayMark(runInfo, toolboxSettings(options, repoRoot), {
      cacheDir: options.cacheDir && absolute(options.cacheDir),
      artifactsDir: options.artifactsDir && absolute(options.artifactsDir),
    });
    const paths = await writeRequests(options.printRequests, all, mark);
    if (all.some((j) => j.secretValues.length > 0)) {
      writeErr(`warning: the requests in ${options.printRequests} hold secret values\n`);
    }
    write(paths.map((p) => `${p}\n`).join(""));
    return 0;
  }

  // The job engine and the executors load only when jobs run: -l, -n, -g stay light.
  const { execute } = await import("./execute.ts");
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
    let text: string;
    try {
      text = substituteParameters(raw, new Map(params), (line) => ctx.writeErr(`${line}\n`));
    } catch (error) {
      if (!(error instanceof PipelineError)) throw error;
      // The problem is in the promoted file, not in the pipeline that promotes it.
      throw new UsageError(`${file}: ${error.message}`, { cause: error });
    }
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
