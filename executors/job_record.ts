/**
 * What a shell job leaves on the host, written down before its shell starts so that another
 * agent can remove it when this one dies (`kill -9`, OOM, reboot of the service): the job's
 * cgroup, its process tag and its env files, and without a cgroup its processes as last seen and
 * the mark file they all hold open. The record lives in the job's host directory,
 * whose owner file the agent keeps locked while the job lives (docker_leftovers.ts); an agent
 * that finds the lock free at start calls {@linkcode removeRecordedJob} (DECISIONS.md 23).
 *
 * @module
 */

import type { Logger } from "../lib/util/agent_log.ts";
import { errorMessage } from "../lib/util/errors.ts";
import { exists } from "../lib/util/exists.ts";
import { emptyCgroup, type JobCgroupRecord, removeCgroupDirs } from "./job_cgroup.ts";
import { killIdentifiedProcesses, killProcessTree, type ProcessId } from "./process_tree.ts";

/** The record's file name inside the job's host directory. */
const RECORD_FILE = "job.json";

/** What a shell job leaves on the host. */
export interface JobRecord {
  readonly jobId: string;
  /** The job's cgroup, if it has one. */
  readonly cgroup?: JobCgroupRecord;
  /** `NAME=VALUE` in the environment of the job's processes. */
  readonly processTag: string;
  /** Files outside the host directory that hold the job's secrets. */
  readonly files: readonly string[];
  /** Without a cgroup: the job's processes as last seen (they may have dropped the tag). */
  readonly processes?: readonly ProcessId[];
  /** Without a cgroup: the file every process of the job holds open (process_tree.ts). */
  readonly markFile?: string;
}

/** Writes (or rewrites) the record of the job whose host directory is `dir`. */
export function writeJobRecord(dir: string, record: JobRecord): void {
  // Synchronous: two calls on the job's own local directory, written before its shell starts.
  const path = `${dir}/${RECORD_FILE}`;
  Deno.writeTextFileSync(`${path}.new`, JSON.stringify(record), { mode: 0o600 });
  Deno.renameSync(`${path}.new`, path);
}

async function readJobRecord(dir: string): Promise<JobRecord | undefined> {
  try {
    const value = JSON.parse(await Deno.readTextFile(`${dir}/${RECORD_FILE}`));
    if (typeof value?.processTag !== "string" || !Array.isArray(value?.files)) return undefined;
    return value as JobRecord;
  } catch {
    return undefined;
  }
}

/**
 * Removes the processes, cgroup and files of the dead agent's job recorded in `dir` (its owner
 * lock is free), a line in the agent log for each. The directory itself is left to the caller.
 */
export async function removeRecordedJob(dir: string, logger: Logger): Promise<void> {
  const record = await readJobRecord(dir);
  if (!record) return;
  const job = `[job=${record.jobId}]`;
  if (record.cgroup) {
    const pids = new Set<number>();
    for (const d of record.cgroup.dirs) {
      try {
        for (const line of (await Deno.readTextFile(`${d}/cgroup.procs`)).split("\n")) {
          if (line) pids.add(Number(line));
        }
      } catch {
        // gone
      }
    }
    if (pids.size > 0) {
      const empty = await emptyCgroup(record.cgroup);
      if (empty) {
        logger.info(`${job} Killed ${pids.size} leftover process(es) of a dead agent's job`);
      } else logger.warn(`${job} Cannot kill every leftover process in ${record.cgroup.dirs[0]}`);
    }
    try {
      let existed = false;
      for (const d of record.cgroup.dirs) {
        existed ||= await exists(d);
      }
      await removeCgroupDirs(record.cgroup.dirs);
      if (existed) {
        logger.info(`${job} Removed the leftover cgroup ${record.cgroup.dirs.join(", ")}`);
      }
    } catch (error) {
      logger.warn(`${job} ${errorMessage(error)}`);
    }
  }
  if (!record.cgroup) {
    // Without a cgroup: the processes last seen (orphans re-parented to init when the agent
    // died), their descendants, and what still carries the job's tag.
    const killed = await killIdentifiedProcesses(record.processes ?? []) +
      await killProcessTree({ rootPid: -1, tag: record.processTag, markFile: record.markFile });
    if (killed > 0) {
      logger.info(`${job} Killed ${killed} leftover process(es) of a dead agent's job`);
    }
  }
  for (const file of record.files) {
    try {
      await Deno.remove(file);
      logger.info(`${job} Removed leftover file ${file}`);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        logger.warn(`${job} Cannot remove leftover file ${file}: ${errorMessage(error)}`);
      }
    }
  }
}
