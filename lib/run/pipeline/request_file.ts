/**
 * `--print-requests DIR` (PIPELINES.md §8.4): each planned job's request as a YAML job file that
 * plain `agent run FILE` replays (values base64 as in Semaphore's requests, files under `file:`).
 *
 * Each request carries a `local_toolbox:` mapping, which the job request reader ignores as it
 * does any unknown key: `agent run FILE` sees it (`replay.ts`) and runs the job as the pipeline
 * run would, in a sandbox HOME with the local toolbox and the same toolbox settings, so that
 * `checkout` works and secret files land in that HOME, never in the real one.
 *
 * @module
 */

import { stringify } from "yaml";
import { decodeBase64Text } from "../../util/base64.ts";
import type { PlannedJob, RunInfo } from "./expand.ts";
import { jobFileStem } from "./summary.ts";
import type { ToolboxSettings } from "./toolbox.ts";

/** The top-level key that marks a request printed by `--print-requests`. */
export const REPLAY_KEY = "local_toolbox";

/** What a replay needs to build the pipeline run's sandbox (the value of {@linkcode REPLAY_KEY}). */
export interface ReplayMark {
  readonly project_id: string;
  readonly workflow_id: string;
  readonly workflow_number: number;
  readonly checkout: ToolboxSettings["checkout"];
  readonly no_cache: boolean;
  readonly strict_versions: boolean;
  readonly allow_sudo: boolean;
  readonly user_profile: boolean;
  readonly toolbox_passthrough: boolean;
  /** `--cache-dir`, absolute, when given. */
  readonly cache_dir?: string;
  /** `--artifacts-dir`, absolute, when given. */
  readonly artifacts_dir?: string;
  /** Names of the job's env vars whose values are secret (redacted on replay as in the run). */
  readonly secret_env?: readonly string[];
  /** Paths of the job's files whose contents are secret. */
  readonly secret_files?: readonly string[];
}

/**
 * `mark` with the names and paths that hold `job`'s secret values, so that a replay redacts
 * them whatever their names, as the pipeline run does.
 */
function withSecrets(mark: ReplayMark, job: PlannedJob): ReplayMark {
  const secret = new Set(job.secretValues);
  const decoded = (value: string) => {
    try {
      return decodeBase64Text(value);
    } catch {
      return value;
    }
  };
  const r = job.request;
  const env = r.env_vars.filter((e) => secret.has(decoded(e.value))).map((e) => e.name);
  const files = r.files.filter((f) => secret.has(decoded(f.content))).map((f) => f.path);
  return {
    ...mark,
    ...(env.length > 0 ? { secret_env: env } : {}),
    ...(files.length > 0 ? { secret_files: files } : {}),
  };
}

/** The mark of the requests of a run with these toolbox settings. */
export function replayMark(
  run: RunInfo,
  settings: ToolboxSettings,
  dirs: { readonly cacheDir?: string; readonly artifactsDir?: string },
): ReplayMark {
  return {
    project_id: run.projectId,
    workflow_id: run.workflowId,
    workflow_number: run.workflowNumber,
    checkout: settings.checkout,
    no_cache: settings.noCache,
    strict_versions: settings.strictVersions,
    allow_sudo: settings.allowSudo,
    user_profile: settings.userProfile,
    toolbox_passthrough: settings.passthrough ?? false,
    ...(dirs.cacheDir ? { cache_dir: dirs.cacheDir } : {}),
    ...(dirs.artifactsDir ? { artifacts_dir: dirs.artifactsDir } : {}),
  };
}

/** The YAML text of one job request. */
export function requestYaml(job: PlannedJob, mark: ReplayMark): string {
  const r = job.request;
  const commands = (list: readonly { directive: string }[]) =>
    list.map((c) => ({ directive: c.directive }));
  const body: Record<string, unknown> = {
    job_id: r.job_id,
    executor: r.executor,
  };
  if (r.executor === "dockercompose") {
    body.compose = {
      containers: r.compose.containers.map((c) => ({
        name: c.name,
        image: c.image,
        ...(c.command ? { command: c.command } : {}),
        ...(c.entrypoint ? { entrypoint: c.entrypoint } : {}),
        ...(c.user ? { user: c.user } : {}),
        env_vars: c.env_vars.map((e) => ({ name: e.name, value: e.value })),
      })),
      image_pull_credentials: r.compose.image_pull_credentials.map((c) => ({
        env_vars: c.env_vars.map((e) => ({ name: e.name, value: e.value })),
        files: c.files.map((f) => ({ path: f.path, content: f.content, mode: f.mode })),
      })),
      host_setup_commands: [],
    };
  }
  Object.assign(body, {
    commands: commands(r.commands),
    epilogue_always_commands: commands(r.epilogue_always_commands),
    epilogue_on_pass_commands: commands(r.epilogue_on_pass_commands),
    epilogue_on_fail_commands: commands(r.epilogue_on_fail_commands),
    env_vars: r.env_vars.map((e) => ({ name: e.name, value: e.value })),
    file: r.files.map((f) => ({ path: f.path, content: f.content, mode: f.mode })),
    logger: { method: "pull" },
    [REPLAY_KEY]: withSecrets(mark, job),
  });
  const header = `# ${job.blockName} / ${job.name}\n` +
    (job.secretValues.length > 0 ? "# Holds secret values: keep this file private.\n" : "");
  return header + stringify(body, { lineWidth: 0 });
}

/** Writes every job's request into `dir`; returns the paths written. */
export async function writeRequests(
  dir: string,
  jobs: readonly PlannedJob[],
  mark: ReplayMark,
): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (const job of jobs) {
    const path = `${dir}/${jobFileStem(job.nn, job.blockName, job.name)}.yml`;
    await Deno.writeTextFile(path, requestYaml(job, mark), { mode: 0o600 });
    paths.push(path);
  }
  return paths;
}
