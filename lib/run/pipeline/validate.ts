/**
 * The cross-field rules of a pipeline (PIPELINES.md §1.9, §2 steps before scheduling): names
 * given to nameless blocks and jobs, duplicates, dependencies made explicit (unknown names,
 * cycles, a mix of implicit and explicit rejected), time limits, and every `when` parsed.
 *
 * @module
 */

import { ConditionError, parseCondition, type WhenNode } from "./conditions.ts";
import {
  type BlockDef,
  type ConditionDef,
  type FailFastDef,
  type JobDef,
  type PipelineDef,
  PipelineError,
  type TaskDef,
} from "./schema.ts";

/** A condition, parsed. */
export interface Condition {
  readonly source: string | boolean;
  readonly node: WhenNode;
  readonly path: string;
}

/** A job with its final name. */
export interface NamedJob extends JobDef {
  readonly jobName: string;
}

/** A task whose jobs are named. */
export interface NamedTask extends Omit<TaskDef, "jobs" | "fail_fast"> {
  readonly jobs: readonly NamedJob[];
  readonly failFast?: { readonly stop?: Condition; readonly cancel?: Condition };
}

/** A block after validation: named, explicit dependencies (indices), parsed conditions. */
export interface Block {
  readonly index: number;
  readonly name: string;
  readonly dependencies: readonly number[];
  readonly task: NamedTask;
  readonly skip?: Condition;
  readonly run?: Condition;
  /** Minutes. */
  readonly timeLimit: number;
  readonly path: string;
}

/** A validated pipeline. */
export interface Pipeline {
  readonly def: PipelineDef;
  readonly blocks: readonly Block[];
  readonly afterPipeline?: NamedTask;
  readonly failFast?: { readonly stop?: Condition; readonly cancel?: Condition };
}

const MAX_MINUTES = 24 * 60;

function condition(def: ConditionDef | undefined): Condition | undefined {
  if (def === undefined) return undefined;
  if (typeof def.when === "boolean") {
    return { source: def.when, node: { t: "value", value: def.when }, path: def.path };
  }
  try {
    return { source: def.when, node: parseCondition(def.when), path: def.path };
  } catch (error) {
    if (error instanceof ConditionError) {
      throw new PipelineError(`${def.path}: invalid condition '${def.when}': ${error.message}`);
    }
    throw error;
  }
}

function failFast(def: FailFastDef | undefined) {
  if (!def) return undefined;
  return { stop: condition(def.stop), cancel: condition(def.cancel) };
}

/** Gives nameless jobs `Nameless <i>`, skipping names already taken (§8.1). */
function nameJobs(task: TaskDef): NamedTask {
  const taken = new Set(task.jobs.map((j) => j.name).filter((n) => n !== undefined));
  let counter = 0;
  const seen = new Map<string, string>();
  const jobs = task.jobs.map((job) => {
    let jobName = job.name;
    if (jobName === undefined) {
      do counter++; while (taken.has(`Nameless ${counter}`));
      jobName = `Nameless ${counter}`;
    }
    const earlier = seen.get(jobName);
    if (earlier !== undefined) {
      throw new PipelineError(`${job.path}.name: duplicate job name '${jobName}' (as ${earlier})`);
    }
    seen.set(jobName, job.path);
    return { ...job, jobName };
  });
  const { fail_fast, ...rest } = task;
  return { ...rest, jobs, failFast: failFast(fail_fast) };
}

function checkJobLimits(task: NamedTask, limit: number): void {
  for (const job of task.jobs) {
    if (job.timeLimit !== undefined && job.timeLimit > limit) {
      throw new PipelineError(
        `${job.path}.execution_time_limit: ${job.timeLimit} minutes is more than the ` +
          `enclosing limit of ${limit} minutes`,
      );
    }
  }
}

/**
 * Validates a pipeline read by `readPipeline`.
 *
 * @throws {PipelineError} the first broken rule, its YAML path first.
 */
