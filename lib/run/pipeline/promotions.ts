/**
 * Promotions of a local pipeline run (PIPELINES.md §1.8, §6.2): which targets run after a
 * pipeline (`--promote NAME`, `--auto-promote` with `auto_promote` or legacy `auto_promote_on`),
 * their parameters (`--param N=V`, defaults, required, options), and the `${{parameters.X}}`
 * substitution in the promoted pipeline's text.
 *
 * @module
 */

import { parseCondition } from "./conditions.ts";
import type { GitFacts } from "./git_facts.ts";
import { ConditionEvaluator } from "./plan.ts";
import { PipelineError, type PromotionDef } from "./schema.ts";

/** The end of the pipeline a promotion follows. */
export interface PipelineOutcome {
  readonly result: string;
  readonly reason: string;
}

/** Options of {@linkcode promotionTargets}. */
export interface TargetOptions {
  /** `--promote NAME` (repeatable). */
  readonly names: readonly string[];
  /** `--auto-promote`. */
  readonly auto: boolean;
  readonly facts: GitFacts;
  readonly pipelineFile: string;
  readonly outcome: PipelineOutcome;
}

/** The promotions to run after a pipeline, each with who promoted it. */
export function promotionTargets(
  promotions: readonly PromotionDef[],
  options: TargetOptions,
): { promotion: PromotionDef; by: "manual" | "auto-promotion" }[] {
  const targets: { promotion: PromotionDef; by: "manual" | "auto-promotion" }[] = [];
  const evaluator = new ConditionEvaluator(options.facts, options.pipelineFile, {
    result: options.outcome.result,
    result_reason: options.outcome.reason,
  });
  for (const promotion of promotions) {
    if (options.names.includes(promotion.name)) {
      targets.push({ promotion, by: "manual" });
      continue;
    }
    if (!options.auto) continue;
    let auto = false;
    if (promotion.auto_promote) {
      const { when, path } = promotion.auto_promote;
      const node = typeof when === "boolean"
        ? { t: "value" as const, value: when }
        : parseCondition(when);
      auto = evaluator.evaluate({ source: when, node, path }).value;
    }
    for (const rule of promotion.auto_promote_on) {
      const branch = options.facts.refType === "branch" ? options.facts.branch : "";
      if (
        rule.result.toLowerCase() === options.outcome.result &&
        (rule.result_reason === undefined ||
          rule.result_reason.toLowerCase() === options.outcome.reason) &&
        (rule.branch === undefined || rule.branch.some((re) => new RegExp(re).test(branch)))
      ) auto = true;
    }
    if (auto) targets.push({ promotion, by: "auto-promotion" });
  }
  return targets;
}

/**
 * The parameter values of a promotion: `--param` wins, then `default_value`.
 *
 * @throws {PipelineError} a required parameter without a value, a value not in `options`.
 */
export function promotionParameters(
  promotion: PromotionDef,
  given: ReadonlyMap<string, string>,
): [string, string][] {
  const values: [string, string][] = [];
  for (const p of promotion.parameters) {
    const value = given.get(p.name) ?? p.default_value;
    if (value === undefined) {
      if (p.required) {
        throw new PipelineError(
          `promotion '${promotion.name}': parameter ${p.name} is required; give --param ${p.name}=VALUE`,
        );
      }
      continue;
    }
    if (p.options && given.has(p.name) && !p.options.includes(value)) {
      throw new PipelineError(
        `promotion '${promotion.name}': parameter ${p.name} must be one of ${
          p.options.map((o) => `'${o}'`).join(", ")
        }, found '${value}'`,
      );
    }
    values.push([p.name, value]);
  }
  return values;
}

/**
 * Replaces `${{parameters.X}}` by X's value before the promoted pipeline is parsed (an unknown
 * X becomes the text `X`, with a warning).
 *
 * @throws {PipelineError} a `%{{...}}` expression (template functions are not supported locally).
 */
export function substituteParameters(
  text: string,
  values: ReadonlyMap<string, string>,
  warn: (line: string) => void,
): string {
  const template = /%\{\{(.*?)\}\}/.exec(text);
  if (template) {
    throw new PipelineError(
      `%{{${template[1]}}}: template expressions in promoted pipelines are not supported locally`,
    );
  }
  return text.replace(/\$\{\{\s*parameters\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g, (_, name) => {
    const value = values.get(name);
    if (value !== undefined) return value;
    warn(`warning: parameter ${name} has no value; \${{parameters.${name}}} becomes '${name}'`);
    return name;
  });
}
