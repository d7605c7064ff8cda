/**
 * `--print-requests DIR` (PIPELINES.md §8.4): each planned job's request as a YAML job file that
 * plain `agent run FILE` replays (values base64 as in Semaphore's requests, files under `file:`).
 *
 * @module
 */

import { stringify } from "yaml";
import type { PlannedJob } from "./expand.ts";
import { jobFileStem } from "./summary.ts";

/** The YAML text of one job request. */
export function requestYaml(job: PlannedJob): string {
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
  });
  const header = `# ${job.blockName} / ${job.name}\n` +
    (job.secretValues.length > 0 ? "# Holds secret values: keep this file private.\n" : "");
  return header + stringify(body, { lineWidth: 0 });
}

/** Writes every job's request into `dir`; returns the paths written. */
export async function writeRequests(dir: string, jobs: readonly PlannedJob[]): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (const job of jobs) {
    const path = `${dir}/${jobFileStem(job.nn, job.blockName, job.name)}.yml`;
    await Deno.writeTextFile(path, requestYaml(job), { mode: 0o600 });
    paths.push(path);
  }
  return paths;
}