export function validatePipeline(def: PipelineDef): Pipeline {
  if (def.timeLimit > MAX_MINUTES) {
    throw new PipelineError("execution_time_limit: more than 24 hours");
  }
  // Block names: nameless blocks counted among themselves, skipping taken names.
  const taken = new Set(def.blocks.map((b) => b.name).filter((n) => n !== undefined));
  let counter = 0;
  const names: string[] = [];
  const byName = new Map<string, number>();
  def.blocks.forEach((block: BlockDef, i) => {
    let name = block.name;
    if (name === undefined) {
      do counter++; while (taken.has(`Nameless block ${counter}`));
      name = `Nameless block ${counter}`;
    }
    if (byName.has(name)) {
      throw new PipelineError(
        `${block.path}.name: duplicate block name '${name}' (as blocks[${byName.get(name)}])`,
      );
    }
    byName.set(name, i);
    names.push(name);
  });
  const explicit = def.blocks.filter((b) => b.dependencies !== undefined).length;
  if (explicit > 0 && explicit < def.blocks.length) {
    const first = def.blocks.find((b) => b.dependencies === undefined)!;
    throw new PipelineError(
      `${first.path}: 'dependencies' missing; when one block has 'dependencies', every block ` +
        "needs them (use [] for none)",
    );
  }
  const blocks: Block[] = def.blocks.map((block, i) => {
    const dependencies = block.dependencies === undefined
      ? (i === 0 ? [] : [i - 1])
      : block.dependencies.map((dep, j) => {
        const index = byName.get(dep);
        if (index === undefined) {
          throw new PipelineError(
            `${block.path}.dependencies[${j}]: unknown block '${dep}'`,
          );
        }
        if (index === i) {
          throw new PipelineError(`${block.path}.dependencies[${j}]: block depends on itself`);
        }
        return index;
      });
    const timeLimit = block.timeLimit ?? def.timeLimit;
    if (block.timeLimit !== undefined && block.timeLimit > MAX_MINUTES) {
      throw new PipelineError(`${block.path}.execution_time_limit: more than 24 hours`);
    }
    if (def.timeLimitSet && block.timeLimit !== undefined && block.timeLimit > def.timeLimit) {
      throw new PipelineError(
        `${block.path}.execution_time_limit: ${block.timeLimit} minutes is more than the ` +
          `pipeline's ${def.timeLimit} minutes`,
      );
    }
    const task = nameJobs(block.task);
    checkJobLimits(
      task,
      block.timeLimit !== undefined || def.timeLimitSet ? timeLimit : MAX_MINUTES,
    );
    return {
      index: i,
      name: names[i],
      dependencies: [...new Set(dependencies)],
      task,
      skip: condition(block.skip),
      run: condition(block.run),
      timeLimit,
      path: block.path,
    };
  });
  findCycle(blocks);
  let afterPipeline: NamedTask | undefined;
  if (def.after_pipeline) {
    afterPipeline = nameJobs(def.after_pipeline);
    checkJobLimits(afterPipeline, def.timeLimitSet ? def.timeLimit : MAX_MINUTES);
  }
  for (const promotion of def.promotions) condition(promotion.auto_promote);
  for (const ignored of def.ignoredConditions) condition(ignored);
  return { def, blocks, afterPipeline, failFast: failFast(def.fail_fast) };
}

function findCycle(blocks: readonly Block[]): void {
  const state = new Array<number>(blocks.length).fill(0); // 0 new, 1 on stack, 2 done
  const stack: number[] = [];
  const visit = (i: number): void => {
    state[i] = 1;
    stack.push(i);
    for (const dep of blocks[i].dependencies) {
      if (state[dep] === 1) {
        const cycle = [...stack.slice(stack.indexOf(dep)), dep].map((j) => blocks[j].name);
        throw new PipelineError(
          `${blocks[dep].path}.dependencies: dependency cycle: ${cycle.join(" -> ")}`,
        );
      }
      if (state[dep] === 0) visit(dep);
    }
    stack.pop();
    state[i] = 2;
  };
  for (let i = 0; i < blocks.length; i++) if (state[i] === 0) visit(i);
}

/** Blocks in stage order: stage = 1 + the deepest dependency's stage. */
export function stagesOf(blocks: readonly Block[]): number[] {
  const stage: number[] = new Array(blocks.length).fill(-1);
  const depth = (i: number): number => {
    if (stage[i] >= 0) return stage[i];
    stage[i] = blocks[i].dependencies.reduce((m, d) => Math.max(m, depth(d) + 1), 0);
    return stage[i];
  };
  blocks.forEach((_, i) => depth(i));
  return stage;
}
