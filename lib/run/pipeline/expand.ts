/**
 * From block to job requests (PIPELINES.md §2): parallelism and matrix expansion with
 * Semaphore's names, commands and epilogues in Semaphore's order, environment variables in
 * request order (§2.2, §3), secrets (§2.3), agent and containers (§2.4–2.5).
 *
 * @module
 */

import type { JobRequest } from "../../engine/job_request_types.ts";
import { encodeBase64 } from "../../util/base64.ts";
import type { Block, NamedJob, NamedTask, Pipeline } from "./validate.ts";
import type { AgentDef, EnvVarDef } from "./schema.ts";
import { gitEnvVars, type GitFacts } from "./git_facts.ts";
import { type Secret, secretValues } from "./secrets.ts";

/** The run-wide values of group A and C (§3). */
export interface RunInfo {
  readonly workflowId: string;
  readonly workflowNumber: number;
  readonly pipelineId: string;
  readonly projectName: string;
  readonly projectId: string;
  readonly orgUrl: string;
  /** Unix seconds. */
  readonly createdAt: number;
  /** A promoted pipeline: who promoted it (a login, or `auto-promotion`). @default not promoted */
  readonly promotedBy?: string;
  /** Pipeline ids along the promotion chain, this one last. @default [pipelineId] */
  readonly artefactIds?: readonly string[];
  /** Promotion parameters, as workflow env vars (§2.2 step 5). @default [] */
  readonly params?: readonly (readonly [string, string])[];
}

/** One job of the plan: its names, its request, and what is secret in it. */
export interface PlannedJob {
  /** Position in `-l` order, from 1. */
  readonly nn: number;
  /** Index of the block, -1 for `after_pipeline`. */
  readonly blockIndex: number;
  readonly blockName: string;
  readonly name: string;
  /** The job's matrix values (`SEMAPHORE_JOB_INDEX` for parallelism), in axis order. */
  readonly matrix: Readonly<Record<string, string>>;
  /** Env vars in request order, values raw. */
  readonly env: readonly (readonly [string, string])[];
  readonly request: JobRequest;
  /** Values the log redaction must hide (every secret env value and file content). */
  readonly secretValues: readonly string[];
  /** Names of the job's secrets, in import order. */
  readonly secretNames: readonly string[];
  /** Minutes, own or block's or pipeline's. */
  readonly timeLimit: number;
  readonly containers: boolean;
}

/** How secrets are resolved while expanding. */
export interface SecretSource {
  /** The secret, or undefined when it is unknown (names-only planning skips it). */
  get(name: string): Secret | undefined;
}

/** Options of {@linkcode expandPipeline}. */
export interface ExpandOptions {
  readonly facts: GitFacts;
  readonly run: RunInfo;
  /** Secrets by name; names-only planning passes an empty source. */
  readonly secrets: SecretSource;
  /** Extra group-C variables (`after_pipeline`'s `SEMAPHORE_PIPELINE_RESULT`...). @default [] */
  readonly extraEnv?: readonly (readonly [string, string])[];
  /** Numbering starts after this. @default 0 */
  readonly firstNumber?: number;
  /**
   * `-P OS_IMAGE=IMAGE`: VM jobs of that `os_image` (`*`: any) run in a one-container
   * dockercompose job of IMAGE (ours, like act's `-P`). @default none
   */
  readonly images?: Readonly<Record<string, string>>;
}

/** The agent a job runs on, after `-P` mapped a VM image to a container image. */
function effectiveAgent(agent: AgentDef, images: Readonly<Record<string, string>> = {}): AgentDef {
  if (agent.containers.length > 0) return agent;
  const image = images[agent.osImage] ?? images["*"];
  if (image === undefined) return agent;
  return {
    ...agent,
    containers: [{
      name: "main",
      image,
      command: "",
      entrypoint: "",
      user: "",
      env_vars: [],
      secrets: [],
    }],
  };
}

/** One expanded variant of a job before it gets env and a request. */
interface Variant {
  readonly name: string;
  readonly jobEnv: readonly (readonly [string, string])[];
  readonly matrix: Readonly<Record<string, string>>;
}

