/**
 * The opt-in job limits (`--job-memory-limit`, `--job-cpu-limit`, `--job-pids-limit`, also
 * config keys and `SEMAPHORE_AGENT_JOB_*_LIMIT` variables for `agent start`): parsed once, the
 * same way in every mode (DECISIONS.md 23).
 *
 * @module
 */

import type { JobLimits } from "./executor.ts";

const UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
};

/**
 * A memory size: bytes, or a number with a binary unit (`512M`, `2G`, `1.5GiB`; `MB` and `GB`
 * mean MiB and GiB as in Docker). `undefined` when it is not one or below 1 MiB.
 */
export function parseMemorySize(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(text);
  if (!match) return undefined;
  const unit = UNITS[match[2].toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.floor(Number(match[1]) * unit);
  return bytes >= 1024 ** 2 ? bytes : undefined;
}

/** The three limits as given (flag, variable or config value); empty means no limit. */
export interface JobLimitTexts {
  readonly memory?: string;
  readonly cpu?: string;
  readonly pids?: string;
}

/**
 * Parses the limits; the error message names the option (`name(key)` gives how it is spelled
 * in the mode, e.g. `--job-memory-limit`).
 *
 * @throws {Error} `<option>: '<value>' is not ...` for a value that is not a limit.
 */
export function parseJobLimits(
  texts: JobLimitTexts,
  name: (key: "job-memory-limit" | "job-cpu-limit" | "job-pids-limit") => string = (key) =>
    `--${key}`,
): JobLimits {
  const limits: { memoryBytes?: number; cpus?: number; pids?: number } = {};
  const memory = texts.memory?.trim();
  if (memory) {
    const bytes = parseMemorySize(memory);
    if (bytes === undefined) {
      throw new Error(
        `${
          name("job-memory-limit")
        }: '${memory}' is not a memory size of at least 1 MiB (e.g. 512M, 2G)`,
      );
    }
    limits.memoryBytes = bytes;
  }
  const cpu = texts.cpu?.trim();
  if (cpu) {
    const cpus = /^\d+(\.\d+)?$/.test(cpu) ? Number(cpu) : NaN;
    if (!(cpus >= 0.01)) {
      throw new Error(`${name("job-cpu-limit")}: '${cpu}' is not a number of CPUs (e.g. 1.5)`);
    }
    limits.cpus = cpus;
  }
  const pids = texts.pids?.trim();
  if (pids) {
    const count = /^\d+$/.test(pids) ? Number(pids) : NaN;
    if (!(count >= 1)) {
      throw new Error(`${name("job-pids-limit")}: '${pids}' is not a positive number of processes`);
    }
    limits.pids = count;
  }
  return limits;
}
