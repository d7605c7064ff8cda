/**
 * The git facts of a local pipeline run (PIPELINES.md §3 group B and C, §5.3–5.4), read from the
 * repository with `git` and overridden by flags: branch, tag or pull request, SHA, remote URL and
 * slug, commit range; and the changed files `change_in` looks at.
 *
 * @module
 */

import { PipelineError } from "./schema.ts";
import { parentDir } from "../../util/clean_path.ts";

/** The trigger and git overrides given on the command line. */
export interface GitFlags {
  readonly branch?: string;
  readonly tag?: string;
  readonly pullRequest?: string;
  readonly prBase?: string;
  readonly prName?: string;
  readonly sha?: string;
  readonly commitRange?: string;
  readonly defaultBranch?: string;
  readonly remote?: string;
  readonly committed?: boolean;
}

/** What a pipeline run knows about its repository and trigger. */
export interface GitFacts {
  readonly repoRoot: string;
  readonly refType: "branch" | "tag" | "pull-request";
  /** The current branch (HEAD), `""` when detached. */
  readonly currentBranch: string;
  readonly branch: string;
  readonly tag: string;
  readonly pullRequest: string;
  readonly prBase: string;
  readonly prName: string;
  readonly sha: string;
  readonly url: string;
  readonly provider: string;
  readonly repoName: string;
  readonly slug: string;
  readonly commitRange: string;
  readonly committer: string;
  readonly author: string;
  readonly defaultBranchFlag?: string;
  readonly remote: string;
  readonly committed: boolean;
}

/** Runs git in `cwd`; resolves with trimmed stdout, or undefined when git fails. */
export function git(cwd: string, args: readonly string[]): string | undefined {
  try {
    const out = new Deno.Command("git", {
      args: ["-C", cwd, ...args],
      stdout: "piped",
      stderr: "null",
      stdin: "null",
    }).outputSync();
    if (!out.success) return undefined;
    return new TextDecoder().decode(out.stdout).replace(/\n$/, "");
  } catch {
    return undefined;
  }
}

/** Runs git in `cwd` without blocking; resolves with trimmed stdout, or undefined. */
export async function gitAsync(cwd: string, args: readonly string[]): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("git", {
      args: ["-C", cwd, ...args],
      stdout: "piped",
      stderr: "null",
      stdin: "null",
    }).output();
    if (!out.success) return undefined;
    return new TextDecoder().decode(out.stdout).replace(/\n$/, "");
  } catch {
    return undefined;
  }
}

/**
 * The work tree root above `dir` (the nearest directory holding `.git`), or undefined; found
 * without starting git, since `agent run -l` should start fast.
 */
export function findRepoRoot(dir: string): string | undefined {
  let current = dir;
  for (;;) {
    try {
      Deno.statSync(`${current}/.git`);
      return current;
    } catch {
      // not here
    }
    const parent = parentDir(current);
    if (parent === current) return undefined;
    current = parent;
  }
}

function providerOf(url: string): string {
  if (/github\.com[:/]/.test(url)) return "github";
  if (/bitbucket\.org[:/]/.test(url)) return "bitbucket";
  if (/gitlab\.com[:/]/.test(url)) return "gitlab";
  return "git";
}

/**
 * The remote URL without the credentials some remotes hold (`https://user:token@host/...` →
 * `https://host/...`; `ssh://git:pass@host/...` → `ssh://git@host/...`): it becomes
 * SEMAPHORE_GIT_URL, which a job may print, and Semaphore's never holds any.
 */
function withoutCredentials(url: string): string {
  return url
    .replace(/^(https?:\/\/)[^/@]*@/i, "$1")
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^/:@]*):[^/@]*@/i, "$1@");
}

function slugOf(url: string, name: string): string {
  const m = /[:/]([^/:]+)\/([^/]+?)(\.git)?\/?$/.exec(url);
  if (m && /^(git@|ssh:|https?:)/.test(url)) return `${m[1]}/${m[2]}`;
  return `local/${name}`;
}

