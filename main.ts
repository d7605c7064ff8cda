/**
 * The agent's command tree: `start`, `serve`, `run`, `version`. Flags are declared here and
 * nothing else happens here: each command loads its mode with a dynamic `import()` (so a command
 * evaluates only its own code), hands it a typed options object and turns its outcome into an
 * exit code. Only this module prints `agent: <message>`.
 *
 * Start-up time: commander is loaded with `import()` too, because it pulls in Deno's Node
 * compatibility layer (`node:fs`, `node:child_process`, ...), which costs tens of milliseconds
 * before the first line of a command runs. `agent version` and `agent run JOB [--log-file PATH]
 * [--log-format FORMAT] [--debug]` in their plain forms are read by {@linkcode readPlainCommandLine} without it, to
 * the same {@linkcode Invocation} commander would produce; every other command line (help,
 * errors, `serve`, `start`) goes through commander.
 *
 * @module
 */

import type { Command, Option } from "commander";
import { VERSION } from "./lib/util/version.ts";
import { UsageError } from "./lib/util/errors.ts";

/** The commander package, loaded on demand. */
type Commander = typeof import("commander");

/** What `agent run` hands to its mode. */
type RunFileOptions = Parameters<typeof import("./lib/run/run_file.ts").runFile>[0];

/** A command line that was understood, before its mode runs. */
export type Invocation =
  | { readonly command: "version" }
  | { readonly command: "run"; readonly options: RunFileOptions }
  | { readonly command: "serve"; readonly opts: Record<string, unknown> }
  | { readonly command: "start"; readonly given: Record<string, unknown> };

/** Collects repeatable, comma-separated string-slice flags (`--env-vars A=1,B=2 --env-vars C=3`). */
function collectList(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(",").filter((v) => v !== "")];
}

/** Go `strconv.ParseBool` semantics for `--flag=value`. */
function parseBool(value: string): boolean {
  if (["1", "t", "T", "TRUE", "true", "True"].includes(value)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(value)) return false;
  throw new UsageError(`invalid boolean value '${value}'`);
}

function parseIntFlag(value: string): number {
  if (!/^[+-]?\d+$/.test(value.trim())) throw new UsageError(`invalid integer value '${value}'`);
  return Number.parseInt(value, 10);
}

/** Every boolean flag of `start` and `serve`. */
const BOOL_FLAGS = new Set<string>();

/**
 * A boolean flag as pflag parses it: `--flag` or `--flag=value`, never taking the next
 * argument (`--disconnect-after-job false` is true plus a stray `false`).
 */
function boolOption({ Option }: Commander, flags: string, description: string): Option {
  BOOL_FLAGS.add(flags);
  const option = new Option(`${flags} [bool]`, description).argParser(parseBool).preset("true");
  // `--no-https` is a flag of its own, not commander's negation of `--https`.
  option.negate = false;
  return option;
}

const REDACTED_VARS_HELP =
  "also redact the values of variables named like this (e.g. '*_KEY,MY_VAR'); '' turns redaction off";

