/**
 * Reads a Semaphore pipeline file (`version: v1.0`, PIPELINES.md §1) into typed definitions,
 * rejecting what Semaphore's schema rejects: unknown keys, wrong types, missing keys, `task_file`
 * and `commands_file` that cannot be read. Each problem is one {@linkcode PipelineError} whose
 * message starts with the YAML path (`blocks[2].task.jobs[0].matrix[1].values: expected a list`).
 * Fields accepted but ignored locally add one notice each. Cross-field rules (names, dependencies,
 * time limits, conditions) are `validate.ts`'s.
 *
 * @module
 */

import { parseDocument } from "yaml";

/** An invalid pipeline file: the message names the YAML path; exit code 2. */
export class PipelineError extends SyntaxError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PipelineError";
  }
}

/** A `{name, value}` environment variable, value raw (not base64). */
export interface EnvVarDef {
  readonly name: string;
  readonly value: string;
}

/** A `when` condition as written, with where it was written. */
export interface ConditionDef {
  readonly when: string | boolean;
  readonly path: string;
}

/** The epilogue lists of a task or of `global_job_config`. */
export interface EpilogueDef {
  readonly always: readonly string[];
  readonly on_pass: readonly string[];
  readonly on_fail: readonly string[];
}

/** One container of `agent.containers`. */
export interface ContainerDef {
  readonly name: string;
  readonly image: string;
  readonly command: string;
  readonly entrypoint: string;
  readonly user: string;
  readonly env_vars: readonly EnvVarDef[];
  readonly secrets: readonly string[];
}

/** An `agent`. */
export interface AgentDef {
  readonly machineType: string;
  readonly osImage: string;
  readonly containers: readonly ContainerDef[];
  readonly imagePullSecrets: readonly string[];
}

/** `fail_fast`. */
export interface FailFastDef {
  readonly stop?: ConditionDef;
  readonly cancel?: ConditionDef;
}

/** One job as written (`name` undefined when nameless). */
export interface JobDef {
  readonly name: string | undefined;
  readonly commands: readonly string[];
  readonly env_vars: readonly EnvVarDef[];
  readonly matrix?: readonly { readonly env_var: string; readonly values: readonly string[] }[];
  readonly parallelism?: number;
  /** Minutes. */
  readonly timeLimit?: number;
  readonly path: string;
}

/** A task (block task or `after_pipeline.task`). */
export interface TaskDef {
  readonly jobs: readonly JobDef[];
  readonly agent?: AgentDef;
  readonly prologue: readonly string[];
  readonly epilogue: EpilogueDef;
  readonly env_vars: readonly EnvVarDef[];
  readonly secrets: readonly string[];
  readonly fail_fast?: FailFastDef;
  readonly path: string;
}

/** One block as written. */
export interface BlockDef {
  readonly name: string | undefined;
  readonly dependencies?: readonly string[];
  readonly task: TaskDef;
  readonly skip?: ConditionDef;
  readonly run?: ConditionDef;
  readonly timeLimit?: number;
  readonly path: string;
}

/** A promotion (listed, not run). */
export interface PromotionDef {
  readonly name: string;
  readonly pipeline_file: string;
  readonly auto_promote?: ConditionDef;
  /** `auto_promote_on` (legacy): a result, its reason, branch regexes. */
  readonly auto_promote_on: readonly {
    readonly result: string;
    readonly result_reason?: string;
    readonly branch?: readonly string[];
  }[];
  readonly parameters: readonly PromotionParameter[];
  readonly path: string;
}

/** One `parameters.env_vars` entry of a promotion. */
export interface PromotionParameter {
  readonly name: string;
  readonly options?: readonly string[];
  readonly required: boolean;
  readonly default_value?: string;
}

/** `global_job_config`. */
export interface GlobalJobConfig {
  readonly prologue: readonly string[];
  readonly epilogue: EpilogueDef;
  readonly env_vars: readonly EnvVarDef[];
  readonly secrets: readonly string[];
}

/** A whole pipeline file. */
export interface PipelineDef {
  readonly name: string;
  readonly agent: AgentDef;
  readonly blocks: readonly BlockDef[];
  readonly global: GlobalJobConfig;
  /** Minutes, 60 by default. */
  readonly timeLimit: number;
  readonly timeLimitSet: boolean;
  readonly fail_fast?: FailFastDef;
  readonly after_pipeline?: TaskDef;
  readonly promotions: readonly PromotionDef[];
  /** Conditions of fields ignored locally (`auto_cancel`, `queue`, `priority`): checked only. */
  readonly ignoredConditions: readonly ConditionDef[];
}

