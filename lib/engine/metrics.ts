/**
 * The metrics interface the job engine and executors report through: StatsD gauges
 * (SEMAPHORE_COMPAT.md §7.9, `agent serve`) and image pulls (the Prometheus metrics of
 * `--metrics-addr`). Modes pass an implementation; without one nothing is recorded.
 *
 * @module
 */

/** How one image pull of a container job ended. */
export interface ImagePullOutcome {
  readonly seconds: number;
  readonly failed: boolean;
}

/** Receives metric values; implementations must never throw. */
export interface Metrics {
  /** Records a gauge, e.g. `gauge("compose.docker.pull.rate", 1, ["semaphoreci/android"])`. */
  gauge(name: string, value: number, tags: readonly string[]): void;
  /** An image pull step ended (every container job that pulled something). */
  imagePull?(outcome: ImagePullOutcome): void;
}