/** The `agent start` flags (SEMAPHORE_COMPAT.md §3.1), in the original's order. */
function addStartOptions(commander: Commander, cmd: Command): Command {
  const { Option } = commander;
  const own = cmd
    .option("--config-file <path>", "YAML config file (flags and SEMAPHORE_AGENT_* variables win)")
    .option("--name <name>", "agent name; a random one when empty")
    .option("--name-from-env <var>", "environment variable holding the agent name (deprecated)")
    .option("--endpoint <host>", "Semaphore organization endpoint, e.g. myorg.semaphoreci.com")
    .option("--token <token>", "agent type registration token")
    .addOption(boolOption(commander, "--no-https", "use http:// instead of https:// for the API"))
    .option("--shutdown-hook-path <path>", "script run with bash when the agent shuts down")
    .option("--pre-job-hook-path <path>", "script run in the job shell before the commands")
    .option("--post-job-hook-path <path>", "script run in the job shell after the epilogues")
    .addOption(boolOption(commander, "--disconnect-after-job", "ask to be shut down after one job"))
    .option("--job-id <id>", "run this job only (needs --disconnect-after-job)")
    .addOption(
      new Option("--disconnect-after-idle-timeout <seconds>", "shut down after idling this long")
        .argParser(parseIntFlag),
    )
    .addOption(
      new Option("--interruption-grace-period <seconds>", "time a job gets after SIGTERM")
        .argParser(parseIntFlag),
    )
    .option("--env-vars <NAME=VALUE...>", "host environment variables for jobs", collectList)
    .option("--files <HOST:CONTAINER...>", "host files mounted into job containers", collectList)
    .addOption(
      boolOption(commander, "--fail-on-missing-files", "fail a job when a --files path is missing"),
    )
    .option("--upload-job-logs <when>", "never, always or when-trimmed")
    .addOption(
      boolOption(
        commander,
        "--fail-on-pre-job-hook-error",
        "fail the job when the pre-job hook fails",
      ),
    )
    .addOption(
      boolOption(commander, "--source-pre-job-hook", "source the pre-job hook instead of bash"),
    )
    .addOption(
      boolOption(commander, "--kubernetes-executor", "run jobs in Kubernetes pods (unsupported)"),
    )
    .option("--kubernetes-pod-spec <configmap>", "ConfigMap decorating job pods")
    .option("--kubernetes-allowed-images <regex...>", "images jobs may use", collectList)
    .option("--kubernetes-labels <KEY=VALUE...>", "labels for pods and secrets", collectList)
    .addOption(
      new Option("--kubernetes-pod-start-timeout <seconds>", "pod start timeout")
        .argParser(parseIntFlag),
    )
    .option("--kubernetes-default-image <image>", "image for jobs without containers");
  return addAgentOptions(own);
}

/** The job limit flags of `run`, `serve` and `start` (DECISIONS.md 23). */
const JOB_LIMIT_FLAGS = {
  memory: ["--job-memory-limit <size>", "memory a job may use, e.g. 2G (none by default)"],
  cpu: ["--job-cpu-limit <cpus>", "CPUs a job may use, e.g. 1.5 (none by default)"],
  pids: ["--job-pids-limit <n>", "processes a job may have at once (none by default)"],
} as const;

/**
 * The flags `start` and `serve` share: `--metrics-addr` and `--log-format` (the operator's), the
 * job limits and `--redacted-vars`.
 */
function addAgentOptions(cmd: Command): Command {
  return cmd
    .option(
      "--metrics-addr <host:port>",
      "serve Prometheus /metrics, /healthz and /readyz over plain HTTP here (off by default)",
    )
    .option("--log-format <format>", "the agent log's format: text (default) or json")
    .option(...JOB_LIMIT_FLAGS.memory)
    .option(...JOB_LIMIT_FLAGS.cpu)
    .option(...JOB_LIMIT_FLAGS.pids)
    .option("--redacted-vars <patterns>", REDACTED_VARS_HELP, collectList);
}

/** The `agent serve` flags (SEMAPHORE_COMPAT.md §3.2 and DECISIONS.md 15). */
function addServeOptions(commander: Commander, cmd: Command): Command {
  const { Option } = commander;
  const own = cmd
    .option("--auth-token-secret <secret>", "HMAC secret for JWT validation (required)")
    .option("--auth-token-secret-file <path>", "read the JWT secret from this file")
    .addOption(new Option("--port <port>", "listen port").argParser(parseIntFlag).default(8000))
    .option("--host <address>", "bind address", "0.0.0.0")
    .option("--tls-cert-path <path>", "TLS certificate (PEM)", "server.crt")
    .option("--tls-key-path <path>", "TLS private key (PEM)", "server.key")
    .option("--statsd-host <host>", "StatsD host (metrics need host and port)", "")
    .option("--statsd-port <port>", "StatsD port", "")
    .option("--statsd-namespace <ns>", "StatsD metric prefix", "agent.prod")
    .addOption(
      new Option("--callback-retry-attempts <n>", "attempts for each callback, 1 s apart")
        .argParser(parseIntFlag).default(300),
    )
    .option("--pre-job-hook-path <path>", "script sourced before the job's commands", "")
    .option("--files <HOST:CONTAINER...>", "host files mounted into job containers", collectList)
    .addOption(
      boolOption(commander, "--expose-kvm-device", "pass /dev/kvm to job containers").default(true),
    );
  return addAgentOptions(own);
}

