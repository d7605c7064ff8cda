/**
 * `agent run FILE` of a request that `--print-requests` wrote (its `local_toolbox:` mark,
 * `request_file.ts`): the job runs as in the pipeline run, in a fresh sandbox HOME with the
 * local toolbox (the same code, `toolbox.ts`) and the toolbox settings of that run; `checkout`
 * copies the working tree of the current directory's repository, and the job's files (`~/...`,
 * relative paths) are written into the sandbox HOME, never into the real one.
 *
 * The run directory (`<state>/runs/<wf-number>-<wf-id-8>`) is shared by the replays of one set
 * of requests, so workflow artifacts cross them as they cross the jobs of the run; the job's own
 * directory is removed after it passes and kept otherwise.
 *
 * @module
 */

import { isMap, parseDocument } from "yaml";
import { scrubbedEnvironment } from "../../engine/agent_environment.ts";
import type { JobRequest } from "../../engine/job_request_types.ts";
import { errorMessage, UsageError } from "../../util/errors.ts";
import { decodeBase64Text } from "../../util/base64.ts";
import type { JobSandbox } from "../local_run.ts";
import { realDir } from "./cli_values.ts";
import { findRepoRoot } from "./git_facts.ts";
import { REPLAY_KEY, type ReplayMark } from "./request_file.ts";
import {
  cacheRoot,
  prepareRun,
  removeServices,
  sandboxJob,
  stateDir,
  toolboxEnv,
  type ToolboxSettings,
} from "./toolbox.ts";

const CHECKOUTS: readonly string[] = ["copy", "all", "committed", "bind"];

/** The mark of a request's text, or `undefined` when it has none. */
export function readReplayMark(text: string, path: string): ReplayMark | undefined {
  let value: unknown;
  try {
    const doc = parseDocument(text, { prettyErrors: false });
    if (!isMap(doc.contents) || !doc.contents.has(REPLAY_KEY)) return undefined;
    value = doc.toJS()[REPLAY_KEY];
  } catch {
    return undefined; // the job request reader says what is wrong with the file
  }
  const bad = (what: string) =>
    new UsageError(`${path}: ${REPLAY_KEY}: ${what} (rewrite it with --print-requests)`);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw bad("expected a mapping");
  }
  const mark = value as Record<string, unknown>;
  for (const key of ["project_id", "workflow_id"]) {
    if (typeof mark[key] !== "string" || !/^[0-9a-f-]{8,}$/.test(mark[key] as string)) {
      throw bad(`${key}: expected an id`);
    }
  }
  if (!Number.isSafeInteger(mark.workflow_number) || (mark.workflow_number as number) < 0) {
    throw bad("workflow_number: expected a whole number");
  }
  if (!CHECKOUTS.includes(mark.checkout as string)) {
    throw bad(`checkout: expected one of ${CHECKOUTS.join(", ")}`);
  }
  for (
    const key of [
      "no_cache",
      "strict_versions",
      "allow_sudo",
      "user_profile",
      "toolbox_passthrough",
    ]
  ) {
    if (typeof mark[key] !== "boolean") throw bad(`${key}: expected true or false`);
  }
  for (const key of ["secret_env", "secret_files"]) {
    const list = mark[key];
    if (list !== undefined && !(Array.isArray(list) && list.every((v) => typeof v === "string"))) {
      throw bad(`${key}: expected a list of names`);
    }
  }
  for (const key of ["cache_dir", "artifacts_dir"]) {
    const dir = mark[key];
    if (dir !== undefined && (typeof dir !== "string" || !dir.startsWith("/"))) {
      throw bad(`${key}: expected an absolute path`);
    }
  }
  return mark as unknown as ReplayMark;
}

/** The secret values the mark names in `request` (env values and file contents, decoded). */
function secretValuesOf(mark: ReplayMark, request: JobRequest): string[] {
  const decoded = (value: string) => {
    try {
      return decodeBase64Text(value);
    } catch {
      return value;
    }
  };
  const env = new Set(mark.secret_env ?? []);
  const files = new Set(mark.secret_files ?? []);
  return [
    ...request.env_vars.filter((e) => env.has(e.name)).map((e) => decoded(e.value)),
    ...request.files.filter((f) => files.has(f.path)).map((f) => decoded(f.content)),
  ].filter((v) => v !== "");
}

/** Builds the sandbox of a replayed job: its run directory, toolbox, HOME and environment. */
export async function replaySandbox(mark: ReplayMark, request: JobRequest): Promise<JobSandbox> {
  const baseEnv = scrubbedEnvironment();
  const cwd = realDir(Deno.cwd());
  const settings: ToolboxSettings = {
    sourceDir: findRepoRoot(cwd) ?? cwd,
    checkout: mark.checkout,
    noCache: mark.no_cache,
    strictVersions: mark.strict_versions,
    allowSudo: mark.allow_sudo,
    userProfile: mark.user_profile,
    passthrough: mark.toolbox_passthrough,
  };
  let dirs, jobDir;
  try {
    dirs = await prepareRun({
      state: stateDir(baseEnv),
      cache: mark.cache_dir ?? cacheRoot(baseEnv),
      projectId: mark.project_id,
      workflowNumber: mark.workflow_number,
      workflowId: mark.workflow_id,
      artifactsDir: mark.artifacts_dir,
    });
    jobDir = await Deno.makeTempDir({ dir: `${dirs.runDir}/jobs`, prefix: "replay-" });
  } catch (error) {
    throw new UsageError(`Cannot prepare the job's sandbox: ${errorMessage(error)}`);
  }
  const toolbox = toolboxEnv(dirs, settings, baseEnv.HOME ? realDir(baseEnv.HOME) : "");
  const job = await sandboxJob({ dirs, jobDir, baseEnv, toolbox, settings, request });
  return {
    request: job.request,
    secretValues: secretValuesOf(mark, request),
    shellEnv: job.env,
    fileInjections: job.fileInjections,
    async finish(result) {
      await removeServices(job.home, request.job_id);
      if (result !== "passed") return `Job directory kept: ${jobDir}\n`;
      await Deno.remove(jobDir, { recursive: true }).catch(() => {});
      return undefined;
    },
  };
}
