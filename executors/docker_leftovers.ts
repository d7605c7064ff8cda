/**
 * What marks the Docker resources and host directories of a container job as the agent's, and
 * the removal of those that agents which are no longer running left behind (DECISIONS.md "The
 * container executor", STYLE.md §5.11).
 *
 * Every container and network of a job carries {@linkcode JOB_LABEL}, {@linkcode INSTANCE_LABEL}
 * and {@linkcode OWNER_LABEL}; every per-job host directory is made by
 * {@linkcode createJobHostDir} with an owner file. {@linkcode removeLeftovers} (called at agent
 * start) deletes what belongs to no live agent. It knows nothing of how a job runs.
 *
 * @module
 */

import type { Logger } from "../lib/agent_log.ts";
import { errorMessage } from "../lib/errors.ts";
import { DockerClient } from "./docker_api.ts";

/** The label every container and network of a job carries: `semaphore-agent.job=<job_id>`. */
export const JOB_LABEL = "semaphore-agent.job";
/** Tells apart two executors of the same job id (one per executor instance). */
export const INSTANCE_LABEL = "semaphore-agent.instance";
/** `<hostname>/<pid>` of the agent process that made the container or network. */
export const OWNER_LABEL = "semaphore-agent.owner";

/** Where each job's host directory is made. */
const HOST_DIR_PARENT = "/tmp";
const HOST_DIR_PREFIX = "agent-temp-directory-";
/** Names the agent process that made a host dir (`<hostname>/<pid>`). */
const OWNER_FILE = ".owner";

/** Options of {@linkcode removeLeftovers}. */
export interface RemoveLeftoversOptions {
  readonly logger: Logger;
  /** @default dockerSocketPath() */
  readonly dockerSocketPath?: string;
  /**
   * Also removes what agents still running on this host made. By default a container or
   * network whose owner label names a live process on this host is left alone.
   * @default false
   */
  readonly all?: boolean;
  /** Gives up on a daemon that does not answer. @default a 10-second timeout */
  readonly signal?: AbortSignal;
}

/**
 * Removes the containers and networks labelled `semaphore-agent.job` that agents which are no
 * longer running left behind (called at agent start). A daemon that cannot be reached is
 * logged and skipped: no container job could have run on it.
 *
 * @returns how many containers and networks were removed.
 */
export async function removeLeftovers(
  options: RemoveLeftoversOptions,
): Promise<{ containers: number; networks: number }> {
  const { logger, all = false, signal = AbortSignal.timeout(10_000) } = options;
  let client: DockerClient;
  try {
    client = await DockerClient.connect({ socketPath: options.dockerSocketPath, signal });
  } catch (error) {
    logger.debug(`Not looking for leftover job containers: ${errorMessage(error)}`);
    await removeLeftoverHostDirs(logger, all);
    return { containers: 0, networks: 0 };
  }
  await using _client = client;
  const filters = { label: [JOB_LABEL] };
  const isLeftover = (labels: Readonly<Record<string, string>> | null) =>
    all || !ownerIsAlive(labels?.[OWNER_LABEL]);
  let containers = 0;
  let networks = 0;
  for (const container of await client.listContainers(filters)) {
    if (!isLeftover(container.Labels)) continue;
    try {
      await client.removeContainer(container.Id);
      containers++;
      logger.info(
        `[job=${container.Labels?.[JOB_LABEL]}] [container=${
          container.Names[0]?.replace(/^\//, "")
        }] Removed a leftover container`,
      );
    } catch (error) {
      logger.error(`Cannot remove leftover container ${container.Id}: ${errorMessage(error)}`);
    }
  }
  for (const network of await client.listNetworks(filters)) {
    if (!isLeftover(network.Labels)) continue;
    try {
      await client.removeNetwork(network.Id);
      networks++;
      logger.info(`[job=${network.Labels?.[JOB_LABEL]}] Removed leftover network ${network.Name}`);
    } catch (error) {
      logger.error(`Cannot remove leftover network ${network.Name}: ${errorMessage(error)}`);
    }
  }
  await removeLeftoverHostDirs(logger, all);
  return { containers, networks };
}

/**
 * Makes a job's host directory (`/tmp/agent-temp-directory-*`, mode 0755) with the owner file
 * that lets {@linkcode removeLeftovers} delete it (env files hold secrets) if this agent dies.
 *
 * @returns the directory's path.
 */
export async function createJobHostDir(): Promise<string> {
  // Per job, so two jobs never share it.
  const dir = await Deno.makeTempDir({ dir: HOST_DIR_PARENT, prefix: HOST_DIR_PREFIX });
  try {
    await Deno.chmod(dir, 0o755);
    await Deno.writeTextFile(`${dir}/${OWNER_FILE}`, ownerLabel());
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  return dir;
}

/** Deletes the per-job host dirs of agents that are gone (they may hold env files). */
async function removeLeftoverHostDirs(logger: Logger, all: boolean): Promise<void> {
  try {
    for await (const entry of Deno.readDir(HOST_DIR_PARENT)) {
      if (!entry.isDirectory || !entry.name.startsWith(HOST_DIR_PREFIX)) continue;
      const dir = `${HOST_DIR_PARENT}/${entry.name}`;
      const owner = await Deno.readTextFile(`${dir}/${OWNER_FILE}`).catch(() => undefined);
      if (owner === undefined || (!all && ownerIsAlive(owner))) continue;
      await Deno.remove(dir, { recursive: true }).then(
        () => logger.info(`Removed leftover job directory ${dir}`),
        (error) =>
          logger.warn(`Cannot remove leftover job directory ${dir}: ${errorMessage(error)}`),
      );
    }
  } catch (error) {
    logger.debug(`Not looking for leftover job directories: ${errorMessage(error)}`);
  }
}

/** The value of {@linkcode OWNER_LABEL} for this agent process: `<hostname>/<pid>`. */
export function ownerLabel(): string {
  return `${hostname()}/${Deno.pid}`;
}

function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown";
  }
}

/** Whether `<hostname>/<pid>` is a process alive on this host (unknown hosts: no). */
function ownerIsAlive(owner: string | undefined): boolean {
  if (!owner) return false;
  const slash = owner.lastIndexOf("/");
  const host = owner.slice(0, slash);
  const pid = Number(owner.slice(slash + 1));
  if (host !== hostname() || !Number.isInteger(pid) || pid <= 0) return false;
  if (pid === Deno.pid) return true;
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}