/** The job limit flags as commander names them. */
interface JobLimitOptions {
  readonly jobMemoryLimit?: string;
  readonly jobCpuLimit?: string;
  readonly jobPidsLimit?: string;
}

/** Returns the options of `cmd` that were given on the command line, by flag name. */
function explicitFlags(cmd: Command): Record<string, unknown> {
  const given: Record<string, unknown> = {};
  for (const option of cmd.options) {
    const key = option.attributeName();
    if (cmd.getOptionValueSource(key) === "cli") {
      given[option.long!.replace(/^--/, "")] = cmd.getOptionValue(key);
    }
  }
  return given;
}

/** Flag words the person typed after `agent run` (the defaults files' flags are not counted). */
let runTypedFlags = new Set<string>();

/**
 * `agent run` defaults (PIPELINES.md §6.2): `$XDG_CONFIG_HOME/semaphore-agent/runrc`, then
 * `./.agentrc`; one flag per line (`--jobs 4`, `--no-cache`), `#` comments.
 *
 * @throws {UsageError} a line that is not a flag.
 */
function readRunDefaults(): string[] {
  const config = Deno.env.get("XDG_CONFIG_HOME") || `${Deno.env.get("HOME") ?? ""}/.config`;
  const tokens: string[] = [];
  for (const path of [`${config}/semaphore-agent/runrc`, ".agentrc"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(path);
    } catch {
      continue;
    }
    text.split("\n").forEach((raw, i) => {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) return;
      const match = /^(-\S+)(?:\s+(.*))?$/.exec(line);
      if (!match) throw new UsageError(`${path}:${i + 1}: expected a flag, found '${line}'`);
      tokens.push(match[1]);
      if (match[2] !== undefined) tokens.push(match[2]);
    });
  }
  return tokens;
}