/** Where the pipeline file is, for `task_file` and `commands_file`. */
export interface SchemaContext {
  /** Absolute directory of the pipeline file. */
  readonly pipelineDir: string;
  /** Absolute repository root (`/x` paths start there). */
  readonly repoRoot: string;
  /** Coerce scalars to their source text (`--lenient`). @default false */
  readonly lenient?: boolean;
}

/** What {@linkcode readPipeline} gives back: the definition and one line per notice. */
export interface ReadPipeline {
  readonly pipeline: PipelineDef;
  readonly notices: readonly string[];
  readonly warnings: readonly string[];
}

/** Parses YAML text: one document, duplicate keys rejected; YAML 1.1 scalars as Go reads them. */
export function parseYaml(text: string, where = ""): unknown {
  const doc = parseDocument(text, { version: "1.1", prettyErrors: true, uniqueKeys: true });
  const error = doc.errors[0];
  if (error) {
    const prefix = where ? `${where}: ` : "";
    const at = error.linePos?.[0];
    const position = at ? ` (line ${at.line}, column ${at.col})` : "";
    const message = error.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
    throw new PipelineError(`${prefix}invalid YAML${position}: ${message}`);
  }
  return doc.toJS({ maxAliasCount: 1000 });
}

type Obj = Record<string, unknown>;

/** Resolves `path` of a `task_file`/`commands_file`: `/x` from the repo root, else relative. */
export function resolveRepoPath(path: string, ctx: SchemaContext): string {
  return path.startsWith("/") ? joinPath(ctx.repoRoot, path) : joinPath(ctx.pipelineDir, path);
}

function joinPath(base: string, rel: string): string {
  const parts = `${base}/${rel}`.split("/");
  const out: string[] = [];
  for (const part of parts) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return `/${out.join("/")}`;
}

/** The typed reader: every method checks one value at one YAML path. */
class Reader {
  readonly notices: string[] = [];
  readonly warnings: string[] = [];
  readonly ignoredConditions: ConditionDef[] = [];
  readonly ctx: SchemaContext;

  constructor(ctx: SchemaContext) {
    this.ctx = ctx;
  }

  fail(path: string, message: string): never {
    throw new PipelineError(path ? `${path}: ${message}` : message);
  }

  notice(field: string, why: string): void {
    this.notices.push(`notice: ${field} is ignored locally (${why})`);
  }