/** `parallelism` → matrix → combinations, with Semaphore's names (§2.6). */
export function jobVariants(job: NamedJob): Variant[] {
  const own: [string, string][] = job.env_vars.map((e) => [e.name, e.value]);
  let axes = job.matrix?.map((a) => ({ env_var: a.env_var, values: a.values }));
  if (job.parallelism !== undefined) {
    const n = job.parallelism;
    own.push(["SEMAPHORE_JOB_COUNT", String(n)]);
    axes = [{
      env_var: "SEMAPHORE_JOB_INDEX",
      values: Array.from({ length: n }, (_, i) => String(i + 1)),
    }];
  }
  if (!axes) return [{ name: job.jobName, jobEnv: own, matrix: {} }];
  let combos: [string, string][][] = [[]];
  for (const axis of axes) {
    combos = combos.flatMap((c) =>
      axis.values.map((v) => [...c, [axis.env_var, v]] as [string, string][])
    );
  }
  const count = own.findLast(([name]) => name === "SEMAPHORE_JOB_COUNT")?.[1];
  return combos.map((combo) => ({
    name: count !== undefined
      ? `${job.jobName} - ${combo[0][1]}/${count}`
      : `${job.jobName} - ${combo.map(([k, v]) => `${k}=${v}`).join(", ")}`,
    jobEnv: [...own, ...combo],
    matrix: Object.fromEntries(combo),
  }));
}

function rewriteImage(image: string): string {
  return image.startsWith("semaphoreci/") ? `registry.semaphoreci.com/${image.slice(12)}` : image;
}

function encodeEnv(env: readonly (readonly [string, string])[]) {
  return env.map(([name, value]) => ({ name, value: encodeBase64(value) }));
}

const directives = (list: readonly string[]) => list.map((directive) => ({ directive, alias: "" }));

/** The request-level fields of a task's job, shared by blocks and `after_pipeline`. */
interface TaskContext {
  readonly blockIndex: number;
  readonly blockName: string;
  readonly task: NamedTask;
  readonly agent: AgentDef;
  readonly prologue: readonly string[];
  readonly epilogue: { always: string[]; on_pass: string[]; on_fail: string[] };
  readonly env: readonly EnvVarDef[];
  readonly secretNames: readonly string[];
  readonly timeLimit: number;
}

