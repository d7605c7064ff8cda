/**
 * `change_in(patterns, {options})` on the local repository (PIPELINES.md §5.3, §8.7): which
 * files changed, and whether any matches a pattern and no exclude.
 *
 * @module
 */

import type { WhenValue } from "./conditions.ts";
import { ConditionError } from "./conditions.ts";
import { changedFiles, git, type GitFacts, mergeBase, resolveRef } from "./git_facts.ts";
import { PipelineError } from "./schema.ts";
import { parentDir } from "../../util/clean_path.ts";

/** Where the pipeline file is, relative to the repository root (`/.semaphore/semaphore.yml`). */
export interface ChangeInContext {
  readonly facts: GitFacts;
  readonly pipelineFile: string;
  /** `track` for blocks, `ignore` in promotions. @default "track" */
  readonly pipelineFileDefault?: "track" | "ignore";
}

/** One evaluated call, for `-l` and `-n`. */
export interface ChangeInResult {
  readonly value: boolean;
  readonly detail: string;
}

function normalize(path: string): string {
  const trailing = path.endsWith("/") && path !== "/";
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return `/${out.join("/")}${trailing ? "/" : ""}`;
}

function globRegex(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*" && pattern[i + 1] === "*") {
      re += ".*";
      i++;
      if (pattern[i + 1] === "/") i++, re += "(?:/)?";
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/** Whether `file` (`/a/b`) matches one resolved pattern. */
export function matchesPattern(file: string, pattern: string): boolean {
  if (pattern.includes("*")) return globRegex(pattern).test(file);
  return file.startsWith(pattern);
}

function strings(value: WhenValue | undefined, what: string): string[] {
  if (value === undefined) return [];
  if (typeof value === "string") return [value];
  if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value as string[];
  throw new ConditionError(`change_in: ${what} must be a string or a list of strings`);
}

/** Evaluates one call; changed-file sets are cached per range in `cache`. */
export function evaluateChangeIn(
  args: readonly WhenValue[],
  ctx: ChangeInContext,
  cache: Map<string, string[]> = new Map(),
): ChangeInResult {
  const { facts } = ctx;
  if (args.length < 1 || args.length > 2) {
    throw new ConditionError("change_in takes a pattern list and an optional options map");
  }
  const options = (args[1] ?? {}) as Record<string, WhenValue>;
  if (typeof options !== "object" || Array.isArray(options)) {
    throw new ConditionError("change_in: the second argument must be a map of options");
  }
  const base = parentDir(ctx.pipelineFile);
  const resolve = (p: string) => normalize(p.startsWith("/") ? p : `${base}/${p}`);
  const patterns = strings(args[0], "patterns").map(resolve);
  const excludes = strings(options.exclude, "exclude").map(resolve);
  if (facts.refType === "tag") {
    const onTags = options.on_tags === undefined ? true : options.on_tags === true;
    return { value: onTags, detail: `tag pipeline: on_tags is ${onTags}` };
  }
  const defaultBranch = facts.defaultBranchFlag ??
    (typeof options.default_branch === "string" ? options.default_branch : "master");
  const trackPipeline = (options.pipeline_file ?? ctx.pipelineFileDefault ?? "track") === "track";
  let range: string | undefined;
  let from: string;
  const explicitRange = facts.refType === "branch" && facts.branch === defaultBranch
    ? options.default_range
    : options.branch_range;
  if (typeof explicitRange === "string") {
    range = explicitRange
      .replaceAll("$SEMAPHORE_MERGE_BASE", defaultBranch)
      .replaceAll("$SEMAPHORE_GIT_SHA", facts.sha || "HEAD")
      .replaceAll("$SEMAPHORE_GIT_COMMIT_RANGE", facts.commitRange);
    from = range;
  } else if (facts.refType === "branch" && facts.branch === defaultBranch) {
    const parent = git(facts.repoRoot, ["rev-parse", "-q", "--verify", "HEAD~1"]);
    // A first commit: everything in it changed (diff from the empty tree).
    from = parent ?? "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
  } else {
    const target = facts.refType === "pull-request" ? facts.prBase : defaultBranch;
    const ref = resolveRef(facts, target);
    if (ref === undefined) {
      throw new PipelineError(
        `change_in: unknown git reference '${target}'; use --default-branch or fetch it`,
      );
    }
    from = mergeBase(facts, ref, "HEAD") ?? ref;
  }
  const key = `${range ?? ""}|${from}`;
  let files = cache.get(key);
  if (files === undefined) {
    files = changedFiles(facts, range, from);
    cache.set(key, files);
  }
  const kept = files.filter((f) => !excludes.some((e) => matchesPattern(f, e)));
  const matching = kept.filter((f) => patterns.some((p) => matchesPattern(f, p)));
  const pipelineChanged = trackPipeline && files.includes(ctx.pipelineFile);
  const value = matching.length > 0 || pipelineChanged;
  const detail = `${matching.length} of ${files.length} changed files match` +
    (pipelineChanged ? ", the pipeline file changed" : "");
  return { value, detail };
}