  /** A mapping with only `allowed` keys, among them every `required` one (checked in order). */
  map(
    value: unknown,
    path: string,
    allowed: readonly string[],
    required: readonly string[] = [],
  ): Obj {
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      this.fail(path, "expected a mapping");
    }
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) {
        this.fail(join(path, key), `unknown key (allowed here: ${allowed.join(", ")})`);
      }
    }
    for (const key of required) {
      if (!(key in value)) this.fail(path, `missing key '${key}'`);
    }
    return value as Obj;
  }

  list(value: unknown, path: string): unknown[] {
    if (!Array.isArray(value)) this.fail(path, "expected a list");
    return value;
  }

  str(value: unknown, path: string): string {
    if (typeof value === "string") return value;
    if (
      this.ctx.lenient && (typeof value === "number" || typeof value === "boolean" ||
        typeof value === "bigint")
    ) {
      this.warnings.push(`warning: ${path}: ${String(value)} read as the string '${value}'`);
      return String(value);
    }
    const hint = typeof value === "boolean" || typeof value === "number" ? " (quote it)" : "";
    this.fail(path, `expected a string, found ${describe(value)}${hint}`);
  }

  strList(value: unknown, path: string): string[] {
    return this.list(value, path).map((v, i) => this.str(v, `${path}[${i}]`));
  }

  int(value: unknown, path: string, min: number): number {
    if (typeof value !== "number" || !Number.isInteger(value)) {
      this.fail(path, `expected an integer, found ${describe(value)}`);
    }
    if (value < min) this.fail(path, `must be at least ${min}`);
    return value;
  }

  condition(value: unknown, path: string): ConditionDef {
    const obj = this.map(value, path, ["when"], ["when"]);
    const when = obj.when;
    if (typeof when !== "string" && typeof when !== "boolean") {
      this.fail(join(path, "when"), `expected a string or a boolean, found ${describe(when)}`);
    }
    if (when === "") this.fail(join(path, "when"), "expected a non-empty condition");
    return { when, path: join(path, "when") };
  }

  /** `priority`: a list of `{value: 0–100, when}` (checked, then ignored with a notice). */
  priority(value: unknown, path: string): void {
    this.list(value, path).forEach((item, i) => {
      const p = `${path}[${i}]`;
      const obj = this.map(item, p, ["value", "when"], ["value"]);
      const v = this.int(obj.value, `${p}.value`, 0);
      if (v > 100) this.fail(`${p}.value`, "must be at most 100");
      this.ignoredConditions.push(this.condition({ when: obj.when }, p));
    });
    this.notice(path, "jobs are not queued");
  }

  /** `filters` (checked, then ignored with a notice). */
  filters(value: unknown, path: string): void {
    this.list(value, path).forEach((item, i) => {
      const p = `${path}[${i}]`;
      const obj = this.map(item, p, ["label", "label_pattern", "action"]);
      if (("label" in obj ? 1 : 0) + ("label_pattern" in obj ? 1 : 0) !== 1) {
        this.fail(p, "needs exactly one of 'label', 'label_pattern'");
      }
      if ("action" in obj) {
        const action = this.str(obj.action, `${p}.action`);
        if (action !== "skip" && action !== "execute") {
          this.fail(`${p}.action`, `must be 'skip' or 'execute', found '${action}'`);
        }
      }
    });
    this.notice(path, "no labels locally");
  }

  envVars(value: unknown, path: string): EnvVarDef[] {
    return this.list(value, path).map((item, i) => {
      const p = `${path}[${i}]`;
      const obj = this.map(item, p, ["name", "value"], ["name"]);
      const name = this.str(obj.name, `${p}.name`);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        this.fail(`${p}.name`, `invalid environment variable name '${name}'`);
      }
      if (!("value" in obj)) this.fail(p, "missing key 'value'");
      return { name, value: this.str(obj.value, `${p}.value`) };
    });
  }

  timeLimit(value: unknown, path: string): number {
    const obj = this.map(value, path, ["hours", "minutes"]);
    const keys = Object.keys(obj);
    if (keys.length !== 1) this.fail(path, "needs exactly one of 'hours', 'minutes'");
    if ("hours" in obj) return this.int(obj.hours, `${path}.hours`, 1) * 60;
    return this.int(obj.minutes, `${path}.minutes`, 1);
  }

  failFast(value: unknown, path: string): FailFastDef {
    const obj = this.map(value, path, ["stop", "cancel"]);
    if (Object.keys(obj).length === 0) this.fail(path, "needs 'stop' or 'cancel'");
    return {
      stop: "stop" in obj ? this.condition(obj.stop, `${path}.stop`) : undefined,
      cancel: "cancel" in obj ? this.condition(obj.cancel, `${path}.cancel`) : undefined,
    };
  }

  readFileAt(file: string, path: string, what: string): string {
    const resolved = resolveRepoPath(file, this.ctx);
    try {
      return Deno.readTextFileSync(resolved);
    } catch (error) {
      const reason = error instanceof Deno.errors.NotFound
        ? "no such file"
        : error instanceof Error
        ? error.message
        : String(error);
      this.fail(path, `cannot read ${what} '${file}' (${resolved}): ${reason}`);
    }
  }

  /** `{commands}` or `{commands_file}`, exactly one. */
  cmds(value: unknown, path: string, extra: readonly string[] = []): string[] {
    const obj = this.map(value, path, ["commands", "commands_file", ...extra]);
    return this.commandsOf(obj, path);
  }

  commandsOf(obj: Obj, path: string): string[] {
    const has = ("commands" in obj ? 1 : 0) + ("commands_file" in obj ? 1 : 0);
    if (has !== 1) this.fail(path, "needs exactly one of 'commands', 'commands_file'");
    if ("commands" in obj) return this.strList(obj.commands, join(path, "commands"));
    const p = join(path, "commands_file");
    const file = this.str(obj.commands_file, p);
    const text = this.readFileAt(file, p, "commands file");
    if (text === "") this.fail(p, `commands file '${file}' is empty`);
    const lines = text.split("\n");
    if (lines.at(-1) === "") lines.pop();
    return lines;
  }

  epilogue(value: unknown, path: string): EpilogueDef {
    const obj = this.map(value, path, [
      "always",
      "on_pass",
      "on_fail",
      "commands",
      "commands_file",
    ]);
    if ("commands" in obj || "commands_file" in obj) {
      if ("always" in obj || "on_pass" in obj || "on_fail" in obj) {
        this.fail(path, "either 'commands' or 'always'/'on_pass'/'on_fail', not both");
      }
      return { always: this.commandsOf(obj, path), on_pass: [], on_fail: [] };
    }
    if (Object.keys(obj).length === 0) {
      this.fail(path, "needs at least one of 'always', 'on_pass', 'on_fail'");
    }
    const part = (key: string) => key in obj ? this.cmds(obj[key], `${path}.${key}`) : [];
    return { always: part("always"), on_pass: part("on_pass"), on_fail: part("on_fail") };
  }

  secrets(value: unknown, path: string): string[] {
    return this.list(value, path).map((item, i) => {
      const p = `${path}[${i}]`;
      const obj = this.map(item, p, ["name", "env_var_names", "config_file_paths"], ["name"]);
      if ("env_var_names" in obj) {
        this.strList(obj.env_var_names, `${p}.env_var_names`);
        this.notice(`${p}.env_var_names`, "the whole secret is imported");
      }
      if ("config_file_paths" in obj) {
        this.strList(obj.config_file_paths, `${p}.config_file_paths`);
        this.notice(`${p}.config_file_paths`, "the whole secret is imported");
      }
      return this.str(obj.name, `${p}.name`);
    });
  }

  agent(value: unknown, path: string): AgentDef {
    const obj = this.map(value, path, ["machine", "containers", "image_pull_secrets"], ["machine"]);
    const machine = this.map(obj.machine, `${path}.machine`, ["type", "os_image"], ["type"]);
    const machineType = this.str(machine.type, `${path}.machine.type`);
    if (/^(a1|s1)-/.test(machineType)) {
      this.notice(
        `${path}.machine.type ${machineType}`,
        machineType.startsWith("a1-")
          ? "macOS jobs run in this machine's shell"
          : "self-hosted jobs run in this machine's shell",
      );
    }
    const osImage = "os_image" in machine && machine.os_image !== null
      ? this.str(machine.os_image, `${path}.machine.os_image`)
      : "";
    const containers = "containers" in obj
      ? this.list(obj.containers, `${path}.containers`).map((c, i) =>
        this.container(c, `${path}.containers[${i}]`)
      )
      : [];
    if ("containers" in obj && containers.length === 0) {
      this.fail(`${path}.containers`, "expected at least one container");
    }
    const imagePullSecrets = "image_pull_secrets" in obj
      ? this.list(obj.image_pull_secrets, `${path}.image_pull_secrets`).map((s, i) => {
        const p = `${path}.image_pull_secrets[${i}]`;
        const o = this.map(s, p, ["name"], ["name"]);
        return this.str(o.name, `${p}.name`);
      })
      : [];
    return { machineType, osImage, containers, imagePullSecrets };
  }

  container(value: unknown, path: string): ContainerDef {
    const obj = this.map(value, path, [
      "name",
      "image",
      "command",
      "entrypoint",
      "user",
      "env_vars",
      "secrets",
    ], ["name", "image"]);
    const opt = (key: string) => key in obj ? this.str(obj[key], `${path}.${key}`) : "";
    return {
      name: this.str(obj.name, `${path}.name`),
      image: this.str(obj.image, `${path}.image`),
      command: opt("command"),
      entrypoint: opt("entrypoint"),
      user: opt("user"),
      env_vars: "env_vars" in obj ? this.envVars(obj.env_vars, `${path}.env_vars`) : [],
      secrets: "secrets" in obj ? this.secrets(obj.secrets, `${path}.secrets`) : [],
    };
  }

  job(value: unknown, path: string): JobDef {
    const obj = this.map(value, path, [
      "name",
      "commands",
      "commands_file",
      "env_vars",
      "matrix",
      "parallelism",
      "execution_time_limit",
      "priority",
      "oidc_tokens",
    ]);
    const name = "name" in obj && obj.name !== null
      ? this.str(obj.name, `${path}.name`)
      : undefined;
    const commands = this.commandsOf(obj, path);
    const env_vars = "env_vars" in obj ? this.envVars(obj.env_vars, `${path}.env_vars`) : [];
    let matrix: JobDef["matrix"];
    if ("matrix" in obj) {
      if ("parallelism" in obj) this.fail(path, "'matrix' and 'parallelism' cannot both be set");
      const axes = this.list(obj.matrix, `${path}.matrix`);
      if (axes.length === 0) this.fail(`${path}.matrix`, "expected at least one entry");
      const seen = new Set<string>();
      matrix = axes.map((axis, i) => {
        const p = `${path}.matrix[${i}]`;
        const o = this.map(axis, p, ["env_var", "values"], ["env_var", "values"]);
        const envVar = this.str(o.env_var, `${p}.env_var`);
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(envVar)) {
          this.fail(`${p}.env_var`, `invalid environment variable name '${envVar}'`);
        }
        if (seen.has(envVar)) this.fail(`${p}.env_var`, `'${envVar}' is repeated`);
        seen.add(envVar);
        const values = this.strList(o.values, `${p}.values`);
        if (values.length === 0) this.fail(`${p}.values`, "expected at least one value");
        return { env_var: envVar, values };
      });
    }
    const parallelism = "parallelism" in obj
      ? this.int(obj.parallelism, `${path}.parallelism`, 1)
      : undefined;
    const timeLimit = "execution_time_limit" in obj
      ? this.timeLimit(obj.execution_time_limit, `${path}.execution_time_limit`)
      : undefined;
    if ("priority" in obj) this.priority(obj.priority, `${path}.priority`);
    if ("oidc_tokens" in obj) this.notice(`${path}.oidc_tokens`, "no OIDC provider");
    return { name, commands, env_vars, matrix, parallelism, timeLimit, path };
  }

  task(value: unknown, path: string): TaskDef {
    const obj = this.map(value, path, [
      "jobs",
      "agent",
      "prologue",
      "epilogue",
      "env_vars",
      "secrets",
      "fail_fast",
      "boosters",
    ]);
    if ("boosters" in obj) {
      this.fail(`${path}.boosters`, "boosters are not supported locally; use parallelism");
    }
    if (!("jobs" in obj)) this.fail(path, "missing key 'jobs'");
    const rawJobs = this.list(obj.jobs, `${path}.jobs`);
    if (rawJobs.length === 0) this.fail(`${path}.jobs`, "expected at least one job");
    if (rawJobs.length > 50) this.fail(`${path}.jobs`, "at most 50 jobs");
    return {
      jobs: rawJobs.map((j, i) => this.job(j, `${path}.jobs[${i}]`)),
      agent: "agent" in obj ? this.agent(obj.agent, `${path}.agent`) : undefined,
      prologue: "prologue" in obj ? this.cmds(obj.prologue, `${path}.prologue`) : [],
      epilogue: "epilogue" in obj
        ? this.epilogue(obj.epilogue, `${path}.epilogue`)
        : { always: [], on_pass: [], on_fail: [] },
      env_vars: "env_vars" in obj ? this.envVars(obj.env_vars, `${path}.env_vars`) : [],
      secrets: "secrets" in obj ? this.secrets(obj.secrets, `${path}.secrets`) : [],
      fail_fast: "fail_fast" in obj ? this.failFast(obj.fail_fast, `${path}.fail_fast`) : undefined,
      path,
    };
  }

  block(value: unknown, path: string): BlockDef {
    const obj = this.map(value, path, [
      "name",
      "dependencies",
      "task",
      "task_file",
      "skip",
      "run",
      "execution_time_limit",
      "filters",
    ]);
    const name = "name" in obj && obj.name !== null
      ? this.str(obj.name, `${path}.name`)
      : undefined;
    const conditions = ["skip", "run", "filters"].filter((k) => k in obj);
    if (conditions.length > 1) {
      this.fail(path, `at most one of 'skip', 'run', 'filters' (found ${conditions.join(", ")})`);
    }
    const has = ("task" in obj ? 1 : 0) + ("task_file" in obj ? 1 : 0);
    if (has !== 1) this.fail(path, "needs exactly one of 'task', 'task_file'");
    let task: TaskDef;
    if ("task" in obj) {
      task = this.task(obj.task, `${path}.task`);
    } else {
      const p = `${path}.task_file`;
      const file = this.str(obj.task_file, p);
      const text = this.readFileAt(file, p, "task file");
      task = this.task(parseYaml(text, p), `${p}(${file})`);
    }
    if ("filters" in obj) this.filters(obj.filters, `${path}.filters`);
    return {
      name,
      dependencies: "dependencies" in obj
        ? this.strList(obj.dependencies ?? [], `${path}.dependencies`)
        : undefined,
      task,
      skip: "skip" in obj ? this.condition(obj.skip, `${path}.skip`) : undefined,
      run: "run" in obj ? this.condition(obj.run, `${path}.run`) : undefined,
      timeLimit: "execution_time_limit" in obj
        ? this.timeLimit(obj.execution_time_limit, `${path}.execution_time_limit`)
        : undefined,
      path,
    };
  }

  global(value: unknown, path: string): GlobalJobConfig {
    const obj = this.map(value, path, ["prologue", "epilogue", "env_vars", "secrets", "priority"]);
    if (Object.keys(obj).length === 0) {
      this.fail(path, "needs at least one of 'prologue', 'epilogue', 'env_vars', 'secrets'");
    }
    if ("priority" in obj) this.priority(obj.priority, `${path}.priority`);
    return {
      prologue: "prologue" in obj ? this.cmds(obj.prologue, `${path}.prologue`) : [],
      epilogue: "epilogue" in obj
        ? this.epilogue(obj.epilogue, `${path}.epilogue`)
        : { always: [], on_pass: [], on_fail: [] },
      env_vars: "env_vars" in obj ? this.envVars(obj.env_vars, `${path}.env_vars`) : [],
      secrets: "secrets" in obj ? this.secrets(obj.secrets, `${path}.secrets`) : [],
    };
  }

  promotion(value: unknown, path: string): PromotionDef {
    const obj = this.map(value, path, [
      "name",
      "pipeline_file",
      "auto_promote",
      "auto_promote_on",
      "parameters",
      "deployment_target",
    ], ["name", "pipeline_file"]);
    const autoPromoteOn = "auto_promote_on" in obj
      ? this.list(obj.auto_promote_on, `${path}.auto_promote_on`).map((item, i) => {
        const p = `${path}.auto_promote_on[${i}]`;
        const o = this.map(item, p, [
          "result",
          "result_reason",
          "branch",
          "labels",
          "label_patterns",
        ], ["result"]);
        return {
          result: this.str(o.result, `${p}.result`),
          result_reason: "result_reason" in o
            ? this.str(o.result_reason, `${p}.result_reason`)
            : undefined,
          branch: "branch" in o ? this.strList(o.branch, `${p}.branch`) : undefined,
        };
      })
      : [];
    const parameters: PromotionParameter[] = [];
    if ("parameters" in obj) {
      const params = this.map(obj.parameters, `${path}.parameters`, ["env_vars"], ["env_vars"]);
      this.list(params.env_vars, `${path}.parameters.env_vars`).forEach((e, i) => {
        const p = `${path}.parameters.env_vars[${i}]`;
        const o = this.map(e, p, ["name", "options", "required", "default_value", "description"], [
          "name",
        ]);
        if ("required" in o && typeof o.required !== "boolean") {
          this.fail(`${p}.required`, "expected a boolean");
        }
        if ("description" in o) this.str(o.description, `${p}.description`);
        parameters.push({
          name: this.str(o.name, `${p}.name`),
          options: "options" in o ? this.strList(o.options, `${p}.options`) : undefined,
          required: o.required === true,
          default_value: "default_value" in o
            ? this.str(o.default_value, `${p}.default_value`)
            : undefined,
        });
      });
    }
    if ("name" in obj && obj.name === "") this.fail(`${path}.name`, "expected a non-empty name");
    if ("deployment_target" in obj) this.str(obj.deployment_target, `${path}.deployment_target`);
    return {
      name: this.str(obj.name, `${path}.name`),
      pipeline_file: this.str(obj.pipeline_file, `${path}.pipeline_file`),
      auto_promote: "auto_promote" in obj
        ? this.condition(obj.auto_promote, `${path}.auto_promote`)
        : undefined,
      auto_promote_on: autoPromoteOn,
      parameters,
      path,
    };
  }

  pipeline(value: unknown): PipelineDef {
    const obj = this.map(value, "", [
      "version",
      "name",
      "agent",
      "blocks",
      "global_job_config",
      "execution_time_limit",
      "fail_fast",
      "auto_cancel",
      "queue",
      "promotions",
      "after_pipeline",
    ], ["version", "agent", "blocks"]);
    const version = this.str(obj.version, "version");
    if (version !== "v1.0") this.fail("version", `must be 'v1.0', found '${version}'`);
    const rawBlocks = this.list(obj.blocks, "blocks");
    if (rawBlocks.length === 0) this.fail("blocks", "expected at least one block");
    if (rawBlocks.length > 100) this.fail("blocks", "at most 100 blocks");
    if ("auto_cancel" in obj) {
      const ac = this.map(obj.auto_cancel, "auto_cancel", ["running", "queued"]);
      if (Object.keys(ac).length === 0) this.fail("auto_cancel", "needs 'running' or 'queued'");
      for (const k of Object.keys(ac)) {
        this.ignoredConditions.push(this.condition(ac[k], `auto_cancel.${k}`));
      }
      this.notice("auto_cancel", "one pipeline runs at a time");
    }
    if ("queue" in obj) {
      const q = obj.queue;
      if (Array.isArray(q)) q.forEach((item, i) => this.queueItem(item, `queue[${i}]`));
      else this.queueItem(q, "queue");
      this.notice("queue", "no queues locally");
    }
    let afterPipeline: TaskDef | undefined;
    if ("after_pipeline" in obj) {
      const ap = this.map(obj.after_pipeline, "after_pipeline", ["task"], ["task"]);
      afterPipeline = this.task(ap.task, "after_pipeline.task");
    }
    const timeLimitSet = "execution_time_limit" in obj;
    return {
      name: "name" in obj && obj.name !== null ? this.str(obj.name, "name") : "",
      agent: this.agent(obj.agent, "agent"),
      blocks: rawBlocks.map((b, i) => this.block(b, `blocks[${i}]`)),
      global: "global_job_config" in obj
        ? this.global(obj.global_job_config, "global_job_config")
        : {
          prologue: [],
          epilogue: { always: [], on_pass: [], on_fail: [] },
          env_vars: [],
          secrets: [],
        },
      timeLimit: timeLimitSet
        ? this.timeLimit(obj.execution_time_limit, "execution_time_limit")
        : 60,
      timeLimitSet,
      fail_fast: "fail_fast" in obj ? this.failFast(obj.fail_fast, "fail_fast") : undefined,
      after_pipeline: afterPipeline,
      promotions: "promotions" in obj
        ? this.list(obj.promotions, "promotions").map((p, i) =>
          this.promotion(p, `promotions[${i}]`)
        )
        : [],
      ignoredConditions: this.ignoredConditions,
    };
  }

  queueItem(value: unknown, path: string): void {
    const obj = this.map(value, path, ["name", "scope", "processing", "when"]);
    if (!("name" in obj) && !("processing" in obj)) {
      this.fail(path, "needs 'name' or 'processing'");
    }
    if ("name" in obj && this.str(obj.name, `${path}.name`) === "") {
      this.fail(`${path}.name`, "expected a non-empty name");
    }
    if ("when" in obj) this.ignoredConditions.push(this.condition({ when: obj.when }, path));
    if ("scope" in obj) {
      const scope = this.str(obj.scope, `${path}.scope`);
      if (scope !== "project" && scope !== "organization") {
        this.fail(`${path}.scope`, `must be 'project' or 'organization', found '${scope}'`);
      }
    }
    if ("processing" in obj) {
      const p = this.str(obj.processing, `${path}.processing`);
      if (p !== "serialized" && p !== "parallel") {
        this.fail(`${path}.processing`, `must be 'serialized' or 'parallel', found '${p}'`);
      }
    }
  }
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return `the string '${value}'`;
  return `${typeof value} ${String(value)}`;
}

/**
 * Reads a parsed pipeline document.
 *
 * @throws {PipelineError} the first schema violation, its YAML path first.
 */
export function readPipeline(document: unknown, ctx: SchemaContext): ReadPipeline {
  const reader = new Reader(ctx);
  const pipeline = reader.pipeline(document);
  return { pipeline, notices: reader.notices, warnings: reader.warnings };
}
