/**
 * The plan of a local pipeline run: blocks in stage order with their expanded jobs, every
 * condition evaluated on the git facts (PIPELINES.md §5.4), and the selection flags applied
 * (`-b`, `-j`, `--matrix`, `--no-deps`, `--skip`, `--force-run`; §6.2, §8.6). Also the text
 * of `-l` and `-n`.
 *
 * @module
 */

import { ConditionError, evaluateCondition, parseCondition, type WhenValue } from "./conditions.ts";
import { evaluateChangeIn } from "./change_in.ts";
import { type GitFacts, keywordValues } from "./git_facts.ts";
import { PipelineError } from "./schema.ts";
import { type Block, type Condition, type Pipeline, stagesOf } from "./validate.ts";
import { expandAfterPipeline, expandBlock, type ExpandOptions, type PlannedJob } from "./expand.ts";

/** One block of the plan. */
export interface PlannedBlock {
  readonly block: Block;
  /** 1-based stage. */
  readonly stage: number;
  readonly jobs: readonly PlannedJob[];
  /** `skip: … → true` / `run: … → false` text, when the block has a condition. */
  readonly conditionText?: string;
  /** Skipped by its condition or `--skip`. */
  readonly skipped: boolean;
  /** Runs (selected or a dependency of a selected block). */
  readonly selected: boolean;
  /** Task-level fail_fast. */
  readonly failFast: { readonly stop: boolean; readonly cancel: boolean };
}

/** The whole plan. */
export interface Plan {
  readonly pipeline: Pipeline;
  readonly blocks: readonly PlannedBlock[];
  readonly afterPipeline: readonly PlannedJob[];
  readonly failFast: { readonly stop: boolean; readonly cancel: boolean };
  /** Lines describing pipeline-level conditions (fail_fast). */
  readonly conditionLines: readonly string[];
}

/** Selection flags. */
export interface Selection {
  readonly blocks?: readonly string[];
  readonly jobs?: readonly string[];
  readonly matrix?: readonly string[];
  readonly noDeps?: boolean;
  readonly skip?: readonly string[];
  readonly forceRun?: readonly string[];
  readonly forceFailFast?: boolean;
}

/** Options of {@linkcode buildPlan}. */
export interface PlanOptions extends ExpandOptions {
  /** Pipeline file relative to the repo root, `/`-prefixed. */
  readonly pipelineFile: string;
  readonly selection?: Selection;
}

/** A `*`/`?` glob as an anchored regex. */
export function globToRegex(glob: string): RegExp {
  const re = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*").replaceAll("?", ".");
  return new RegExp(`^${re}$`);
}

const matchesAny = (name: string, globs: readonly string[]) =>
  globs.some((g) => globToRegex(g).test(name));

function formatWhen(source: string | boolean): string {
  return typeof source === "boolean" ? String(source) : source;
}

/** Evaluates conditions, remembering `change_in` details for `-l`. */
export class ConditionEvaluator {
  readonly #facts: GitFacts;
  readonly #pipelineFile: string;
  readonly #cache = new Map<string, string[]>();
  readonly #result?: { readonly result: string; readonly result_reason: string };
  /** `result`: the keywords of auto-promotion (and `change_in` ignores the pipeline file). */
  constructor(
    facts: GitFacts,
    pipelineFile: string,
    result?: { readonly result: string; readonly result_reason: string },
  ) {
    this.#facts = facts;
    this.#pipelineFile = pipelineFile;
    this.#result = result;
  }

