/**
 * Waiting: an abortable delay and the random, jittered durations the self-hosted protocol uses
 * between syncs and log pushes (SEMAPHORE_COMPAT.md §8.3, §8.7).
 *
 * @module
 */

/** A random whole number of milliseconds in `[min, max)` (`min` when the range is empty). */
export function randomBetween(range: readonly [number, number]): number {
  const [min, max] = range;
  if (max <= min) return min;
  return min + Math.floor(Math.random() * (max - min));
}

/**
 * The longest wait a timer holds: 2^31 - 1 ms (about 24.8 days). A longer one fires at once
 * (with a warning), so {@linkcode delay} clamps to it.
 */
export const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * Resolves after `ms` milliseconds (at most {@linkcode MAX_DELAY_MS}), or as soon as `signal` aborts (it then resolves too: callers
 * check the signal). The timer is always cleared.
 */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.min(Math.max(0, ms), MAX_DELAY_MS));
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Formats milliseconds as Go's `time.Duration.String()` does (`500ms`, `4.123s`, `1m0s`). */
export function formatGoDuration(ms: number): string {
  const total = Math.round(ms);
  if (total === 0) return "0s";
  if (total < 1000) return `${total}ms`;
  const hours = Math.floor(total / 3_600_000);
  const minutes = Math.floor((total % 3_600_000) / 60_000);
  const millis = total % 60_000;
  const seconds = `${Math.floor(millis / 1000)}${
    millis % 1000 ? `.${String(millis % 1000).padStart(3, "0").replace(/0+$/, "")}` : ""
  }s`;
  if (hours > 0) return `${hours}h${minutes}m${seconds}`;
  if (minutes > 0) return `${minutes}m${seconds}`;
  return seconds;
}