/** HEAD's ref as written in the repository (`ref: refs/heads/x`), read without git. */
function readHeadRef(root: string): string | undefined {
  try {
    let gitDir = `${root}/.git`;
    if (Deno.statSync(gitDir).isFile) {
      const pointer = /^gitdir:\s*(.+)$/m.exec(Deno.readTextFileSync(gitDir))?.[1]?.trim();
      if (!pointer) return undefined;
      gitDir = pointer.startsWith("/") ? pointer : `${root}/${pointer}`;
    }
    const head = Deno.readTextFileSync(`${gitDir}/HEAD`).trim();
    return head.startsWith("ref: ") ? head.slice(5) : "HEAD";
  } catch {
    return undefined;
  }
}

/**
 * Reads the git facts of the repository at `root`. `light` (for `-l`, `-g`, `-n`,
 * `--condition`, which show no variable values) reads only the branch, from `.git/HEAD`,
 * without starting git; the other facts are then empty.
 *
 * @throws {PipelineError} contradictory flags (`--tag` with `--pull-request`).
 */
export async function readGitFacts(
  root: string,
  flags: GitFlags,
  light = false,
): Promise<GitFacts> {
  if (flags.tag !== undefined && flags.pullRequest !== undefined) {
    throw new PipelineError("--tag and --pull-request cannot both be given");
  }
  if (flags.pullRequest !== undefined && !/^[0-9]+$/.test(flags.pullRequest)) {
    throw new PipelineError(`--pull-request: expected a number, found '${flags.pullRequest}'`);
  }
  const remote = flags.remote ?? "origin";
  const lightRef = light ? readHeadRef(root) : undefined;
  // Four git processes at once: HEAD's commit and ref, its author and parent, the config, the
  // upstream (which fails harmlessly when there is none).
  const [headText, logText, configText, upstreamSha] = lightRef !== undefined
    ? [`\n${lightRef}`, undefined, undefined, undefined]
    : await Promise.all([
      gitAsync(root, ["rev-parse", "HEAD", "--symbolic-full-name", "HEAD"]),
      gitAsync(root, ["log", "-1", "--format=%an%n%P"]),
      gitAsync(root, [
        "config",
        "-z",
        "--get-regexp",
        `^(user\\.name|remote\\..*\\.url|branch\\..*\\.(merge|remote))$`,
      ]),
      gitAsync(root, ["rev-parse", "-q", "--verify", "@{upstream}"]),
    ]);
  const head = headText?.split("\n");
  const headRef = head?.[1] ??
    `refs/heads/${(await gitAsync(root, ["symbolic-ref", "--short", "-q", "HEAD"])) ?? ""}`;
  const currentBranch = headRef.startsWith("refs/heads/") ? headRef.slice(11) : "";
  const headSha = head?.[0] ?? "";
  const sha = flags.sha ?? headSha;
  const [authorName, parents] = (logText ?? "\n").split("\n");
  const config = new Map<string, string>();
  for (const entry of (configText ?? "").split("\0")) {
    const nl = entry.indexOf("\n");
    if (nl > 0) config.set(entry.slice(0, nl), entry.slice(nl + 1));
  }
  const url = withoutCredentials(config.get(`remote.${remote}.url`) ?? root);
  const repoName = (url.replace(/\/+$/, "").split(/[/:]/).at(-1) ?? "repo").replace(/\.git$/, "");
  const refType = flags.tag !== undefined
    ? "tag"
    : flags.pullRequest !== undefined
    ? "pull-request"
    : "branch";
  const branch = flags.branch ?? currentBranch;
  const prBase = flags.prBase ?? flags.defaultBranch ?? "master";
  let commitRange = flags.commitRange;
  if (commitRange === undefined) {
    const upstream = upstreamSha;
    const parent = parents?.split(" ")[0];
    if (upstream && upstream !== sha) commitRange = `${upstream}...${sha}`;
    else if (parent) commitRange = `${parent}...${sha}`;
    else commitRange = "";
  }
  const user = Deno.env.get("USER") ?? "";
  return {
    repoRoot: root,
    refType,
    currentBranch,
    branch,
    tag: flags.tag ?? "",
    pullRequest: flags.pullRequest ?? "",
    prBase,
    prName: flags.prName ?? "Local pull request",
    sha,
    url,
    provider: providerOf(url),
    repoName,
    slug: slugOf(url, repoName),
    commitRange,
    committer: config.get("user.name") || user,
    author: authorName || user,
    defaultBranchFlag: flags.defaultBranch,
    remote,
    committed: flags.committed ?? false,
  };
}