function buildJobs(
  ctx: TaskContext,
  options: ExpandOptions,
  pipeline: Pipeline,
  next: () => number,
): PlannedJob[] {
  const { facts, run, secrets } = options;
  const agent = effectiveAgent(ctx.agent, options.images);
  const containers = agent.containers.length > 0;
  const importedSecrets = ctx.secretNames.map((n) => secrets.get(n)).filter((s) => s !== undefined);
  const out: PlannedJob[] = [];
  for (const job of ctx.task.jobs) {
    for (const variant of jobVariants(job)) {
      const jobId = crypto.randomUUID();
      // Env vars in request order (§2.2), built when first asked for: `-l` never needs them.
      const buildEnv = () => {
        const env: (readonly [string, string])[] = [
          ["PAGER", "cat"],
          ["TERM", "xterm"],
          ["CI", "true"],
          ["SEMAPHORE", "true"],
          ["SEMAPHORE_PROJECT_NAME", run.projectName],
          ["SEMAPHORE_PROJECT_ID", run.projectId],
          ["SEMAPHORE_JOB_NAME", variant.name],
          ["SEMAPHORE_JOB_ID", jobId],
          ["SEMAPHORE_JOB_CREATION_TIME", String(run.createdAt)],
          ["SEMAPHORE_JOB_TYPE", "pipeline_job"],
          ["SEMAPHORE_AGENT_MACHINE_TYPE", agent.machineType],
          ["SEMAPHORE_AGENT_MACHINE_OS_IMAGE", agent.osImage],
          ["SEMAPHORE_AGENT_MACHINE_ENVIRONMENT_TYPE", containers ? "container" : "VM"],
          ["SEMAPHORE_ORGANIZATION_URL", run.orgUrl],
          ["SEMAPHORE_ARTIFACT_TOKEN", "local"],
          ["SEMAPHORE_TOOLBOX_METRICS_ENABLED", "false"],
          ...gitEnvVars(facts),
        ];
        for (const secret of importedSecrets) {
          for (const e of secret.envVars) env.push([e.name, e.value]);
        }
        env.push(
          ["SEMAPHORE_WORKFLOW_ID", run.workflowId],
          ["SEMAPHORE_WORKFLOW_NUMBER", String(run.workflowNumber)],
          ["SEMAPHORE_WORKFLOW_RERUN", "false"],
          ["SEMAPHORE_WORKFLOW_TRIGGERED_BY_HOOK", "true"],
          ["SEMAPHORE_WORKFLOW_TRIGGERED_BY_SCHEDULE", "false"],
          ["SEMAPHORE_WORKFLOW_TRIGGERED_BY_API", "false"],
          ["SEMAPHORE_WORKFLOW_TRIGGERED_BY_MANUAL_RUN", "false"],
          ["SEMAPHORE_WORKFLOW_HOOK_SOURCE", "github"],
          ["SEMAPHORE_WORKFLOW_TRIGGERED_BY", facts.committer],
          ["SEMAPHORE_GIT_COMMITTER", facts.committer],
          ["SEMAPHORE_GIT_COMMIT_AUTHOR", facts.author],
          ["SEMAPHORE_PIPELINE_ID", run.pipelineId],
          ["SEMAPHORE_PIPELINE_ARTEFACT_ID", run.pipelineId],
          ...(run.artefactIds ?? [run.pipelineId]).map((id, i) =>
            [`SEMAPHORE_PIPELINE_${i}_ARTEFACT_ID`, id] as const
          ),
          ["SEMAPHORE_PIPELINE_NAME", pipeline.def.name],
          ["SEMAPHORE_BLOCK_NAME", ctx.blockName],
          ["SEMAPHORE_PIPELINE_RERUN", "false"],
          ["SEMAPHORE_PIPELINE_PROMOTION", run.promotedBy !== undefined ? "true" : "false"],
          ["SEMAPHORE_PIPELINE_PROMOTED_BY", run.promotedBy ?? ""],
          ["SEMAPHORE_ORGANIZATION_ID", "00000000-0000-0000-0000-000000000000"],
          ...(run.params ?? []),
          ...(options.extraEnv ?? []),
        );
        for (const e of ctx.env) env.push([e.name, e.value]);
        env.push(...variant.jobEnv);
        return env;
      };
      let env: (readonly [string, string])[] | undefined;
      const getEnv = () => env ??= buildEnv();

      const files = new Map<string, { path: string; content: string; mode: string }>();
      for (const secret of importedSecrets) {
        for (const f of secret.files) {
          const path = containers ? f.path : f.path.replace(/^\/(home|Users)\/semaphore\//, "");
          files.delete(path);
          files.set(path, { path, content: f.content, mode: "0644" });
        }
      }
      const secretVals = importedSecrets.flatMap(secretValues);
      for (const c of agent.containers) {
        for (const name of c.secrets) {
          const s = secrets.get(name);
          if (s) secretVals.push(...secretValues(s));
        }
      }
      for (const name of agent.imagePullSecrets) {
        const s = secrets.get(name);
        if (s) secretVals.push(...secretValues(s));
      }
      // The request (base64 values) is built when first asked for: `-l` never needs it.
      const makeRequest = (): JobRequest => {
        const composeContainers = agent.containers.map((c) => {
          const cenv: [string, string][] = [];
          for (const name of c.secrets) {
            const s = secrets.get(name);
            for (const e of s?.envVars ?? []) cenv.push([e.name, e.value]);
          }
          for (const e of c.env_vars) cenv.push([e.name, e.value]);
          return {
            name: c.name,
            image: rewriteImage(c.image),
            command: c.command,
            entrypoint: c.entrypoint,
            user: c.user,
            env_vars: encodeEnv(cenv),
          };
        });
        const credentials = agent.imagePullSecrets.map((name) => {
          const s = secrets.get(name);
          return {
            env_vars: encodeEnv(s ? s.envVars.map((e) => [e.name, e.value] as const) : []),
            files: s
              ? s.files.map((f) => ({ path: f.path, content: f.content, mode: "0644" }))
              : [],
          };
        });
        return {
          job_id: jobId,
          executor: containers ? "dockercompose" : "shell",
          compose: {
            containers: composeContainers,
            image_pull_credentials: credentials,
            host_setup_commands: [],
          },
          commands: directives([...ctx.prologue, ...job.commands]),
          epilogue_always_commands: directives(ctx.epilogue.always),
          epilogue_on_pass_commands: directives(ctx.epilogue.on_pass),
          epilogue_on_fail_commands: directives(ctx.epilogue.on_fail),
          env_vars: encodeEnv(getEnv()),
          files: [...files.values()],
          ssh_public_keys: [],
          callbacks: { finished: "", teardown_finished: "", token: "" },
          logger: { method: "pull", url: "", token: "", max_size_in_bytes: 0 },
        };
      };
      let request: JobRequest | undefined;
      out.push({
        nn: next(),
        blockIndex: ctx.blockIndex,
        blockName: ctx.blockName,
        name: variant.name,
        matrix: variant.matrix,
        get env() {
          return getEnv();
        },
        get request() {
          return request ??= makeRequest();
        },
        secretValues: [...new Set(secretVals)],
        secretNames: ctx.secretNames,
        timeLimit: Math.min(job.timeLimit ?? ctx.timeLimit, ctx.timeLimit),
        containers,
      });
    }
  }
  return out;
}

/** The jobs of one block (§2.1–2.6). */
export function expandBlock(
  pipeline: Pipeline,
  block: Block,
  options: ExpandOptions,
  next: () => number,
): PlannedJob[] {
  const g = pipeline.def.global;
  const task = block.task;
  return buildJobs(
    {
      blockIndex: block.index,
      blockName: block.name,
      task,
      agent: task.agent ?? pipeline.def.agent,
      prologue: [...g.prologue, ...task.prologue],
      epilogue: {
        always: [...task.epilogue.always, ...g.epilogue.always],
        on_pass: [...task.epilogue.on_pass, ...g.epilogue.on_pass],
        on_fail: [...task.epilogue.on_fail, ...g.epilogue.on_fail],
      },
      env: [...g.env_vars, ...task.env_vars],
      secretNames: [...g.secrets, ...task.secrets],
      timeLimit: block.timeLimit,
    },
    options,
    pipeline,
    next,
  );
}

/** The jobs of `after_pipeline` (no global config), or none. */
export function expandAfterPipeline(
  pipeline: Pipeline,
  options: ExpandOptions,
  next: () => number,
): PlannedJob[] {
  const task = pipeline.afterPipeline;
  if (!task) return [];
  return buildJobs(
    {
      blockIndex: -1,
      blockName: "After pipeline",
      task,
      agent: task.agent ?? pipeline.def.agent,
      prologue: task.prologue,
      epilogue: {
        always: [...task.epilogue.always],
        on_pass: [...task.epilogue.on_pass],
        on_fail: [...task.epilogue.on_fail],
      },
      env: task.env_vars,
      secretNames: task.secrets,
      timeLimit: pipeline.def.timeLimit,
    },
    options,
    pipeline,
    next,
  );
}

/** Every secret name the pipeline uses, with the first place that uses it. */
export function secretUses(pipeline: Pipeline): Map<string, string> {
  const uses = new Map<string, string>();
  const add = (name: string, where: string) => {
    if (!uses.has(name)) uses.set(name, where);
  };
  const agentUses = (agent: AgentDef | undefined, where: string) => {
    for (const c of agent?.containers ?? []) for (const s of c.secrets) add(s, where);
    for (const s of agent?.imagePullSecrets ?? []) add(s, where);
  };
  for (const block of pipeline.blocks) {
    const where = `block '${block.name}'`;
    for (const s of [...pipeline.def.global.secrets, ...block.task.secrets]) add(s, where);
    agentUses(block.task.agent ?? pipeline.def.agent, where);
  }
  if (pipeline.afterPipeline) {
    for (const s of pipeline.afterPipeline.secrets) add(s, "after_pipeline");
    agentUses(pipeline.afterPipeline.agent ?? pipeline.def.agent, "after_pipeline");
  }
  return uses;
}
