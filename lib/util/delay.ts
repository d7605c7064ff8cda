/**
 * Timers and waiting: {@linkcode after} and {@linkcode every} (cancellable timers), an abortable
 * {@linkcode delay}, and the random, jittered durations the self-hosted protocol uses between
 * syncs and log pushes (SEMAPHORE_COMPAT.md §8.3, §8.7).
 *
 * Why not `setTimeout`: in Deno 2.9 the global `setTimeout` (and `setInterval`) is Node's, and
 * its first call loads Deno's Node timers and what they import, some two dozen modules: 12 to
 * 25 ms of one CPU here (`deno run -L debug` lists them), which `agent run` would pay on its way
 * to a job's first command. `AbortSignal.timeout` runs on Deno's own timers and costs nothing
 * to start. Its timer cannot be cleared, so one waits at most {@linkcode TIMER_SEGMENT_MS} and a
 * longer wait is a chain of them: a cancelled timer does nothing when it fires, and keeps the
 * event loop alive for at most that long (as a pending `setTimeout` would for its whole wait).
 * The code `agent run` of a job loads (the engine, the executors, `lib/util/`, `lib/reporting/`)
 * uses these; `tests/compile_test.ts` checks it. A timer that must not keep the process alive
 * (`Deno.unrefTimer`) is still a `setTimeout`, in a mode's own code.
 *
 * @module
 */

/** A timer from {@linkcode after} or {@linkcode every}. */
export interface Timer {
  /** Stops it: its function is not called any more. Idempotent. */
  cancel(): void;
}

/** The longest single wait of a timer (see the module comment). */
export const TIMER_SEGMENT_MS = 1000;

/** Calls `fn` once, `ms` milliseconds from now (0 for a negative or non-finite `ms`). */
export function after(ms: number, fn: () => void): Timer {
  let cancelled = false;
  const due = performance.now() + (Number.isFinite(ms) && ms > 0 ? ms : 0);
  const wait = () => {
    const left = Math.ceil(due - performance.now());
    const signal = AbortSignal.timeout(Math.min(TIMER_SEGMENT_MS, Math.max(0, left)));
    signal.addEventListener("abort", () => {
      if (cancelled) return;
      if (performance.now() < due) return wait();
      cancelled = true;
      fn();
    }, { once: true });
  };
  wait();
  return {
    cancel() {
      cancelled = true;
    },
  };
}

/** Calls `fn` every `ms` milliseconds (at least 1), the first time `ms` from now. */
export function every(ms: number, fn: () => void): Timer {
  const period = Number.isFinite(ms) && ms >= 1 ? ms : 1;
  let cancelled = false;
  let current: Timer | undefined;
  const next = () => {
    current = after(period, () => {
      if (cancelled) return;
      next();
      fn();
    });
  };
  next();
  return {
    cancel() {
      cancelled = true;
      current?.cancel();
    },
  };
}

/** A random whole number of milliseconds in `[min, max)` (`min` when the range is empty). */
export function randomBetween(range: readonly [number, number]): number {
  const [min, max] = range;
  if (max <= min) return min;
  return min + Math.floor(Math.random() * (max - min));
}

/**
 * The longest wait: 2^31 - 1 ms (about 24.8 days), what a `setTimeout` holds. {@linkcode delay}
 * clamps to it, and so does the hub client to a `next_sync_after` it is given.
 */
export const MAX_DELAY_MS = 2 ** 31 - 1;

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