/** Group B (§3) in request order. */
export function gitEnvVars(facts: GitFacts): [string, string][] {
  const vars: [string, string][] = [
    ["SEMAPHORE_GIT_PROVIDER", facts.provider],
    ["SEMAPHORE_GIT_URL", facts.url],
    ["SEMAPHORE_GIT_REPO_NAME", facts.repoName],
    ["SEMAPHORE_GIT_DIR", facts.repoName],
    ["SEMAPHORE_GIT_REPO_SLUG", facts.slug],
    ["SEMAPHORE_GIT_SHA", facts.sha],
  ];
  if (facts.refType === "tag") {
    vars.push(
      ["SEMAPHORE_GIT_REF", `refs/tags/${facts.tag}`],
      ["SEMAPHORE_GIT_REF_TYPE", "tag"],
      ["SEMAPHORE_GIT_BRANCH", `refs/tags/${facts.tag}`],
      ["SEMAPHORE_GIT_TAG_NAME", facts.tag],
    );
  } else if (facts.refType === "pull-request") {
    vars.push(
      ["SEMAPHORE_GIT_REF", `refs/pull/${facts.pullRequest}/merge`],
      ["SEMAPHORE_GIT_REF_TYPE", "pull-request"],
      ["SEMAPHORE_GIT_BRANCH", facts.prBase],
      ["SEMAPHORE_GIT_WORKING_BRANCH", facts.branch],
      ["SEMAPHORE_GIT_PR_NUMBER", facts.pullRequest],
      ["SEMAPHORE_GIT_PR_NAME", facts.prName],
      ["SEMAPHORE_GIT_PR_BRANCH", facts.branch],
      ["SEMAPHORE_GIT_PR_SHA", facts.sha],
      ["SEMAPHORE_GIT_PR_SLUG", facts.slug],
    );
  } else {
    vars.push(
      ["SEMAPHORE_GIT_REF", `refs/heads/${facts.branch}`],
      ["SEMAPHORE_GIT_REF_TYPE", "branch"],
      ["SEMAPHORE_GIT_BRANCH", facts.branch],
      ["SEMAPHORE_GIT_WORKING_BRANCH", facts.branch],
    );
  }
  vars.push(["SEMAPHORE_GIT_COMMIT_RANGE", facts.commitRange]);
  return vars;
}

/** The keyword values conditions see (§5.2). */
export function keywordValues(facts: GitFacts) {
  return {
    branch: facts.refType === "branch" ? facts.branch : "",
    tag: facts.refType === "tag" ? facts.tag : "",
    pull_request: facts.refType === "pull-request" ? facts.pullRequest : "",
  };
}

/** Files changed for `change_in` with a given base, as `/path` from the repo root. */
export function changedFiles(facts: GitFacts, range: string | undefined, base: string): string[] {
  const root = facts.repoRoot;
  const files = new Set<string>();
  if (range !== undefined) {
    const out = git(root, ["diff", "--name-only", range]);
    if (out === undefined) {
      throw new PipelineError(`change_in: cannot diff the range '${range}'`);
    }
    for (const f of out.split("\n")) if (f) files.add(`/${f}`);
  } else {
    const args = facts.committed
      ? ["diff", "--name-only", base, "HEAD"]
      : ["diff", "--name-only", base];
    const out = git(root, args);
    if (out === undefined) throw new PipelineError(`change_in: cannot diff from '${base}'`);
    for (const f of out.split("\n")) if (f) files.add(`/${f}`);
  }
  if (!facts.committed) {
    const status = git(root, ["status", "--porcelain", "--untracked-files=all"]) ?? "";
    for (const line of status.split("\n")) {
      if (line.length < 4) continue;
      const path = line.slice(3).split(" -> ").at(-1)!.replace(/^"|"$/g, "");
      files.add(`/${path}`);
    }
  }
  return [...files].sort();
}

/** Resolves a ref to a commit, or undefined. */
export function resolveRef(facts: GitFacts, ref: string): string | undefined {
  return git(facts.repoRoot, ["rev-parse", "-q", "--verify", `${ref}^{commit}`]) ??
    git(facts.repoRoot, [
      "rev-parse",
      "-q",
      "--verify",
      `refs/remotes/${facts.remote}/${ref}^{commit}`,
    ]);
}

/** The merge base of two commits, or undefined. */
export function mergeBase(facts: GitFacts, a: string, b: string): string | undefined {
  return git(facts.repoRoot, ["merge-base", a, b]);
}