  evaluate(condition: Condition): { value: boolean; text: string } {
    const details: string[] = [];
    let value: boolean;
    try {
      value = evaluateCondition(condition.node, {
        keywords: { ...keywordValues(this.#facts), ...this.#result },
        changeIn: (args: readonly WhenValue[], _text: string) => {
          const result = evaluateChangeIn(args, {
            facts: this.#facts,
            pipelineFile: this.#pipelineFile,
            pipelineFileDefault: this.#result ? "ignore" : "track",
          }, this.#cache);
          details.push(result.detail);
          return result.value;
        },
      });
    } catch (error) {
      if (error instanceof ConditionError || error instanceof PipelineError) {
        throw new PipelineError(`${condition.path}: ${error.message}`);
      }
      throw error;
    }
    const suffix = details.length > 0 ? ` (${details.join("; ")})` : "";
    return { value, text: `${formatWhen(condition.source)} → ${value}${suffix}` };
  }
}

/** Keeps jobs matching `--matrix VAR=VALUE` (OR within a variable, AND across; §8.6). */
function matrixFilter(specs: readonly string[]): (job: PlannedJob) => boolean {
  const wanted = new Map<string, string[]>();
  for (const spec of specs) {
    const eq = spec.indexOf("=");
    if (eq <= 0) throw new PipelineError(`--matrix: expected VAR=VALUE, found '${spec}'`);
    const name = spec.slice(0, eq);
    wanted.set(name, [...(wanted.get(name) ?? []), spec.slice(eq + 1)]);
  }
  return (job) =>
    [...wanted].every(([name, values]) =>
      job.matrix[name] === undefined || values.includes(job.matrix[name])
    );
}

/**
 * Builds the plan.
 *
 * @throws {PipelineError} a condition that cannot be evaluated, a selection that matches nothing.
 */
export function buildPlan(pipeline: Pipeline, options: PlanOptions): Plan {
  const selection = options.selection ?? {};
  const evaluator = new ConditionEvaluator(options.facts, options.pipelineFile);
  const stages = stagesOf(pipeline.blocks);
  const order = pipeline.blocks.map((b) => b.index).sort((a, b) => stages[a] - stages[b] || a - b);
  let counter = options.firstNumber ?? 0;
  const next = () => ++counter;

  // Which blocks run: -b and -j pick blocks, plus their transitive dependencies.
  const byName = (globs: readonly string[], flag: string) => {
    const found = pipeline.blocks.filter((b) => matchesAny(b.name, globs)).map((b) => b.index);
    if (found.length === 0) {
      throw new PipelineError(`${flag}: no block matches ${globs.map((g) => `'${g}'`).join(", ")}`);
    }
    return found;
  };
  const expanded = new Map<number, PlannedJob[]>();
  for (const i of order) expanded.set(i, expandBlock(pipeline, pipeline.blocks[i], options, next));
  const jobGlobs = selection.jobs ?? [];
  let roots: number[] | undefined;
  if (selection.blocks?.length) roots = byName(selection.blocks, "--block");
  if (jobGlobs.length > 0) {
    const withJobs = order.filter((i) =>
      expanded.get(i)!.some((j) => matchesAny(j.name, jobGlobs))
    );
    if (withJobs.length === 0) {
      throw new PipelineError(`--job: no job matches ${jobGlobs.map((g) => `'${g}'`).join(", ")}`);
    }
    roots = roots ? roots.filter((i) => withJobs.includes(i)) : withJobs;
  }
  const selected = new Set<number>();
  if (roots === undefined) {
    pipeline.blocks.forEach((b) => selected.add(b.index));
  } else {
    const add = (i: number, root: boolean) => {
      if (selected.has(i)) return;
      if (!root && selection.noDeps) return;
      selected.add(i);
      for (const d of pipeline.blocks[i].dependencies) add(d, false);
    };
    for (const r of roots) add(r, true);
  }
  const jobRoots = new Set(jobGlobs.length > 0 ? roots : []);
  const keepMatrix = matrixFilter(selection.matrix ?? []);

  const blocks: PlannedBlock[] = order.map((i) => {
    const block = pipeline.blocks[i];
    let skipped = false;
    let conditionText: string | undefined;
    if (block.skip) {
      const r = evaluator.evaluate(block.skip);
      skipped = r.value;
      conditionText = `skip: ${r.text}`;
    } else if (block.run) {
      const r = evaluator.evaluate(block.run);
      skipped = !r.value;
      conditionText = `run: ${r.text}`;
    }
    if (selection.skip && matchesAny(block.name, selection.skip)) {
      skipped = true;
      conditionText = `${conditionText ? `${conditionText}; ` : ""}--skip`;
    }
    if (selection.forceRun && matchesAny(block.name, selection.forceRun)) {
      skipped = false;
      conditionText = `${conditionText ? `${conditionText}; ` : ""}--force-run`;
    }
    let jobs = expanded.get(i)!.filter(keepMatrix);
    if (jobRoots.has(i)) jobs = jobs.filter((j) => matchesAny(j.name, jobGlobs));
    const ff = block.task.failFast;
    return {
      block,
      stage: stages[i] + 1,
      jobs,
      conditionText,
      skipped,
      selected: selected.has(i),
      failFast: {
        stop: ff?.stop ? evaluator.evaluate(ff.stop).value : false,
        cancel: ff?.cancel ? evaluator.evaluate(ff.cancel).value : false,
      },
    };
  });
  const conditionLines: string[] = [];
  const failFast = { stop: false, cancel: false };
  for (const kind of ["stop", "cancel"] as const) {
    const condition = pipeline.failFast?.[kind];
    if (condition) {
      const r = evaluator.evaluate(condition);
      failFast[kind] = r.value;
      conditionLines.push(`fail_fast.${kind}: ${r.text}`);
    }
  }
  if (selection.forceFailFast) failFast.stop = true;
  const afterPipeline = expandAfterPipeline(pipeline, options, next).filter(keepMatrix);
  return { pipeline, blocks, afterPipeline, failFast, conditionLines };
}

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) =>
    r.map((cell, c) => c === r.length - 1 ? cell : cell.padEnd(widths[c])).join("  ").trimEnd()
  ).join("\n") + "\n";
}

