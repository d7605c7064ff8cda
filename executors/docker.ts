/**
 * The container executor (`executor: dockercompose`, SEMAPHORE_COMPAT.md §10 with
 * DECISIONS.md "The container executor"): compose semantics done directly on the Docker
 * Engine API. One bridge network per job, every container on it under its `name`, sidecars
 * started first, then the main container (the first of the list) running `bash` on a TTY,
 * driven through the stateful-shell protocol over a hijacked attach stream.
 *
 * The job log has the original's shape: `Setting up image pull credentials` (when there are
 * credentials), `Pulling docker images...`, `Starting the docker image...`; then env vars and
 * files are put inside the container (§10.6). Every container and network carries the label
 * `semaphore-agent.job=<job_id>` and is removed when the job ends, is stopped or fails, and
 * (leftovers of an agent that died) by {@linkcode removeLeftovers} when an agent starts.
 *
 * This module is the executor's lifecycle; its parts live beside it: `docker_credentials.ts`
 * (image pull credentials), `compose_container.ts` (a compose container as a container config),
 * `docker_terminal.ts` (the main container's TTY), `docker_leftovers.ts` (labels, host dirs,
 * {@linkcode removeLeftovers}) and `docker_api.ts` (the Engine API client).
 *
 * It knows nothing of the job lifecycle (lib/job.ts drives it through `Executor`) nor of how
 * the log leaves the agent.
 *
 * @module
 */

import type {
  CommandOutput,
  Executor,
  FileInjection,
  HostEnvVar,
  JobLimits,
  ResourceUsage,
  RunCommandOptions,
} from "../lib/engine/executor.ts";
import { sumUsage } from "../lib/engine/resource_usage.ts";
import { type LimitCounters, processCgroupUsage, processLimitCounters } from "./job_cgroup.ts";
import { limitMessagesRunner } from "./shell.ts";
import type {
  Container,
  EnvVar,
  ImagePullCredentials,
  JobFile,
  JobRequest,
} from "../lib/engine/job_request_types.ts";
import type { EventSink } from "../lib/engine/events.ts";
import type { Logger } from "../lib/util/agent_log.ts";
import type { Metrics } from "../lib/engine/metrics.ts";
import { errorMessage, HttpError, JobConstructionError } from "../lib/util/errors.ts";
import { CommandLog, runLoggedCommand } from "../lib/engine/command_log.ts";
import { exportEnvironment } from "../lib/engine/env_file.ts";
import { injectJobFiles } from "../lib/engine/job_files.ts";
import { scrubbedEnvironment } from "../lib/engine/agent_environment.ts";
import { sessionOutput, ShellSession } from "../lib/engine/shell_session.ts";
import { appendAuthorizedKeys, dockerJumpPoint, homeDir, writeJumpPoint } from "./host_setup.ts";
import { shellQuote } from "./pty.ts";
import { parentDir } from "../lib/util/clean_path.ts";
import {
  type ContainerConfig,
  type DeviceMapping,
  DockerClient,
  dockerSocketPath,
  type DockerTimeouts,
  type HostConfig,
  type RegistryAuth,
} from "./docker_api.ts";
import { ContainerTerminal } from "./docker_terminal.ts";
import { composeContainerConfig } from "./compose_container.ts";
import { findRegistryAuth, resolveRegistryAuth } from "./docker_credentials.ts";
import { HOST_DIR_LABEL, INSTANCE_LABEL, JOB_LABEL, OWNER_LABEL } from "./docker_leftovers.ts";
import { createJobHostDir, type JobHostDir, ownerLabel } from "./job_host_dir.ts";

// The labels and removeLeftovers() stay importable from the executor's module.
export {
  HOST_DIR_LABEL,
  INSTANCE_LABEL,
  JOB_LABEL,
  OWNER_LABEL,
  removeLeftovers,
  type RemoveLeftoversOptions,
} from "./docker_leftovers.ts";

