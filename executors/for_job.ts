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
import { createDockerExecutor } from "./docker.ts";
import { removeLeftovers } from "./docker_leftovers.ts";

/**
 * Builds the executor that `setup.request.executor` names.
 *
 * @throws {JobConstructionError} for an unknown executor or a container job without containers.
 */
export function createExecutor(setup: ExecutorSetup): Executor {
  const { request, sink, logger } = setup;
  switch (request.executor) {
    case "shell":
      return createShellExecutor({
        request,
        sink,
        logger,
        selfHosted: setup.selfHosted ?? false,
        baseEnv: setup.shellEnv,
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
      });
    default:
      throw new JobConstructionError("unknown executor type");
  }
}

/**
 * Removes what jobs of a crashed agent left behind (containers, networks, host temp dirs of
 * owners that are no longer alive). Every agent that runs jobs calls it once at start; it
 * gives up quietly after a few seconds when Docker does not answer.
 */
export async function cleanUpAfterCrashedAgents(logger: Logger): Promise<void> {
  try {
    const { containers, networks } = await removeLeftovers({ logger });
    if (containers + networks > 0) {
      logger.info(
        `Removed ${containers} container(s) and ${networks} network(s) left by earlier jobs`,
      );
    }
  } catch (error) {
    logger.warn(`Cannot remove what earlier jobs left behind: ${errorMessage(error)}`);
  }
}
