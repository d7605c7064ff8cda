/**
 * Timers and waiting: {@linkcode after} and {@linkcode every} (cancellable timers), an abortable
 * {@linkcode delay}, and the random, jittered durations the self-hosted protocol uses between
 * syncs and log pushes (SEMAPHORE_COMPAT.md §8.3, §8.7).
 *
 * Why not `setTimeout`: in Deno 2.9 the global `setTimeout` (and `setInterval`) is Node's, and
 * its first call loads Deno's Node timers and what they import, some two dozen modules: 12 to
 * 25 ms of one CPU here (`deno run -L debug` lists them), which `agent run` would pay on its way
 * to a job's first command. `AbortSignal.timeout` runs on Deno's own timers and costs nothing
 * to start. Its timer keeps the process alive while the signal has a listener, as a pending
 * `setTimeout` does; a cancelled timer removes its listener, and its timer then holds nothing
 * (the closure goes, the event loop may end). A wait longer than {@linkcode MAX_DELAY_MS},
 * which the timer would take as none, is a chain of such waits.
 *
 * The code `agent run` of a job loads (the engine, the executors, `lib/util/`, `lib/reporting/`)
 * uses these; `tests/compile_test.ts` checks it. The two timers that must not keep the process
 * alive (`Deno.unrefTimer`: the HTTP listener's watchdog, the metrics heartbeat) are
 * `setInterval`s.
 *
 * @module
 */

/** A timer from {@linkcode after} or {@linkcode every}. */
export interface Timer {
  /** Stops it: its function is not called any more. Idempotent. */
  cancel(): void;
}

/**
 * The longest wait: 2^31 - 1 ms (about 24.8 days), what one timer holds (a longer one fires at
 * once). {@linkcode after} chains waits beyond it; {@linkcode delay} clamps to it, and so does
 * the hub client to a `next_sync_after` it is given.
 */
export const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * Calls `fn` once, `ms` milliseconds from now: 0 for a negative `ms` or NaN, never for
 * `Infinity`.
 */
export function after(ms: number, fn: () => void): Timer {
  if (ms === Infinity) return { cancel() {} };
  const due = performance.now() + (ms > 0 ? ms : 0);
  let signal: AbortSignal | undefined;
  const fire = () => {
    signal = undefined;
    if (performance.now() < due) return wait();
    fn();
  };
  const wait = () => {
    const left = Math.ceil(due - performance.now());
    signal = AbortSignal.timeout(Math.min(MAX_DELAY_MS, Math.max(0, left)));
    signal.addEventListener("abort", fire, { once: true });
  };
  wait();
  return {
    cancel() {
      signal?.removeEventListener("abort", fire);
      signal = undefined;
    },
  };
}

/** Calls `fn` every `ms` milliseconds (at least 1), the first time `ms` from now. */
export function every(ms: number, fn: () => void): Timer {
  const period = Number.isFinite(ms) && ms >= 1 ? ms : 1;
  let current: Timer;
  // The next call is due before this one runs, so `fn` may cancel it.
  const next = () => {
    current = after(period, () => {
      next();
      fn();
    });
  };
  next();
  return { cancel: () => current.cancel() };
}

/** A random whole number of milliseconds in `[min, max)` (`min` when the range is empty). */
export function randomBetween(range: readonly [number, number]): number {
  const [min, max] = range;
  if (max <= min) return min;
  return min + Math.floor(Math.random() * (max - min));
}

/**
 * Resolves after `ms` milliseconds (at most {@linkcode MAX_DELAY_MS}), or as soon as `signal`
 * aborts (it then resolves too: callers check the signal). The timer is always cancelled.
 */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      timer.cancel();
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = after(Math.min(Math.max(0, ms), MAX_DELAY_MS), done);
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