/** The directory the job shell sees the agent's files in (§10, mounted read-only). */
export const CONTAINER_TEMP_DIR = "/tmp/agent-temp-directory";

/**
 * Mode of the files in the mounted dir: the container's user, whoever it is, reads them; on
 * the host, the 0700 host dir above keeps every other user out (DECISIONS.md 20).
 */
const MOUNTED_FILE_MODE = 0o644;

/** Options of {@linkcode createDockerExecutor}. */
export interface DockerExecutorOptions {
  readonly request: JobRequest;
  readonly sink: EventSink;
  readonly logger: Logger;
  /** Pass `/dev/kvm` to every container when the device exists. @default false */
  readonly exposeKvmDevice?: boolean;
  /** `--files` bind mounts into the main container. @default [] */
  readonly fileInjections?: readonly FileInjection[];
  /** A missing `--files` host path fails the job instead of being skipped. @default false */
  readonly failOnMissingFiles?: boolean;
  /** StatsD pull metrics (§7.9). @default none */
  readonly metrics?: Metrics;
  /** @default dockerSocketPath() (`DOCKER_HOST=unix://...` or `/var/run/docker.sock`) */
  readonly dockerSocketPath?: string;
  /** Deadlines of the Docker calls. @default 2 minutes a call, 5 minutes of pull silence */
  readonly dockerTimeouts?: DockerTimeouts;
  /**
   * The environment of host setup commands and the `aws` CLI, less its `SEMAPHORE_AGENT_*`
   * variables (DECISIONS.md 14). @default the agent's
   */
  readonly hostEnv?: Readonly<Record<string, string>>;
  /** The `aws` CLI used for `AWS_ECR` credentials. @default "aws" (found on PATH) */
  readonly awsCommand?: string;
  /** Home directory for `~/.ssh/authorized_keys`. @default $HOME */
  readonly homeDir?: string;
  /** Writes `/tmp/ssh_jump_point` (tests turn it off). @default true */
  readonly writeJumpPoint?: boolean;
  /** How long bash in the main container gets to answer. @default SHELL_START_TIMEOUT_MS */
  readonly shellStartTimeoutMs?: number;
  /** Limits applied to each container of the job. @default none */
  readonly limits?: JobLimits;
}

/** The `HostConfig` fields of `limits` (each container of a job gets them). */
export function containerLimits(limits: JobLimits = {}): HostConfig {
  const { memoryBytes, cpus, pids } = limits;
  return {
    ...(memoryBytes !== undefined ? { Memory: memoryBytes, MemorySwap: memoryBytes } : {}),
    ...(cpus !== undefined ? { NanoCpus: Math.round(cpus * 1e9) } : {}),
    ...(pids !== undefined ? { PidsLimit: pids } : {}),
  };
}

/**
 * Builds a container executor; nothing touches Docker until `start()`.
 *
 * @throws {JobConstructionError} when the request has no containers.
 */
export function createDockerExecutor(options: DockerExecutorOptions): Executor {
  if (options.request.compose.containers.length === 0) {
    throw new JobConstructionError(
      "Cannot run a dockercompose job: compose.containers is empty",
    );
  }
  return new DockerExecutor(options);
}

/** How a Docker failure reads in the job log: the daemon's answers as the Docker CLI shows them. */
function dockerErrorText(error: unknown): string {
  if (error instanceof HttpError) return `Error response from daemon: ${error.message}`;
  return errorMessage(error);
}

/** A container or network name part made of what Docker accepts. */
function nameSafe(text: string): string {
  const safe = text.replace(/[^a-zA-Z0-9_.-]/g, "_").replace(/^[^a-zA-Z0-9]+/, "");
  return safe === "" ? "job" : safe;
}

/** The file destination inside the container (§10.6): absolute or `~` as is, else `~/path`. */
export function containerFilePath(path: string): string {
  return path.startsWith("/") || path.startsWith("~") ? path : `~/${path}`;
}

