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
 * X becomes the text `X`, with a warning), and `%{{parameters.X | fn ARG...}}` by the result of
 * its template functions (PIPELINES.md §1.8). A `%{{...}}` that is a whole YAML value (quoted or
 * not) becomes its JSON (`values: %{{parameters.R | splitList ","}}` gives a list); inside longer
 * text a string or number is inserted as is.
 *
 * @throws {PipelineError} a `%{{...}}` with a function not supported locally, or unreadable.
 */
export function substituteParameters(
  text: string,
  values: ReadonlyMap<string, string>,
  warn: (line: string) => void,
): string {
  const parameter = (name: string): string => {
    const value = values.get(name);
    if (value !== undefined) return value;
    warn(`warning: parameter ${name} has no value; \${{parameters.${name}}} becomes '${name}'`);
    return name;
  };
  const templated = text.replace(
    /(["']?)%\{\{(.*?)\}\}(["']?)/g,
    (match, open: string, expr: string, close: string, offset: number) => {
      const result = evaluateTemplate(expr, parameter);
      const json = JSON.stringify(result);
      if (open !== "" && open === close) return json;
      const before = text.slice(text.lastIndexOf("\n", offset) + 1, offset);
      const after = text.slice(offset + match.length).split("\n", 1)[0];
      const whole = open === "" && close === "" && /(^|[:\-\[{,])\s*$/.test(before) &&
        /^\s*($|[,\]}]|#)/.test(after);
      if (whole) return json;
      return `${open}${typeof result === "object" ? json : String(result)}${close}`;
    },
  );
  return templated.replace(
    /\$\{\{\s*parameters\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g,
    (_, name) => parameter(name),
  );
}

/** A value in a `%{{...}}` template expression. */
type TemplateValue = string | number | TemplateValue[];

/** The template functions supported locally, Sprout's semantics (the piped value comes last). */
const TEMPLATE_FUNCTIONS: Record<string, (args: TemplateValue[]) => TemplateValue> = {
  splitList: ([sep, s]) => templateString(s).split(templateString(sep)),
  join: ([sep, list]) =>
    Array.isArray(list) ? list.map(templateString).join(templateString(sep)) : templateString(list),
  int: ([v]) => templateInt(v),
  int64: ([v]) => templateInt(v),
  mul: (args) => args.reduce<number>((product, v) => product * templateInt(v), 1),
  add: (args) => args.reduce<number>((sum, v) => sum + templateInt(v), 0),
  upper: ([s]) => templateString(s).toUpperCase(),
  lower: ([s]) => templateString(s).toLowerCase(),
  trim: ([s]) => templateString(s).trim(),
  nospace: ([s]) => templateString(s).replace(/\s+/g, ""),
  default: ([fallback, v]) =>
    v === undefined || v === "" || (Array.isArray(v) && v.length === 0) ? fallback : v,
};

function templateString(v: TemplateValue | undefined): string {
  if (v === undefined) return "";
  return Array.isArray(v) ? v.map(templateString).join(" ") : String(v);
}

function templateInt(v: TemplateValue | undefined): number {
  if (typeof v === "number") return Math.trunc(v);
  const n = Number.parseInt(templateString(v).trim(), 10);
  return Number.isNaN(n) ? 0 : n;
}

/** Evaluates `parameters.X | fn ARG... | ...` (a Go-template pipeline). */
function evaluateTemplate(expr: string, parameter: (name: string) => string): TemplateValue {
  const fail = (why: string) => new PipelineError(`%{{${expr}}}: ${why}`);
  const tokens = expr.match(/"(?:[^"\\]|\\.)*"|`[^`]*`|\||[^\s|"`]+/g) ?? [];
  const term = (token: string): TemplateValue => {
    if (token.startsWith('"')) return JSON.parse(token) as string;
    if (token.startsWith("`")) return token.slice(1, -1);
    if (/^-?\d+$/.test(token)) return Number(token);
    const name = /^\.?parameters\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(token);
    if (name) return parameter(name[1]);
    throw fail(`cannot read '${token}'`);
  };
  let piped: TemplateValue | undefined;
  let segment: string[] = [];
  const run = () => {
    if (segment.length === 0) throw fail("empty expression");
    const [head, ...rest] = segment;
    const fn = TEMPLATE_FUNCTIONS[head];
    if (!fn) {
      if (/^[A-Za-z][A-Za-z0-9_]*$/.test(head)) {
        throw fail(
          `unknown template function '${head}' (supported locally: ${
            Object.keys(TEMPLATE_FUNCTIONS).join(", ")
          })`,
        );
      }
      if (rest.length > 0 || piped !== undefined) throw fail(`cannot read '${segment.join(" ")}'`);
      piped = term(head);
    } else {
      const args = rest.map(term);
      if (piped !== undefined) args.push(piped);
      piped = fn(args);
    }
    segment = [];
  };
  for (const token of tokens) {
    if (token === "|") run();
    else segment.push(token);
  }
  run();
  return piped as TemplateValue;
}