/** Collects a repeatable flag's values. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function parsePositive(value: string): number {
  const n = parseIntFlag(value);
  if (n < 1) throw new UsageError(`invalid value '${value}': expected at least 1`);
  return n;
}

/** The `agent run` flags (PIPELINES.md §6.2); all but --log-file and --debug are pipeline flags. */
function addRunOptions(commander: Commander, cmd: Command): Command {
  const { Option } = commander;
  return cmd
    .option("--log-file <path>", "job file: also write the JSONL event log here")
    .option("--debug", "show stack traces for unexpected errors")
    .option("--log-format <format>", "the agent log's format on stderr: text (default) or json")
    .option(...JOB_LIMIT_FLAGS.memory)
    .option(...JOB_LIMIT_FLAGS.cpu)
    .option(...JOB_LIMIT_FLAGS.pids)
    .option("--redacted-vars <patterns>", REDACTED_VARS_HELP, collectList)
    .option("-l, --list", "pipeline: print the plan (stage, block, job, dependencies, conditions)")
    .option("-n, --dry-run", "pipeline: print each job's commands and env names; run nothing")
    .addOption(
      new Option("-g, --graph [format]", "pipeline: print the block graph (text, or dot)")
        .choices(["text", "dot"]).preset("text"),
    )
    .option("--condition <expr>", "pipeline: print the value of a when condition and exit")
    .option("--promote <name>", "pipeline: then run this promotion (chains followed)", collect)
    .option("--auto-promote", "pipeline: then run every promotion whose condition holds")
    .option("--param <name=value>", "pipeline: a promotion parameter", collect)
    .option(
      "-P, --image <os_image=image>",
      "pipeline: run VM jobs of OS_IMAGE (* for all) in IMAGE",
      collect,
    )
    .option("--print-requests <dir>", "pipeline: write each job request to DIR; run nothing")
    .option("-b, --block <glob>", "pipeline: run these blocks and their dependencies", collect)
    .option("-j, --job <glob>", "pipeline: run only jobs with this expanded name", collect)
    .option("--matrix <var=value>", "pipeline: keep jobs with this matrix value", collect)
    .option("--no-deps", "pipeline: do not run the dependencies of selected blocks")
    .option("--skip <glob>", "pipeline: skip these blocks", collect)
    .option("--force-run <glob>", "pipeline: run these blocks whatever their condition", collect)
    .option("--secret-file <file>", "pipeline: secrets in 'sem get secret' format", collect)
    .option("--secrets-dir <dir>", "pipeline: dir of secrets files")
    .option("-s, --secret <name:var[=value]>", "pipeline: set one variable of a secret", collect)
    .option("--allow-missing-secrets", "pipeline: run even when a secret is not found")
    .option("--insecure-secrets", "pipeline: do not redact secret values")
    .option("--allow-host-paths", "pipeline: write secret files at absolute host paths")
    .option("--env <name=value>", "pipeline: set a variable in every job (wins)", collect)
    .option("--env-file <file>", "pipeline: NAME=VALUE lines set in every job")
    .option("--branch <name>", "pipeline: simulate a push to this branch")
    .option("--tag <name>", "pipeline: simulate a tag push")
    .option("--pull-request <number>", "pipeline: simulate a pull request")
    .option("--pr-base <branch>", "pipeline: the pull request's target branch")
    .option("--pr-name <title>", "pipeline: the pull request's title")
    .option("--sha <sha>", "pipeline: SEMAPHORE_GIT_SHA")
    .option("--commit-range <range>", "pipeline: SEMAPHORE_GIT_COMMIT_RANGE")
    .option("--default-branch <name>", "pipeline: default branch for change_in")
    .option("--remote <name>", "pipeline: git remote for the URL and slug", "origin")
    .addOption(
      new Option("--jobs <n>", "pipeline: jobs at once (default: CPUs)").argParser(parsePositive),
    )
    .option("--fail-fast", "pipeline: stop everything at the first failed job")
    .option("--no-timeouts", "pipeline: ignore execution time limits")
    .option("--bind", "pipeline: checkout links the source tree instead of copying it")
    .addOption(
      new Option("--use-gitignore [bool]", "pipeline: checkout copies only non-ignored files")
        .argParser(parseBool),
    )
    .option("--committed", "pipeline: checkout and change_in see committed files only")
    .option("--cache-dir <dir>", "pipeline: cache and project artifact store")
    .option("--no-cache", "pipeline: cache restores miss and stores are skipped")
    .option("--artifacts-dir <dir>", "pipeline: job and workflow artifact store")
    .option("--keep", "pipeline: keep the run directory after a passed run")
    .option("--user-profile", "pipeline: jobs also load your ~/.bash_profile")
    .option("--allow-sudo", "pipeline: install-package may use sudo apt-get")
    .option("--strict-versions", "pipeline: sem-version fails when versions differ")
    .option("--toolbox-passthrough", "pipeline: test-results runs the real CLI from the PATH")
    .option("--lenient", "pipeline: read numbers and booleans where strings are expected")
    .option("--log-dir <dir>", "pipeline: write each job's JSONL event log here")
    .option("-q, --quiet", "pipeline: print the summary only")
    .option("--json", "pipeline: print progress as JSON lines (job events tagged with block, job)")
    .option("-v, --verbose", "pipeline: the agent's own log (info) on stderr")
    .option("-C, --directory <dir>", "pipeline: the repository root")
    .option("-w, --watch", "pipeline: run again after every change in the repository")
    .option("--project <name>", "pipeline: SEMAPHORE_PROJECT_NAME");
}