/** Quotes a container path for bash, keeping a leading `~` or `~/` expandable. */
function quotePath(path: string): string {
  if (path === "~") return "~";
  if (path.startsWith("~/")) return `~/${shellQuote(path.slice(2))}`;
  return shellQuote(path);
}

class DockerExecutor implements Executor {
  readonly #request: JobRequest;
  readonly #sink: EventSink;
  readonly #logger: Logger;
  readonly #exposeKvm: boolean;
  readonly #fileInjections: readonly FileInjection[];
  readonly #failOnMissingFiles: boolean;
  readonly #metrics: Metrics | undefined;
  readonly #socketPath: string | undefined;
  readonly #dockerTimeouts: DockerTimeouts | undefined;
  readonly #hostEnv: Readonly<Record<string, string>> | undefined;
  readonly #awsCommand: string;
  readonly #homeDir: string | undefined;
  readonly #writeJumpPoint: boolean;
  readonly #shellStartTimeoutMs: number | undefined;
  readonly #hostLimits: HostConfig;
  readonly #subject: string;
  readonly #instance = crypto.randomUUID();
  readonly #abort = new AbortController();
  readonly #containers: Container[];
  /** `--files` mounts whose host path exists, decided in prepare. */
  #binds: string[] = [];
  /** Made on first use; owned (and removed, which releases its lock) by cleanup. */
  #hostDir: Promise<JobHostDir> | undefined;
  #client: DockerClient | undefined;
  #auths: RegistryAuth[] = [];
  #networkId: string | undefined;
  /** The job's network being created (overlaps the image pull). */
  #network: Promise<string> | undefined;
  #mainId: string | undefined;
  #terminal: ContainerTerminal | undefined;
  #session: ShellSession | undefined;
  #starting: Promise<number> | undefined;
  #stopping = false;
  #cleaned: Promise<void> | undefined;
  readonly #limits: JobLimits;
  /** The main container's limit counters as last read (see {@linkcode #limitHits}). */
  #seenLimits: LimitCounters | undefined;

  constructor(options: DockerExecutorOptions) {
    this.#request = options.request;
    this.#sink = options.sink;
    this.#logger = options.logger;
    this.#exposeKvm = options.exposeKvmDevice ?? false;
    this.#fileInjections = options.fileInjections ?? [];
    this.#failOnMissingFiles = options.failOnMissingFiles ?? false;
    this.#metrics = options.metrics;
    this.#socketPath = options.dockerSocketPath;
    this.#dockerTimeouts = options.dockerTimeouts;
    this.#hostEnv = options.hostEnv;
    this.#awsCommand = options.awsCommand ?? "aws";
    this.#homeDir = options.homeDir;
    this.#writeJumpPoint = options.writeJumpPoint ?? true;
    this.#shellStartTimeoutMs = options.shellStartTimeoutMs;
    this.#hostLimits = containerLimits(options.limits);
    this.#limits = options.limits ?? {};
    this.#subject = `[job=${this.#request.job_id}]`;
    this.#containers = [...this.#request.compose.containers];
  }

