/**
 * Which executor runs a job, decided once for every mode: the request's `executor` field picks
 * the shell executor or the container executor. Also the start-up sweep of what jobs of a crashed
 * agent left behind. Modes import executors only through this module.
 *
 * @module
 */

import type { Executor, ExecutorSetup } from "../lib/engine/executor.ts";
import { errorMessage, JobConstructionError } from "../lib/util/errors.ts";
import type { Logger } from "../lib/util/agent_log.ts";
import { createShellExecutor } from "./shell.ts";
import type { ShellAhead } from "./shell_ahead.ts";
import { createDockerExecutor } from "./docker.ts";
import { hasLeftoverHostDirs, removeLeftovers } from "./docker_leftovers.ts";
import { jobIsolation, removeEmptyLeftoverCgroups } from "./job_cgroup.ts";

/**
 * Builds the executor that `setup.request.executor` names. A shell job takes `ahead`, a shell
 * `agent run` started before it read the request, when it was started for this setup (the
 * caller discards it otherwise).
 *
 * @throws {JobConstructionError} for an unknown executor or a container job without containers.
 */
export function createExecutor(setup: ExecutorSetup, ahead?: ShellAhead): Executor {
  const { request, sink, logger } = setup;
  switch (request.executor) {
    case "shell":
      return createShellExecutor({
        request,
        sink,
        logger,
        selfHosted: setup.selfHosted ?? false,
        baseEnv: setup.shellEnv,
        limits: setup.limits,
        ahead,
      });
    case "dockercompose":
      return createDockerExecutor({
        request,
        sink,
        logger,
        exposeKvmDevice: setup.exposeKvmDevice ?? false,
        fileInjections: setup.fileInjections ?? [],
        failOnMissingFiles: setup.failOnMissingFiles ?? false,
        metrics: setup.metrics,
        hostEnv: setup.shellEnv,
        limits: setup.limits,
      });
    default:
      throw new JobConstructionError("unknown executor type");
  }
}

/**
 * Finds how shell jobs are isolated on this host (a cgroup per job, or the child-subreaper
 * fallback; DECISIONS.md 23) and says so, and why, in the agent log. Every mode calls it at start.
 */
export async function logJobIsolation(logger: Logger): Promise<void> {
  const isolation = await jobIsolation();
  logger.info(`Job isolation: ${isolation.description}`);
}

/** Options of {@linkcode cleanUpAfterCrashedAgents}. */
export interface CleanUpOptions {
  /**
   * Asks Docker only when a dead agent's job left its host dir, the sign that its containers may
   * be left too. For `agent run` of a shell job: the first request to the daemon costs ~25 ms of
   * the agent's start-up (Deno loads its HTTP client), and a container job, `start` and `serve`
   * sweep everything anyway. @default false: always asks Docker
   */
  readonly dockerOnlyAfterDeadJobs?: boolean;
}

/**
 * Removes what jobs of a crashed agent left behind (containers, networks, host temp dirs of
 * owners that are no longer alive, and the processes, cgroups and env files of their shell
 * jobs). Every agent that runs jobs calls it once at start; it gives up quietly after a few
 * seconds when Docker does not answer.
 */
export async function cleanUpAfterCrashedAgents(
  logger: Logger,
  options: CleanUpOptions = {},
): Promise<void> {
  try {
    if (!options.dockerOnlyAfterDeadJobs || await hasLeftoverHostDirs()) {
      const { containers, networks } = await removeLeftovers({ logger });
      if (containers + networks > 0) {
        logger.info(
          `Removed ${containers} container(s) and ${networks} network(s) left by earlier jobs`,
        );
      }
    }
    await removeEmptyLeftoverCgroups(logger);
  } catch (error) {
    logger.warn(`Cannot remove what earlier jobs left behind: ${errorMessage(error)}`);
  }
}
