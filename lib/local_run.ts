/**
 * `agent run JOB.yaml`: not implemented yet.
 *
 * @module
 */

/** Options of {@linkcode runJobFile}. */
export interface RunJobFileOptions {
  readonly path: string;
  readonly logFile?: string;
}

/** Runs one job file; resolves with the exit code (0 passed, 1 failed, 130 stopped, 2 bad input). */
export function runJobFile(_options: RunJobFileOptions): Promise<number> {
  return Promise.resolve(1);
}
