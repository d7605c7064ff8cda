import assert from "node:assert/strict";
import {
  after,
  delay,
  every,
  formatGoDuration,
  MAX_DELAY_MS,
  randomBetween,
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

Deno.test("after() calls its function once, when its time has come, also past the longest wait", () => {
  using time = new FakeTime();
  const calls: number[] = [];
  const ms = MAX_DELAY_MS + 2_500; // one timer would take this as none
  after(ms, () => calls.push(time.now));
  time.tick(ms - 1);
  assert.deepEqual(calls, []);
  time.tick(1);
  assert.deepEqual(calls, [1_000 + ms]);
  time.tick(3 * MAX_DELAY_MS);
  assert.equal(calls.length, 1);
});

Deno.test("after() cancelled, even between its waits, never calls its function", () => {
  using time = new FakeTime();
  let called = 0;
  const soon = after(50, () => called++);
  soon.cancel();
  const later = after(2 * MAX_DELAY_MS, () => called++);
  time.tick(MAX_DELAY_MS + 10);
  later.cancel();
  later.cancel();
  time.tick(3 * MAX_DELAY_MS);
  assert.equal(called, 0);
});

Deno.test("after() takes a negative wait or NaN as none, and Infinity as never", () => {
  using time = new FakeTime();
  let called = 0;
  after(-5, () => called++);
  after(Number.NaN, () => called++);
  after(Infinity, () => called += 10);
  time.tick(0);
  assert.equal(called, 2);
  time.tick(10 * MAX_DELAY_MS);
  assert.equal(called, 2);
});

Deno.test("a pending after() keeps the process alive, a cancelled one does not", async () => {
  const module = new URL("../lib/util/delay.ts", import.meta.url).href;
  const run = async (code: string) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", `import { after, delay } from "${module}";\n${code}`],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    // A cancelled wait of ten minutes that held the process would be cut off here.
    const cutOff = AbortSignal.timeout(60_000);
    const kill = () => child.kill("SIGKILL");
    cutOff.addEventListener("abort", kill);
    const output = await child.output();
    cutOff.removeEventListener("abort", kill);
    return { code: output.code, out: new TextDecoder().decode(output.stdout) };
  };
  assert.deepEqual(await run(`after(200, () => console.log("fired"));`), {
    code: 0,
    out: "fired\n",
  });
  assert.deepEqual(
    await run(
      `after(600_000, () => console.log("fired")).cancel();\n` +
        `const abort = new AbortController(); const d = delay(600_000, abort.signal);\n` +
        `abort.abort(); await d; console.log("done");`,
    ),
    { code: 0, out: "done\n" },
  );
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

Deno.test("every() cancelled from its own function calls it no more", () => {
  using time = new FakeTime();
  let calls = 0;
  const timer = every(100, () => {
    if (++calls === 2) timer.cancel();
  });
  time.tick(1_000);
  assert.equal(calls, 2);
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