  /** The labels of the job's containers and network (host dir: see docker_leftovers.ts). */
  #labels(hostDir: string): Readonly<Record<string, string>> {
    return {
      [JOB_LABEL]: this.#request.job_id,
      [INSTANCE_LABEL]: this.#instance,
      [OWNER_LABEL]: ownerLabel(),
      [HOST_DIR_LABEL]: hostDir,
    };
  }

  get #main(): Container {
    return this.#containers[0];
  }

  /** `semaphore-job-<job id>-<6 random chars>`: the network name and sidecar name prefix. */
  get #prefix(): string {
    return `semaphore-job-${nameSafe(this.#request.job_id)}-${this.#instance.slice(0, 6)}`;
  }

  // ---- prepare (§10.1): no job-log events -------------------------------------------------

  async prepare(): Promise<number> {
    try {
      await this.#ensureHostDir();
      if (!(await this.#runHostSetupCommands())) return 1;
      if (!(await this.#checkFileInjections())) return 1;
      await appendAuthorizedKeys(this.#request.ssh_public_keys, this.#homeDir ?? homeDir());
      if (this.#writeJumpPoint) await writeJumpPoint(dockerJumpPoint(this.#main.name));
      return 0;
    } catch (error) {
      this.#logger.error(
        `${this.#subject} Cannot prepare the container job: ${errorMessage(error)}`,
      );
      return 1;
    }
  }

  /** The job's host dir, made on first use (never after cleanup has begun). */
  async #ensureHostDir(): Promise<JobHostDir> {
    // Per job, so two jobs never share it; the container sees its mount dir at
    // CONTAINER_TEMP_DIR.
    if (!this.#hostDir) {
      if (this.#cleaned) {
        throw new Error("Cannot make the job host directory: the job was cleaned up");
      }
      this.#hostDir = Promise.resolve().then(createJobHostDir);
    }
    return await this.#hostDir;
  }

  /** The dir mounted at CONTAINER_TEMP_DIR (its files: {@linkcode MOUNTED_FILE_MODE}). */
  async #mountDir(): Promise<string> {
    return (await this.#ensureHostDir()).mountPath;
  }

  async #runHostSetupCommands(): Promise<boolean> {
    const env = scrubbedEnvironment(this.#hostEnv);
    for (const command of this.#request.compose.host_setup_commands) {
      this.#logger.debug(`${this.#subject} Running host setup command: ${command.directive}`);
      let output: Deno.CommandOutput;
      try {
        output = await new Deno.Command("bash", {
          args: ["-c", command.directive],
          env: { ...env },
          clearEnv: true,
          stdin: "null",
          signal: this.#abort.signal,
        }).output();
      } catch (error) {
        this.#logger.error(
          `${this.#subject} Cannot run host setup command '${command.directive}': ${
            errorMessage(error)
          }`,
        );
        return false;
      }
      const text = new TextDecoder().decode(output.stdout) +
        new TextDecoder().decode(output.stderr);
      if (text) this.#logger.debug(`${this.#subject} Host setup command output: ${text}`);
      if (!output.success) {
        this.#logger.error(
          `${this.#subject} Cannot run host setup command '${command.directive}': exit code ${output.code}`,
        );
        return false;
      }
    }
    return true;
  }

  async #checkFileInjections(): Promise<boolean> {
    const binds: string[] = [];
    for (const { hostPath, destination } of this.#fileInjections) {
      try {
        const absolute = await Deno.realPath(hostPath);
        binds.push(`${absolute}:${destination}`);
      } catch (error) {
        if (this.#failOnMissingFiles) {
          this.#logger.error(
            `${this.#subject} Cannot inject file ${hostPath}: ${errorMessage(error)} ` +
              "(--fail-on-missing-files is set)",
          );
          return false;
        }
        this.#logger.warn(`Error injecting file ${hostPath} - ignoring it: ${errorMessage(error)}`);
      }
    }
    this.#binds = binds;
    return true;
  }

  // ---- start (§10.3-10.5) -----------------------------------------------------------------

  start(): Promise<number> {
    this.#starting ??= this.#start().catch((error) => {
      this.#logger.error(`${this.#subject} Cannot start the container job: ${errorMessage(error)}`);
      return 1;
    });
    return this.#starting;
  }

  async #start(): Promise<number> {
    if (this.#stopping) return 1;
    const hostDir = (await this.#ensureHostDir()).path;
    if (this.#request.compose.image_pull_credentials.length > 0) {
      if (await this.#setUpCredentials() !== 0) return 1;
    }
    // The network is made while images are looked at and pulled; start awaits it.
    const network = this.#docker().then((docker) =>
      docker.createNetwork(this.#prefix, { labels: this.#labels(hostDir) })
    ).then((id) => this.#networkId = id);
    network.catch(() => {}); // awaited below; a failure shows in the step that needs it
    this.#network = network;
    try {
      if (await this.#pullImages() !== 0) return 1;
      return await this.#startMainContainer();
    } finally {
      await network.catch(() => {}); // settled before cleanup lists what to remove
    }
  }

  /** The Docker client, connected on first use; the error names the socket. */
  async #docker(): Promise<DockerClient> {
    if (this.#stopping) throw new Error("Cannot use Docker: the job was stopped");
    this.#client ??= await DockerClient.connect({
      socketPath: this.#socketPath ?? dockerSocketPath(),
      signal: this.#abort.signal,
      timeouts: this.#dockerTimeouts,
    });
    return this.#client;
  }

  /** `Setting up image pull credentials` (§10.3, DECISIONS.md 10). */
  async #setUpCredentials(): Promise<number> {
    const log = CommandLog.start(this.#sink, "Setting up image pull credentials");
    let exitCode = 0;
    for (const credentials of this.#request.compose.image_pull_credentials) {
      exitCode = await this.#login(log, credentials);
      if (exitCode !== 0) break;
    }
    log.finish(exitCode);
    return exitCode;
  }

  async #login(log: CommandLog, credentials: ImagePullCredentials): Promise<number> {
    const auth = await resolveRegistryAuth(log, credentials, {
      hostEnv: scrubbedEnvironment(this.#hostEnv),
      awsCommand: this.#awsCommand,
      signal: this.#abort.signal,
    });
    if (auth === undefined) return 1;
    try {
      const docker = await this.#docker();
      const status = await docker.checkAuth(auth, this.#abort.signal);
      log.text(`${status}\n`);
      log.text("\n");
      this.#auths.push(auth);
      this.#logger.info(`${this.#subject} Logged in to ${auth.serveraddress || "Docker Hub"}`);
      return 0;
    } catch (error) {
      log.text(`${dockerErrorText(error)}\n`);
      log.text("\n");
      return 1;
    }
  }

  /** `Pulling docker images...` (§10.4): pulls the missing images, progress as plain lines. */
  async #pullImages(): Promise<number> {
    const log = CommandLog.start(this.#sink, "Pulling docker images...");
    const android = this.#main.image.includes("semaphoreci/android");
    const tags = ["semaphoreci/android"];
    const started = performance.now();
    if (android) this.#metrics?.gauge("compose.docker.pull.rate", 1, tags);
    let exitCode = 0;
    let pulled = false;
    try {
      const docker = await this.#docker();
      const images = [...new Set(this.#containers.map((c) => c.image))];
      for (const image of images) {
        if (await docker.inspectImage(image)) continue;
        pulled = true;
        this.#logger.info(`${this.#subject} Pulling ${image}`);
        await docker.pullImage(image, {
          auth: findRegistryAuth(this.#auths, image),
          onLine: (line) => log.text(`${line}\n`),
          signal: this.#abort.signal,
        });
      }
    } catch (error) {
      if (!this.#stopping) log.text(`${dockerErrorText(error)}\n`);
      exitCode = 1;
    }
    const seconds = (performance.now() - started) / 1000;
    if (pulled) this.#metrics?.imagePull?.({ seconds, failed: exitCode !== 0 });
    if (android) {
      if (exitCode !== 0) this.#metrics?.gauge("compose.docker.error.rate", 1, tags);
      this.#metrics?.gauge("compose.docker.pull.duration", seconds, tags);
    }
    this.#logger.info(`${this.#subject} Docker pull finished. Exit Code: ${exitCode}`);
    log.finish(exitCode);
    return exitCode;
  }

  /** `Starting the docker image...` (§10.5): network, sidecars, then bash in the main one. */
  async #startMainContainer(): Promise<number> {
    const log = CommandLog.start(this.#sink, "Starting the docker image...");
    log.text("Starting a new bash session.\n");
    let exitCode = 0;
    try {
      await this.#startContainers();
      if (this.#stopping) throw new Error("the job was stopped");
      this.#logger.info(`${this.#subject} [container=${this.#main.name}] Started bash`);
    } catch (error) {
      log.text("Failed to start the docker image\n");
      log.text(this.#stopping ? "the job was stopped" : dockerErrorText(error));
      exitCode = 1;
    }
    log.finish(exitCode);
    return exitCode;
  }

  async #startContainers(): Promise<void> {
    const docker = await this.#docker();
    const { path: hostDir, mountPath } = await this.#ensureHostDir();
    const labels = this.#labels(hostDir);
    const prefix = this.#prefix;
    const networkReady = this.#network ??
      Promise.reject(new Error("the job network was not created"));
    networkReady.catch(() => {}); // awaited below
    const devices = await this.#devices();
    const network = (name: string) => ({ EndpointsConfig: { [prefix]: { Aliases: [name] } } });
    // Containers are created while the network is still being made (daemons resolve it at
    // start); a daemon that wants it at create gets the create again once it exists.
    const create = async (name: string, config: ContainerConfig) => {
      this.#throwIfStopping();
      try {
        return await docker.createContainer(name, config);
      } catch (error) {
        if (!(error instanceof HttpError) || !/network .*not found/i.test(error.message)) {
          throw error;
        }
        await networkReady;
        this.#throwIfStopping();
        return await docker.createContainer(name, config);
      }
    };
    // Service containers start first (compose starts dependencies before `run`), all at
    // once; the main container is created and attached meanwhile and started after them.
    const sidecars = Promise.all(
      this.#containers.slice(1).map(async (sidecar) => {
        const id = await create(`${prefix}-${nameSafe(sidecar.name)}`, {
          ...composeContainerConfig(sidecar),
          Labels: labels,
          HostConfig: { NetworkMode: prefix, Devices: devices, ...this.#hostLimits },
          NetworkingConfig: network(sidecar.name),
        });
        await networkReady;
        this.#throwIfStopping();
        await docker.startContainer(id);
        this.#logger.info(
          `${this.#subject} [container=${sidecar.name}] Started a service container`,
        );
      }),
    );
    const main = this.#main;
    const config: ContainerConfig = {
      ...composeContainerConfig(main),
      Cmd: ["bash"],
      Tty: true,
      OpenStdin: true,
      StdinOnce: false,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Labels: labels,
      HostConfig: {
        NetworkMode: prefix,
        Devices: devices,
        ...this.#hostLimits,
        Binds: [
          `${docker.socketPath}:/var/run/docker.sock`,
          `${mountPath}:${CONTAINER_TEMP_DIR}:ro`,
          ...this.#binds,
        ],
      },
      NetworkingConfig: network(main.name),
    };
    const attached = (async () => {
      const id = await create(main.name, config);
      this.#mainId = id;
      return { id, stream: await docker.attachContainer(id) };
    })();
    const [networkResult, sidecarsResult, attachedResult] = await Promise.allSettled([
      networkReady,
      sidecars,
      attached,
    ]);
    const failure = [networkResult, sidecarsResult, attachedResult].find((r) =>
      r.status === "rejected"
    ) as PromiseRejectedResult | undefined;
    if (failure || attachedResult.status === "rejected") {
      if (attachedResult.status === "fulfilled") attachedResult.value.stream.close();
      throw failure?.reason;
    }
    this.#throwIfStopping();
    const { stream } = attachedResult.value;
    this.#mainId = attachedResult.value.id;
    const terminal = new ContainerTerminal(docker, this.#mainId, stream);
    this.#terminal = terminal;
    const session = new ShellSession({
      terminal,
      hostStorageDir: mountPath,
      shellStorageDir: CONTAINER_TEMP_DIR,
      fileMode: MOUNTED_FILE_MODE,
    });
    this.#session = session;
    await docker.startContainer(this.#mainId);
    await session.start({
      failurePatterns: ["executable file not found", `The container name "/${main.name}"`],
      timeoutMs: this.#shellStartTimeoutMs,
    });
    if (terminal.ended && !this.#stopping) {
      const status = await terminal.exited;
      throw new Error(
        `the main container '${main.name}' exited before bash started` +
          (status === null ? "" : ` (exit status ${status})`),
      );
    }
  }

  #throwIfStopping(): void {
    if (this.#stopping) throw new Error("the job was stopped");
  }

  async #devices(): Promise<DeviceMapping[]> {
    if (!this.#exposeKvm) return [];
    try {
      await Deno.stat("/dev/kvm");
    } catch {
      this.#logger.warn(`${this.#subject} Not passing /dev/kvm: the device does not exist`);
      return [];
    }
    return [{ PathOnHost: "/dev/kvm", PathInContainer: "/dev/kvm", CgroupPermissions: "rwm" }];
  }

  // ---- env vars and files inside the container (§10.6) ------------------------------------

  exportEnvVars(envVars: readonly EnvVar[], hostEnvVars: readonly HostEnvVar[]): Promise<number> {
    return exportEnvironment(this.#sink, { job: envVars, host: hostEnvVars }, {
      writeEnvFile: async (content) => {
        const dir = await this.#mountDir();
        await Deno.writeFile(`${dir}/.env`, content, { mode: MOUNTED_FILE_MODE });
        return `${CONTAINER_TEMP_DIR}/.env`;
      },
      session: this.#session,
      // In every mode (§10.6): SSH debug sessions `docker exec` a login shell.
      appendToProfile: true,
      logger: this.#logger,
    });
  }

  injectFiles(files: readonly JobFile[]): Promise<number> {
    return injectJobFiles(this.#sink, files, {
      shownPath: (file) => file.path,
      write: (log, file, content) => this.#writeFile(log, file, content),
    });
  }

  /** Copies a file into the main container through the host dir (§10.6). */
  async #writeFile(log: CommandLog, file: JobFile, content: Uint8Array): Promise<number> {
    try {
      const dir = await this.#mountDir();
      await Deno.writeFile(`${dir}/file`, content, { mode: MOUNTED_FILE_MODE });
    } catch (error) {
      log.text(`${errorMessage(error)}\n`);
      return 255;
    }
    const session = this.#session;
    if (!session) return 1;
    const destination = containerFilePath(file.path);
    const target = quotePath(destination);
    const steps: readonly [string, string][] = [
      [
        `mkdir -p ${quotePath(parentDir(destination))}`,
        `Failed to create destination path ${destination}\n`,
      ],
      [
        `cp ${CONTAINER_TEMP_DIR}/file ${target}`,
        `Failed to move to destination path ${CONTAINER_TEMP_DIR}/file ${destination}\n`,
      ],
      [`chmod ${shellQuote(file.mode)} ${target}`, `Failed to set file mode to ${file.mode}\n`],
    ];
    for (const [command, failure] of steps) {
      const exitCode = await session.run(command, () => {});
      if (exitCode !== 0) {
        log.text(failure);
        return exitCode;
      }
    }
    return 0;
  }

  // ---- commands ---------------------------------------------------------------------------

  runCommand(command: string, options: RunCommandOptions = {}): Promise<number> {
    const session = this.#session;
    const limited = this.#limits.memoryBytes !== undefined || this.#limits.pids !== undefined;
    const runner = session && limited
      ? limitMessagesRunner(session, this.#limits, () => this.#limitHits())
      : session;
    return runLoggedCommand(runner, this.#sink, command, options);
  }

  /**
   * The limits the main container (where commands run) reached since the last call, read from
   * its cgroups on this host; when its bash was killed, the container is gone, and Docker says
   * whether the memory limit did it. Nothing when the daemon's processes are not visible here.
   */
  async #limitHits(): Promise<LimitCounters> {
    const none = { memory: 0, pids: 0 };
    const client = this.#client;
    const id = this.#mainId;
    if (!client || !id) return none;
    const state = (await client.inspectContainer(id).catch(() => undefined))?.State;
    let now = state?.Pid ? await processLimitCounters(state.Pid) : undefined;
    if (!now && this.#seenLimits && state?.OOMKilled) {
      now = { ...this.#seenLimits, memory: this.#seenLimits.memory + 1 };
    }
    if (!now) return none;
    const seen = this.#seenLimits ?? now;
    this.#seenLimits = now;
    return { memory: now.memory - seen.memory, pids: now.pids - seen.pids };
  }

  getOutputFromCommand(command: string): Promise<CommandOutput> {
    return sessionOutput(this.#session, command);
  }

  // ---- stop and cleanup (§10.7) -----------------------------------------------------------

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#session?.markStopped();
    this.#abort.abort(new Error("the job was stopped"));
    this.#terminal?.close();
    // Kill the job's processes at once (DECISIONS.md 18); cleanup removes the containers.
    if (this.#mainId && this.#client) {
      await this.#client.killContainer(this.#mainId).catch((error) =>
        this.#logger.warn(`${this.#subject} Cannot kill the main container: ${errorMessage(error)}`)
      );
    }
  }

  /**
   * What the job's containers used, read from their cgroups on this host while they still run
   * (`undefined` when the daemon's processes are not visible here). Docker kills and removes
   * their processes in cleanup.
   */
  async finish(): Promise<ResourceUsage | undefined> {
    const client = this.#client;
    if (!client) return undefined;
    try {
      const filters = {
        label: [`${JOB_LABEL}=${this.#request.job_id}`, `${INSTANCE_LABEL}=${this.#instance}`],
      };
      const parts: ResourceUsage[] = [];
      for (const container of await client.listContainers(filters)) {
        const pid = (await client.inspectContainer(container.Id))?.State.Pid;
        const usage = pid ? await processCgroupUsage(pid) : undefined;
        if (usage) parts.push(usage);
      }
      return sumUsage(parts);
    } catch (error) {
      this.#logger.warn(`${this.#subject} Cannot measure the containers: ${errorMessage(error)}`);
      return undefined;
    }
  }

  cleanup(): Promise<void> {
    this.#cleaned ??= this.#cleanup();
    return this.#cleaned;
  }

  async #cleanup(): Promise<void> {
    await this.stop();
    await this.#starting; // never rejects; nothing gets created after this
    await this.#session?.close();
    this.#logger.info(`${this.#subject} Cleaning up docker resources`);
    await this.#removeDockerResources();
    this.#client?.close();
    // Last: its lock tells other agents the containers are still this job's. A prepare still
    // making it is waited for (no host dir is made once cleanup has begun).
    const hostDir = await this.#hostDir?.catch(() => undefined);
    await hostDir?.remove().catch((error) =>
      this.#logger.warn(`${this.#subject} Cannot remove ${hostDir.path}: ${errorMessage(error)}`)
    );
  }

  async #removeDockerResources(): Promise<void> {
    const client = this.#client;
    if (!client) return; // never connected: nothing was created
    const filters = {
      label: [`${JOB_LABEL}=${this.#request.job_id}`, `${INSTANCE_LABEL}=${this.#instance}`],
    };
    try {
      const containers = await client.listContainers(filters);
      await Promise.all(
        containers.map((c) =>
          client.removeContainer(c.Id).catch((error) =>
            this.#logger.error(
              `${this.#subject} [container=${c.Names[0]}] Cannot remove the container: ${
                errorMessage(error)
              }`,
            )
          )
        ),
      );
      const networks = await client.listNetworks(filters);
      if (this.#networkId && !networks.some((n) => n.Id === this.#networkId)) {
        networks.push({ Id: this.#networkId, Name: this.#prefix, Labels: null });
      }
      for (const network of networks) {
        await client.removeNetwork(network.Id).catch((error) =>
          this.#logger.error(
            `${this.#subject} Cannot remove network ${network.Name}: ${errorMessage(error)}`,
          )
        );
      }
    } catch (error) {
      this.#logger.error(
        `${this.#subject} Cannot clean up docker resources: ${errorMessage(error)}`,
      );
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.cleanup();
  }
}