/** The typed pipeline options of `agent run` from commander's values. */
function pipelineOptions(o: Record<string, unknown>) {
  const s = (k: string) => o[k] as string | undefined;
  // (--log-format is shared with job files)
  const l = (k: string) => o[k] as string[] | undefined;
  const b = (k: string) => o[k] === true ? true : undefined;
  return {
    directory: s("directory"),
    list: b("list"),
    watch: b("watch"),
    graph: o.graph as "text" | "dot" | undefined,
    images: l("image"),
    promote: l("promote"),
    autoPromote: b("autoPromote"),
    params: l("param"),
    condition: s("condition"),
    dryRun: b("dryRun"),
    printRequests: s("printRequests"),
    blocks: l("block"),
    jobs: l("job"),
    matrix: l("matrix"),
    noDeps: o.deps === false,
    skip: l("skip"),
    forceRun: l("forceRun"),
    secretFiles: l("secretFile"),
    secretsDir: s("secretsDir"),
    secrets: l("secret"),
    allowMissingSecrets: b("allowMissingSecrets"),
    insecureSecrets: b("insecureSecrets"),
    allowHostPaths: b("allowHostPaths"),
    env: l("env"),
    envFile: s("envFile"),
    branch: s("branch"),
    tag: s("tag"),
    pullRequest: s("pullRequest"),
    prBase: s("prBase"),
    prName: s("prName"),
    sha: s("sha"),
    commitRange: s("commitRange"),
    defaultBranch: s("defaultBranch"),
    remote: s("remote"),
    concurrency: o.jobs as number | undefined,
    failFast: b("failFast"),
    noTimeouts: o.timeouts === false,
    bind: b("bind"),
    useGitignore: o.useGitignore as boolean | undefined,
    committed: b("committed"),
    cacheDir: s("cacheDir"),
    noCache: o.cache === false,
    artifactsDir: s("artifactsDir"),
    keep: b("keep"),
    userProfile: b("userProfile"),
    allowSudo: b("allowSudo"),
    strictVersions: b("strictVersions"),
    toolboxPassthrough: b("toolboxPassthrough"),
    lenient: b("lenient"),
    logDir: s("logDir"),
    quiet: b("quiet"),
    json: b("json"),
    verbose: b("verbose"),
    project: s("project"),
    logFormat: s("logFormat"),
  };
}

/**
 * The command tree; each command's action hands its {@linkcode Invocation} to `invoke` (and
 * loads nothing).
 */