/** The `-l` text: Stage, Block, Job, Depends on, Condition → value. */
export function formatPlan(plan: Plan): string {
  const rows: string[][] = [["Stage", "Block", "Job", "Depends on", "Condition"]];
  const names = plan.pipeline.blocks.map((b) => b.name);
  let lastStage = 0;
  for (const pb of plan.blocks) {
    if (!pb.selected) continue;
    lastStage = Math.max(lastStage, pb.stage);
    const deps = pb.block.dependencies.map((d) => names[d]).join(", ") || "-";
    const condition = pb.conditionText ?? "";
    pb.jobs.forEach((job, k) => {
      rows.push([
        String(pb.stage),
        pb.block.name,
        job.name,
        k === 0 ? deps : "",
        k === 0 ? condition : "",
      ]);
    });
  }
  for (const job of plan.afterPipeline) {
    rows.push([String(lastStage + 1), job.blockName, job.name, "all blocks", ""]);
  }
  let text = table(rows);
  for (const line of plan.conditionLines) text += `${line}\n`;
  for (const promotion of plan.pipeline.def.promotions) {
    const auto = promotion.auto_promote
      ? `, auto_promote: ${formatWhen(promotion.auto_promote.when)}`
      : "";
    text += `promotion: ${promotion.name} → ${promotion.pipeline_file}${auto}\n`;
  }
  return text;
}

/** The `-n` text: per job, its commands, epilogues, env var names and secrets (`known`: found). */
export function formatDryRun(plan: Plan, known?: ReadonlySet<string>): string {
  let text = "";
  const jobs = [
    ...plan.blocks.filter((b) => b.selected).flatMap((b) =>
      b.jobs.map((j) => ({ job: j, skipped: b.skipped, note: b.conditionText }))
    ),
    ...plan.afterPipeline.map((j) => ({ job: j, skipped: false, note: undefined })),
  ];
  for (const { job, skipped, note } of jobs) {
    text += `[${job.blockName} / ${job.name}]${skipped ? ` skipped (${note})` : ""}\n`;
    text += `  executor: ${job.request.executor}\n`;
    const list = (label: string, commands: readonly { directive: string }[]) => {
      if (commands.length === 0) return;
      text += `  ${label}:\n`;
      for (const c of commands) text += `    ${c.directive.replaceAll("\n", "\n    ")}\n`;
    };
    list("commands", job.request.commands);
    list("epilogue always", job.request.epilogue_always_commands);
    list("epilogue on pass", job.request.epilogue_on_pass_commands);
    list("epilogue on fail", job.request.epilogue_on_fail_commands);
    text += `  env: ${job.env.map(([n]) => n).join(" ")}\n`;
    if (job.secretNames.length > 0) {
      const names = job.secretNames.map((n) => known && !known.has(n) ? `${n} (not found)` : n);
      text += `  secrets: ${names.join(", ")}\n`;
    }
    text += `  time limit: ${job.timeLimit} min\n`;
  }
  for (const line of plan.conditionLines) text += `${line}\n`;
  return text;
}

/** `--condition EXPR`: the value of one condition on this run's facts, as `-l` shows it. */
export function evaluateConditionText(
  text: string,
  facts: GitFacts,
  pipelineFile: string,
): string {
  let node;
  try {
    node = parseCondition(text);
  } catch (error) {
    throw new PipelineError(
      `--condition: invalid condition '${text}': ${(error as Error).message}`,
    );
  }
  return new ConditionEvaluator(facts, pipelineFile).evaluate({
    source: text,
    node,
    path: "--condition",
  }).text;
}

/** `-g`: the block graph, as text (stage by stage) or Graphviz `dot`. */
export function formatGraph(plan: Plan, format: "text" | "dot"): string {
  const names = plan.pipeline.blocks.map((b) => b.name);
  const blocks = plan.blocks.filter((b) => b.selected);
  if (format === "dot") {
    const q = (s: string) => `"${s.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
    let text = "digraph pipeline {\n  rankdir=LR;\n";
    for (const b of blocks) {
      text += `  ${q(b.block.name)}${b.skipped ? " [style=dashed]" : ""};\n`;
      for (const d of b.block.dependencies) text += `  ${q(names[d])} -> ${q(b.block.name)};\n`;
    }
    if (plan.afterPipeline.length > 0) text += `  ${q("After pipeline")} [shape=box];\n`;
    return text + "}\n";
  }
  let text = "";
  const stages = [...new Set(blocks.map((b) => b.stage))].sort((a, b) => a - b);
  for (const stage of stages) {
    text += `Stage ${stage}\n`;
    for (const b of blocks.filter((x) => x.stage === stage)) {
      const deps = b.block.dependencies.map((d) => names[d]);
      const after = deps.length > 0 ? ` <- ${deps.join(", ")}` : "";
      const skipped = b.skipped ? " (skipped)" : "";
      text += `  [${b.block.name}] ${b.jobs.length} job${
        b.jobs.length === 1 ? "" : "s"
      }${after}${skipped}\n`;
    }
  }
  if (plan.afterPipeline.length > 0) {
    text += `After pipeline\n  [After pipeline] ${plan.afterPipeline.length} job${
      plan.afterPipeline.length === 1 ? "" : "s"
    } <- all blocks\n`;
  }
  return text;
}
