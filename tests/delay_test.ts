import assert from "node:assert/strict";
import {
  after,
  delay,
  every,
  formatGoDuration,
  randomBetween,
  TIMER_SEGMENT_MS,
} from "../lib/util/delay.ts";
import { FakeTime } from "./support/fake_time.ts";

Deno.test("formatGoDuration() formats like Go's time.Duration", () => {
  assert.equal(formatGoDuration(0), "0s");
  assert.equal(formatGoDuration(500), "500ms");
  assert.equal(formatGoDuration(1000), "1s");
  assert.equal(formatGoDuration(4123), "4.123s");
  assert.equal(formatGoDuration(3500), "3.5s");
  assert.equal(formatGoDuration(60_000), "1m0s");
  assert.equal(formatGoDuration(600_000), "10m0s");
  assert.equal(formatGoDuration(61_500), "1m1.5s");
  assert.equal(formatGoDuration(3_600_000), "1h0m0s");
});

Deno.test("randomBetween() stays in [min, max)", () => {
  for (let i = 0; i < 1000; i++) {
    const value = randomBetween([3000, 6000]);
    assert.ok(value >= 3000 && value < 6000 && Number.isInteger(value));
  }
  assert.equal(randomBetween([5, 5]), 5);
});

Deno.test("delay() ends early when its signal aborts", async () => {
  const abort = new AbortController();
  const started = performance.now();
  const waiting = delay(60_000, abort.signal);
  abort.abort();
  await waiting;
  assert.ok(performance.now() - started < 1000);
  await delay(0, abort.signal);
});

Deno.test("delay() waits at most 2^31 - 1 ms instead of firing at once for longer waits", async () => {
  const abort = new AbortController();
  let fired = false;
  const long = delay(2 ** 31, abort.signal).then(() => fired = true);
  // A timer of 2^31 ms or more overflows to 1 ms: it would have fired during this wait.
  await delay(50);
  assert.equal(fired, false);
  abort.abort();
  await long;
});

Deno.test("after() calls its function once, when its time has come, also past one segment", () => {
  using time = new FakeTime();
  const calls: number[] = [];
  after(2.5 * TIMER_SEGMENT_MS, () => calls.push(time.now));
  time.tick(2.5 * TIMER_SEGMENT_MS - 1);
  assert.deepEqual(calls, []);
  time.tick(1);
  assert.deepEqual(calls, [1_000 + 2.5 * TIMER_SEGMENT_MS]);
  time.tick(10 * TIMER_SEGMENT_MS);
  assert.equal(calls.length, 1);
});

Deno.test("after() cancelled, even between its segments, never calls its function", () => {
  using time = new FakeTime();
  let called = 0;
  const soon = after(50, () => called++);
  soon.cancel();
  const later = after(3 * TIMER_SEGMENT_MS, () => called++);
  time.tick(1.5 * TIMER_SEGMENT_MS);
  later.cancel();
  later.cancel();
  time.tick(10 * TIMER_SEGMENT_MS);
  assert.equal(called, 0);
});

Deno.test("after() takes a negative or non-finite wait as none", () => {
  using time = new FakeTime();
  let called = 0;
  after(-5, () => called++);
  after(Number.NaN, () => called++);
  time.tick(0);
  assert.equal(called, 2);
});

Deno.test("every() calls its function each period until cancelled", () => {
  using time = new FakeTime();
  const calls: number[] = [];
  const timer = every(200, () => calls.push(time.now - 1_000));
  time.tick(1_000);
  assert.deepEqual(calls, [200, 400, 600, 800, 1_000]);
  timer.cancel();
  time.tick(1_000);
  assert.equal(calls.length, 5);
});

Deno.test("after() and every() run on the real clock too", async () => {
  const started = performance.now();
  await new Promise<void>((resolve) => after(20, resolve));
  assert.ok(performance.now() - started >= 19);
  let ticks = 0;
  await new Promise<void>((resolve) => {
    const timer = every(5, () => {
      if (++ticks === 3) {
        timer.cancel();
        resolve();
      }
    });
  });
  assert.equal(ticks, 3);
});
