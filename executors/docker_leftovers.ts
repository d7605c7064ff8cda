/**
 * What marks the Docker resources and host directories of a container job as the agent's, and
 * the removal of those that agents which are no longer running left behind (DECISIONS.md "The
 * container executor", STYLE.md §5.11).
 *
 * Every container and network of a job carries {@linkcode JOB_LABEL}, {@linkcode INSTANCE_LABEL},
 * {@linkcode OWNER_LABEL} and {@linkcode HOST_DIR_LABEL}; every per-job host directory is made
 * by `createJobHostDir` (job_host_dir.ts) with an owner file that the agent keeps locked while
 * the job lives. {@linkcode removeLeftovers} (called at agent start) deletes what belongs to no live
 * agent: an agent is alive while it holds that lock, which tells agents apart across PID
 * namespaces and hostnames (agents in containers sharing the Docker socket and /tmp) and from a
 * restarted agent that got a dead one's PID. It knows nothing of how a job runs.
 *
 * @module
 */

import type { Logger } from "../lib/util/agent_log.ts";
import { errorMessage } from "../lib/util/errors.ts";
import { DockerClient } from "./docker_api.ts";
import { removeRecordedJob } from "./job_record.ts";
import { HOST_DIR_PREFIX, hostDirParent, hostname, ownerState } from "./job_host_dir.ts";

/** The label every container and network of a job carries: `semaphore-agent.job=<job_id>`. */
export const JOB_LABEL = "semaphore-agent.job";
/** Tells apart two executors of the same job id (one per executor instance). */
export const INSTANCE_LABEL = "semaphore-agent.instance";
/**
 * `<hostname>/<pid>` of the agent process that made the container or network. Only decides
 * whether the owner is alive for resources without {@linkcode HOST_DIR_LABEL} (older agents).
 */
export const OWNER_LABEL = "semaphore-agent.owner";
/**
 * The job's host directory: its agent is alive while it holds the lock on the owner file there
 * (see {@linkcode createJobHostDir}).
 */
export const HOST_DIR_LABEL = "semaphore-agent.hostdir";

/** Options of {@linkcode removeLeftovers}. */
export interface RemoveLeftoversOptions {
  readonly logger: Logger;
  /** @default dockerSocketPath() */
  readonly dockerSocketPath?: string;
  /**
   * Also removes what agents still running made. By default a container, network or host dir
   * whose owner file is locked by a live agent (or, without {@linkcode HOST_DIR_LABEL}, whose
   * owner label names a live process on this host) is left alone.
   * @default false
   */
  readonly all?: boolean;
  /** Gives up on a daemon that does not answer. @default a 10-second timeout */
  readonly signal?: AbortSignal;
}

/**
 * Removes the containers and networks labelled `semaphore-agent.job` that agents which are no
 * longer running left behind (called at agent start), then their jobs' host dirs (and the
 * processes, cgroups and files a shell job recorded there). A daemon that cannot be reached is
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
  // One verdict per host dir, so a job's containers and network are judged alike.
  const verdicts = new Map<string, Promise<boolean>>();
  const isLeftover = (labels: Readonly<Record<string, string>> | null): Promise<boolean> => {
    if (all) return Promise.resolve(true);
    const hostDir = labels?.[HOST_DIR_LABEL];
    if (hostDir === undefined) return Promise.resolve(!ownerIsAlive(labels?.[OWNER_LABEL]));
    let verdict = verdicts.get(hostDir);
    if (!verdict) {
      // The owner makes the dir and locks its owner file before any resource names it.
      verdict = ownerState(hostDir).then((state) => state === "free" || state === "no dir");
      verdicts.set(hostDir, verdict);
    }
    return verdict;
  };
  let containers = 0;
  let networks = 0;
  for (const container of await client.listContainers(filters)) {
    if (!(await isLeftover(container.Labels))) continue;
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
    if (!(await isLeftover(network.Labels))) continue;
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
 * The per-job host dirs in {@linkcode hostDirParent} that are left over: those whose owner file
 * nobody holds locked (with `all`, also those a live agent holds). A dir without an owner file is
 * being made, or is not an agent's: it is never listed.
 */
async function* leftoverHostDirs(all: boolean): AsyncGenerator<string> {
  const parent = hostDirParent();
  for await (const entry of Deno.readDir(parent)) {
    if (!entry.isDirectory || !entry.name.startsWith(HOST_DIR_PREFIX)) continue;
    const dir = `${parent}/${entry.name}`;
    const state = await ownerState(dir);
    if (state === "no dir" || state === "no owner file") continue;
    if (!all && state !== "free") continue;
    yield dir;
  }
}

/**
 * Whether a job of an agent that is no longer running left its host dir: only then can there be
 * containers and networks of such a job to remove (every container job makes and locks its host
 * dir before it names it in a label), unless the dir itself was deleted by hand.
 */
export async function hasLeftoverHostDirs(): Promise<boolean> {
  try {
    for await (const _dir of leftoverHostDirs(false)) return true;
  } catch {
    // not readable: nothing to remove there either
  }
  return false;
}

/**
 * Deletes the per-job host dirs whose owner file nobody holds locked (they may hold env files).
 * A dir without an owner file is being made, or is not an agent's: it is left alone.
 */
export async function removeLeftoverHostDirs(logger: Logger, all = false): Promise<void> {
  try {
    for await (const dir of leftoverHostDirs(all)) {
      await removeRecordedJob(dir, logger); // a shell job's processes, cgroup and env files
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

/**
 * Whether `<hostname>/<pid>` is a process alive on this host (unknown hosts: no): the rule for
 * resources of older agents, which have no {@linkcode HOST_DIR_LABEL}.
 */
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
