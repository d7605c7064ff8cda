/**
 * The sandbox of a local pipeline run (PIPELINES.md §4.1): the run directory, the local toolbox
 * written once per run, one fresh HOME per job whose `.bash_profile` loads it, and the
 * environment a job shell starts from (the invoking one, HOME replaced, toolbox settings added).
 *
 * @module
 */

import type { JobRequest } from "../../engine/job_request_types.ts";
import type { FileInjection } from "../../engine/executor.ts";
import type { RunPipelineOptions } from "./options.ts";
import { COMMON_COMMANDS, HOST_COMMANDS, TOOLBOX_FUNCTIONS } from "./toolbox_scripts.ts";

/** Where a run keeps its files. */
export interface RunDirs {
  /** `<state>/runs/<wf-number>-<wf-id-8>`. */
  readonly runDir: string;
  readonly toolboxDir: string;
  /** Job and workflow artifacts of this run. */
  readonly artifactsDir: string;
  /** `<cache>/projects/<project-id>/cache`. */
  readonly cacheDir: string;
  /** `<cache>/projects/<project-id>/artifacts`. */
  readonly projectArtifactsDir: string;
}

/** How the toolbox behaves (flags of `agent run`). */
export interface ToolboxSettings {
  readonly sourceDir: string;
  readonly checkout: "copy" | "all" | "committed" | "bind";
  readonly noCache: boolean;
  readonly strictVersions: boolean;
  readonly allowSudo: boolean;
  readonly userProfile: boolean;
  /** `--toolbox-passthrough`: `test-results` runs the real CLI from the PATH. @default false */
  readonly passthrough?: boolean;
}

/** The toolbox settings the flags of `agent run PIPELINE` give, the tree at `sourceDir`. */
export function toolboxSettings(options: RunPipelineOptions, sourceDir: string): ToolboxSettings {
  return {
    sourceDir,
    checkout: options.bind
      ? "bind"
      : options.committed
      ? "committed"
      : options.useGitignore === false
      ? "all"
      : "copy",
    noCache: options.noCache ?? false,
    strictVersions: options.strictVersions ?? false,
    allowSudo: options.allowSudo ?? false,
    userProfile: options.userProfile ?? false,
    passthrough: options.toolboxPassthrough ?? false,
  };
}

/** `$XDG_STATE_HOME/semaphore-agent`. */
export function stateDir(env: Readonly<Record<string, string>>): string {
  return `${env.XDG_STATE_HOME ?? `${env.HOME ?? "/tmp"}/.local/state`}/semaphore-agent`;
}

/** `$XDG_CACHE_HOME/semaphore-agent`. */
export function cacheRoot(env: Readonly<Record<string, string>>): string {
  return `${env.XDG_CACHE_HOME ?? `${env.HOME ?? "/tmp"}/.cache`}/semaphore-agent`;
}

/** Creates the run directory and writes the toolbox. */
export async function prepareRun(options: {
  readonly state: string;
  readonly cache: string;
  readonly projectId: string;
  readonly workflowNumber: number;
  readonly workflowId: string;
  readonly artifactsDir?: string;
}): Promise<RunDirs> {
  const runDir = `${options.state}/runs/${options.workflowNumber}-${
    options.workflowId.slice(0, 8)
  }`;
  const toolboxDir = `${runDir}/toolbox`;
  const project = `${options.cache}/projects/${options.projectId}`;
  const dirs: RunDirs = {
    runDir,
    toolboxDir,
    artifactsDir: options.artifactsDir ?? `${runDir}/artifacts`,
    cacheDir: `${project}/cache`,
    projectArtifactsDir: `${project}/artifacts`,
  };
  await Deno.mkdir(`${toolboxDir}/bin`, { recursive: true, mode: 0o700 });
  await Deno.mkdir(`${toolboxDir}/bin-host`, { recursive: true });
  for (
    const dir of [dirs.artifactsDir, dirs.cacheDir, dirs.projectArtifactsDir, `${runDir}/jobs`]
  ) {
    await Deno.mkdir(dir, { recursive: true });
  }
  await Deno.writeTextFile(`${toolboxDir}/toolbox`, TOOLBOX_FUNCTIONS);
  for (const [name, text] of Object.entries(COMMON_COMMANDS)) {
    await Deno.writeTextFile(`${toolboxDir}/bin/${name}`, text, { mode: 0o755 });
  }
  for (const [name, text] of Object.entries(HOST_COMMANDS)) {
    await Deno.writeTextFile(`${toolboxDir}/bin-host/${name}`, text, { mode: 0o755 });
  }
  return dirs;
}

/** Variables the toolbox reads. */
export function toolboxEnv(
  dirs: RunDirs,
  settings: ToolboxSettings,
  realHome: string,
): Record<string, string> {
  const env: Record<string, string> = {
    SEMAPHORE_LOCAL_SOURCE: settings.sourceDir,
    SEMAPHORE_LOCAL_REAL_HOME: realHome,
    SEMAPHORE_LOCAL_CACHE_DIR: dirs.cacheDir,
    SEMAPHORE_LOCAL_RUN_ARTIFACTS: dirs.artifactsDir,
    SEMAPHORE_LOCAL_PROJECT_ARTIFACTS: dirs.projectArtifactsDir,
    SEMAPHORE_LOCAL_CHECKOUT: settings.checkout,
    SEMAPHORE_LOCAL_TOOLBOX: dirs.toolboxDir,
  };
  if (settings.noCache) env.SEMAPHORE_LOCAL_NO_CACHE = "1";
  if (settings.strictVersions) env.SEMAPHORE_LOCAL_STRICT_VERSIONS = "1";
  if (settings.allowSudo) env.SEMAPHORE_LOCAL_ALLOW_SUDO = "1";
  if (settings.passthrough) env.SEMAPHORE_LOCAL_TOOLBOX_PASSTHROUGH = "1";
  return env;
}

