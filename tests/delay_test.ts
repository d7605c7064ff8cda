import assert from "node:assert/strict";
import { delay, formatGoDuration, randomBetween } from "../lib/util/delay.ts";

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