function buildProgram(commander: Commander, invoke: (invocation: Invocation) => void): Command {
  const program = new commander.Command("agent")
    .description("Semaphore CI job agent")
    .helpOption("-h, --help", "show help")
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({
      writeErr: (s) => Deno.stderr.writeSync(new TextEncoder().encode(s)),
      writeOut: (s) => Deno.stdout.writeSync(new TextEncoder().encode(s)),
    });

  program.command("version").description("print the agent version").action(() => {
    invoke({ command: "version" });
  });

  addRunOptions(
    commander,
    program
      .command("run")
      .description(
        "run a pipeline (.semaphore/semaphore.yml) or one job request file locally and print it " +
          "live; exit 0 passed, 1 failed, 130 stopped, 2 invalid",
      )
      .argument("[file]", "pipeline file (default .semaphore/semaphore.yml) or job request"),
  )
    .addHelpText(
      "after",
      `
A file whose top level has 'blocks' is a Semaphore pipeline: its blocks run in dependency
order, each job in its own sandbox HOME with a local toolbox (checkout copies the working
tree). Any other file is a job request in Semaphore's format (commands, epilogue_*_commands,
env_vars and file with base64 values, executor: dockercompose with compose.containers).
Ctrl-C stops every job and cleans up. An invalid file exits 2 with one line naming the field.
SEMAPHORE_AGENT_LOG_LEVEL=debug shows the agent's own log on stderr.

Examples:
  agent run -l                         # the plan of .semaphore/semaphore.yml
  agent run                            # run it
  agent run -b Tests --jobs 4          # one block and what it depends on
  agent run examples/hello.yaml --log-file job.jsonl`,
    )
    .action((path: string | undefined, opts: Record<string, unknown>, cmd: Command) => {
      // Pipeline flags typed with a job file are an error; those from .agentrc are not.
      const typed = new Set(
        cmd.options.filter((o) =>
          runTypedFlags.has(o.long ?? "") || runTypedFlags.has(o.short ?? "")
        ).map((o) => o.long!.replace(/^--/, "")),
      );
      const given = Object.keys(explicitFlags(cmd)).filter((f) =>
        f !== "log-file" && f !== "debug" && f !== "log-format" && !f.startsWith("job-") &&
        f !== "redacted-vars" &&
        typed.has(f)
      );
      invoke({
        command: "run",
        options: {
          path,
          logFile: opts.logFile as string | undefined,
          logFormat: opts.logFormat as string | undefined,
          limits: {
            memory: opts.jobMemoryLimit as string | undefined,
            cpu: opts.jobCpuLimit as string | undefined,
            pids: opts.jobPidsLimit as string | undefined,
          },
          redactedVars: opts.redactedVars as string[] | undefined,
          pipelineFlags: given,
          pipeline: pipelineOptions(opts),
        },
      });
    });

  addServeOptions(
    commander,
    program.command("serve").description("hosted mode: accept one job over HTTPS")
      .allowExcessArguments(true), // pflag allows positional arguments anywhere
  ).action((_opts, cmd: Command) => {
    invoke({ command: "serve", opts: cmd.opts() });
  });

  addStartOptions(
    commander,
    program.command("start").description("self-hosted mode: register with Semaphore and run jobs")
      .allowExcessArguments(true),
  ).action((_opts, cmd: Command) => {
    invoke({ command: "start", given: explicitFlags(cmd) });
  });

  return program;
}

/** The value flags of `run`, by the option they set. */
const RUN_VALUE_FLAGS = { "--log-file": "logFile", "--log-format": "logFormat" } as const;

/**
 * Reads `agent version` and `agent run FILE` with `--log-file PATH`, `--log-format FORMAT` (each
 * also as `--flag=VALUE`) and `--debug`, in any order, without loading commander, when no
 * defaults file (`runrc`, `.agentrc`) adds flags; undefined for anything else (help, no file or
 * an extra argument, any other flag, a value that starts with `-`, a repeated flag), which
 * commander then reads, errors and help included.
 *
 * @throws {UsageError} a defaults file line that is not a flag (as commander's path does).
 */
export function readPlainCommandLine(args: readonly string[]): Invocation | undefined {
  if (args.length === 1 && args[0] === "version") return { command: "version" };
  if (args[0] !== "run") return undefined;
  let path: string | undefined;
  const values: { logFile?: string; logFormat?: string } = {};
  let debug = false;
  for (let i = 1; i < args.length; i++) {
    const arg = args[i];
    const eq = arg.indexOf("=");
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    if (arg === "--debug" && !debug) {
      debug = true;
    } else if (Object.hasOwn(RUN_VALUE_FLAGS, flag)) {
      const key = RUN_VALUE_FLAGS[flag as keyof typeof RUN_VALUE_FLAGS];
      const value = eq === -1 ? args[++i] : arg.slice(eq + 1);
      if (values[key] !== undefined || value === undefined || value.startsWith("-")) {
        return undefined;
      }
      values[key] = value;
    } else if (!arg.startsWith("-") && path === undefined) {
      path = arg;
    } else {
      return undefined;
    }
  }
  if (path === undefined || readRunDefaults().length > 0) return undefined;
  const { logFile, logFormat } = values;
  // What commander gives for no pipeline flag: the defaults of --remote and the --no-* flags.
  const opts = { remote: "origin", deps: true, timeouts: true, cache: true, logFile, logFormat };
  return {
    command: "run",
    options: {
      path,
      logFile,
      logFormat,
      limits: { memory: undefined, cpu: undefined, pids: undefined },
      redactedVars: undefined,
      pipelineFlags: [],
      pipeline: pipelineOptions(opts),
    },
  };
}