/** Version managers keep their real-home defaults when the job gets a sandbox HOME. */
const VERSION_MANAGERS: Readonly<Record<string, string>> = {
  NVM_DIR: ".nvm",
  RBENV_ROOT: ".rbenv",
  PYENV_ROOT: ".pyenv",
  ASDF_DATA_DIR: ".asdf",
  CARGO_HOME: ".cargo",
  RUSTUP_HOME: ".rustup",
  GOPATH: "go",
};

/** Makes a job's HOME and returns the environment its shell starts from. */
export async function prepareJobHome(options: {
  readonly dirs: RunDirs;
  readonly jobDir: string;
  readonly baseEnv: Readonly<Record<string, string>>;
  readonly toolbox: Readonly<Record<string, string>>;
  readonly userProfile: boolean;
}): Promise<{ home: string; env: Record<string, string> }> {
  const home = `${options.jobDir}/home`;
  await Deno.mkdir(home, { recursive: true, mode: 0o700 });
  await Deno.symlink(options.dirs.toolboxDir, `${home}/.toolbox`).catch((error) => {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  });
  const realHome = options.baseEnv.HOME ?? "";
  const profile = [
    "# agent run: the local toolbox",
    options.userProfile && realHome
      ? `[ -f "${realHome}/.bash_profile" ] && . "${realHome}/.bash_profile"`
      : "",
    // The invoking PATH again: a login shell's /etc/profile may have reset it (§4.1).
    'export PATH="$HOME/.toolbox/bin:$HOME/.toolbox/bin-host:${SEMAPHORE_LOCAL_PATH:-$PATH}"',
    '. "$HOME/.toolbox/toolbox"',
    'cd "$HOME"',
    "",
  ].filter((l) => l !== "").join("\n") + "\n";
  await Deno.writeTextFile(`${home}/.bash_profile`, profile);
  const env: Record<string, string> = { ...options.baseEnv };
  for (const [name, dir] of Object.entries(VERSION_MANAGERS)) {
    if (env[name] === undefined && realHome) env[name] = `${realHome}/${dir}`;
  }
  Object.assign(env, options.toolbox);
  if (options.baseEnv.PATH) env.SEMAPHORE_LOCAL_PATH = options.baseEnv.PATH;
  env.HOME = home;
  return { home, env };
}

/** The first command of a container job: loads the toolbox mounted at its host path. */
export function containerToolboxCommand(toolbox: Readonly<Record<string, string>>): string {
  const exports = Object.entries(toolbox)
    .map(([name, value]) => `export ${name}='${value.replaceAll("'", `'\\''`)}'`)
    .join("; ");
  return `${exports}; export PATH="$SEMAPHORE_LOCAL_TOOLBOX/bin:$PATH"; . "$SEMAPHORE_LOCAL_TOOLBOX/toolbox"`;
}

/**
 * Everything one job of a local pipeline run starts with: its sandbox HOME and shell
 * environment and, for a container job, the command that loads the toolbox and the host
 * directories mounted into its containers (the run's dirs, the source tree read-only).
 */
export async function sandboxJob(options: {
  readonly dirs: RunDirs;
  readonly jobDir: string;
  readonly baseEnv: Readonly<Record<string, string>>;
  readonly toolbox: Readonly<Record<string, string>>;
  readonly settings: ToolboxSettings;
  readonly request: JobRequest;
}): Promise<{
  home: string;
  env: Record<string, string>;
  request: JobRequest;
  fileInjections: FileInjection[];
}> {
  const { dirs, toolbox } = options;
  const { home, env } = await prepareJobHome({
    dirs,
    jobDir: options.jobDir,
    baseEnv: options.baseEnv,
    toolbox,
    userProfile: options.settings.userProfile,
  });
  let request = options.request;
  const fileInjections: FileInjection[] = [];
  if (request.executor === "dockercompose") {
    request = {
      ...request,
      commands: [
        { directive: containerToolboxCommand(toolbox), alias: "Loading the local toolbox" },
        ...request.commands,
      ],
    };
    for (
      const dir of [dirs.toolboxDir, dirs.cacheDir, dirs.artifactsDir, dirs.projectArtifactsDir]
    ) {
      fileInjections.push({ hostPath: dir, destination: dir });
    }
    const source = options.settings.sourceDir;
    fileInjections.push({ hostPath: source, destination: `${source}:ro` });
  }
  return { home, env, request, fileInjections };
}

/** Removes the `sem-service` containers a job started (label `semaphore-agent.job`). */
export async function removeServices(home: string, jobId: string): Promise<void> {
  try {
    await Deno.stat(`${home}/.sem-service-used`);
  } catch {
    return;
  }
  try {
    const out = await new Deno.Command("docker", {
      args: ["ps", "-aq", "--filter", `label=semaphore-agent.job=${jobId}`],
      stdout: "piped",
      stderr: "null",
    }).output();
    const ids = new TextDecoder().decode(out.stdout).split("\n").filter((l) => l);
    if (ids.length > 0) {
      await new Deno.Command("docker", {
        args: ["rm", "-f", ...ids],
        stdout: "null",
        stderr: "null",
      })
        .output();
    }
  } catch {
    // no docker CLI: sem-service could not have started anything
  }
}
