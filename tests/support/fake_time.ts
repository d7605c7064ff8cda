/**
 * A disposable fake clock for tests (STYLE.md §1.8, §5.9): while it lives, `setTimeout`,
 * `clearTimeout`, `AbortSignal.timeout` (on which the agent's own timers run: lib/util/delay.ts)
 * and `performance.now` run on virtual time that only {@linkcode FakeTime.tick} moves, so a
 * test steps through a timer-driven module without sleeping.
 *
 * @module
 */

interface FakeTimer {
  readonly at: number;
  readonly order: number;
  readonly fn: () => void;
}

/** Replaces the timer globals until disposed (`using time = new FakeTime()`). */
export class FakeTime implements Disposable {
  readonly #setTimeout = globalThis.setTimeout;
  readonly #clearTimeout = globalThis.clearTimeout;
  readonly #abortTimeout = AbortSignal.timeout;
  readonly #timers = new Map<number, FakeTimer>();
  #now: number;
  #nextId = 1;

  constructor(start = 1_000) {
    this.#now = start;
    globalThis.setTimeout = ((fn: () => void, ms = 0) => {
      const id = this.#nextId++;
      this.#timers.set(id, { at: this.#now + Math.max(0, ms), order: id, fn });
      return id;
    }) as unknown as typeof setTimeout;
    globalThis.clearTimeout = ((id?: number) => {
      if (id !== undefined) this.#timers.delete(id);
    }) as unknown as typeof clearTimeout;
    AbortSignal.timeout = (ms: number) => {
      const controller = new AbortController();
      globalThis.setTimeout(
        () => controller.abort(new DOMException("The operation timed out", "TimeoutError")),
        ms,
      );
      return controller.signal;
    };
    performance.now = () => this.#now;
  }

  /** Virtual milliseconds since the clock's origin. */
  get now(): number {
    return this.#now;
  }

  /** Moves time on by `ms`, running every timer that falls due, in order. */
  tick(ms: number): void {
    const end = this.#now + ms;
    while (true) {
      let next: [number, FakeTimer] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at > end) continue;
        if (
          !next || entry[1].at < next[1].at || (entry[1].at === next[1].at &&
            entry[1].order < next[1].order)
        ) next = entry;
      }
      if (!next) break;
      this.#timers.delete(next[0]);
      this.#now = next[1].at;
      next[1].fn();
    }
    this.#now = end;
  }

  [Symbol.dispose](): void {
    globalThis.setTimeout = this.#setTimeout;
    globalThis.clearTimeout = this.#clearTimeout;
    AbortSignal.timeout = this.#abortTimeout;
    // The own property hides Performance.prototype.now; removing it restores the real clock.
    delete (performance as { now?: unknown }).now;
  }
}