/**
 * Reads any command line with commander. Resolves with an exit code instead when commander ran
 * no command: 0 after help, 2 after a usage error (which commander printed).
 */
export async function readCommandLine(args: readonly string[]): Promise<Invocation | number> {
  const commander = await import("commander");
  let invocation: Invocation | undefined;
  const program = buildProgram(commander, (i) => invocation = i);
  // A bare boolean flag becomes `--flag=true` so that commander never takes the next argument
  // as its value, as pflag does not.
  let normalized = args.map((arg) => BOOL_FLAGS.has(arg) ? `${arg}=true` : arg);
  if (args[0] === "run") {
    runTypedFlags = new Set(
      args.slice(1).filter((a) => a.startsWith("-")).map((a) => a.replace(/=.*$/, "")),
    );
    normalized = ["run", ...readRunDefaults(), ...normalized.slice(1)];
  }
  try {
    await program.parseAsync(normalized, { from: "user" });
  } catch (error) {
    if (error instanceof commander.CommanderError) {
      return error.exitCode === 0 || error.code === "commander.helpDisplayed" ? 0 : 2;
    }
    throw error;
  }
  return invocation ?? 0;
}

/** Loads the invoked mode, runs it and resolves with the exit code. */
async function invoke(invocation: Invocation): Promise<number> {
  switch (invocation.command) {
    case "version":
      console.log(VERSION);
      return 0;
    case "run": {
      const { runFile } = await import("./lib/run/run_file.ts");
      return await runFile(invocation.options);
    }
    case "serve": {
      const { serve } = await import("./server/serve.ts");
      return await serve(invocation.opts);
    }
    case "start": {
      const { startAgent } = await import("./lib/start/listener.ts");
      return await startAgent(invocation.given);
    }
  }
}

/**
 * Makes the agent's process not dumpable (DECISIONS.md 21): its `/proc/<pid>/environ`, `mem`,
 * `fd/` and the like then belong to root, and `ptrace` is refused, so a job running as the
 * agent's user cannot read the agent's secrets there. Its children are dumpable again once
 * they exec (they get no secret: DECISIONS.md 14). Elsewhere than Linux there is no such
 * route to close; a refusal is said on stderr. (Loaded with `import()`, as `version` needs
 * none of it.)
 */
async function protectAgentProcess(): Promise<void> {
  const { setDumpable } = await import("./lib/util/prctl.ts");
  const outcome = setDumpable(false);
  if (
    outcome.state === "failed" || (outcome.state === "unsupported" && Deno.build.os === "linux")
  ) {
    console.error(`agent: warning: cannot make the agent process non-dumpable: ${outcome.reason}`);
  }
}

/** Runs the CLI with `args` and resolves with the process exit code. */
export async function main(args: readonly string[]): Promise<number> {
  if (args.length === 0) {
    buildProgram(await import("commander"), () => {}).outputHelp({ error: true });
    return 1;
  }
  const known = ["version", "run", "serve", "start", "help", "-h", "--help"];
  if (!known.includes(args[0])) {
    // The original ignores an unknown action word and exits 0 (SEMAPHORE_COMPAT.md §2.2).
    console.error(`agent: unknown command '${args[0]}' - nothing to do (see 'agent --help')`);
    return 0;
  }
  if (["run", "serve", "start"].includes(args[0])) await protectAgentProcess();
  try {
    const invocation = readPlainCommandLine(args) ?? await readCommandLine(args);
    return typeof invocation === "number" ? invocation : await invoke(invocation);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`agent: ${error.message}`);
      return error.exitCode;
    }
    console.error(`agent: ${error instanceof Error ? error.message : String(error)}`);
    if (args.includes("--debug") && error instanceof Error) console.error(error.stack);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
