/**
 * The metrics interface the job engine and executors report through (SEMAPHORE_COMPAT.md §7.9).
 * `agent serve` passes a StatsD client; everything else passes nothing.
 *
 * @module
 */

/** Receives gauge values; implementations must never throw. */
export interface Metrics {
  /** Records a gauge, e.g. `gauge("compose.docker.pull.rate", 1, ["semaphoreci/android"])`. */
  gauge(name: string, value: number, tags: readonly string[]): void;
}
