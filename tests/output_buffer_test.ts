import assert from "node:assert/strict";
import { OutputBuffer } from "../lib/engine/output_buffer.ts";
import { INVALID_BYTE } from "../lib/engine/events.ts";
import { FakeTime } from "./support/fake_time.ts";

const bytes = (text: string) => new TextEncoder().encode(text);

function collect() {
  const chunks: string[] = [];
  let notify: () => void = () => {};
  const buffer = new OutputBuffer({
    onOutput: (text) => {
      chunks.push(text);
      notify();
    },
  });
  const next = () => new Promise<void>((resolve) => notify = resolve);
  return { buffer, chunks, next };
}

Deno.test("OutputBuffer keeps short output until close when it arrives at once", () => {
  const { buffer, chunks } = collect();
  buffer.append(bytes("hello"));
  buffer.append(bytes(" world"));
  assert.deepEqual(chunks, []);
  buffer.close();
  assert.deepEqual(chunks, ["hello world"]);
});

Deno.test("OutputBuffer.append() keeps no reference to the caller's bytes, which it may reuse", () => {
  const { buffer, chunks } = collect();
  // The shell session reads the terminal into one reused buffer.
  const reused = new Uint8Array(200);
  reused.set(bytes("short"));
  buffer.append(reused.subarray(0, 5));
  const split = new Uint8Array([...bytes("b".repeat(120)), 0xe2, 0x82]);
  reused.set(split);
  buffer.append(reused.subarray(0, split.length));
  reused.set(new Uint8Array([0xac, 0x21]));
  buffer.append(reused.subarray(0, 2));
  reused.fill(0x58);
  buffer.close();
  assert.equal(chunks.join(""), "short" + "b".repeat(120) + "€!");
});

Deno.test("OutputBuffer emits at once when 100 bytes or more wait", () => {
  const { buffer, chunks } = collect();
  buffer.append(bytes("a".repeat(150)));
  assert.deepEqual(chunks, ["a".repeat(150)]);
  buffer.close();
  assert.deepEqual(chunks, ["a".repeat(150)]);
});

Deno.test("OutputBuffer flushes trickling output after 100 ms of quiet", async () => {
  const { buffer, chunks, next } = collect();
  buffer.append(bytes("line 1\n"));
  await next();
  assert.deepEqual(chunks, ["line 1\n"]);
  buffer.append(bytes("line 2\n"));
  await next();
  assert.deepEqual(chunks, ["line 1\n", "line 2\n"]);
  buffer.close();
});

Deno.test("OutputBuffer does not split CRLF and turns it into LF", () => {
  const { buffer, chunks } = collect();
  buffer.append(bytes("a".repeat(99) + "\r"));
  buffer.append(bytes("\nb"));
  buffer.close();
  assert.equal(chunks.join(""), "a".repeat(99) + "\nb");
  assert.ok(chunks.every((c) => !c.includes("\r")));
});

Deno.test("OutputBuffer keeps a lone CR", () => {
  const { buffer, chunks } = collect();
  buffer.append(bytes("10%\r20%\r"));
  buffer.close();
  assert.deepEqual(chunks, ["10%\r20%\r"]);
});

Deno.test("OutputBuffer does not split UTF-8 sequences across chunks", () => {
  const { buffer, chunks } = collect();
  const text = "é".repeat(60) + "日本語";
  const all = bytes(text);
  for (let i = 0; i < all.length; i += 7) buffer.append(all.slice(i, i + 7));
  buffer.close();
  assert.equal(chunks.join(""), text);
  assert.ok(chunks.every((c) => !c.includes(INVALID_BYTE) && !c.includes("\ufffd")));
});

Deno.test("OutputBuffer keeps a UTF-8 sequence split across a pause whole", () => {
  // DECISIONS.md 17: the age flush after a pause must not emit the first bytes of a character
  // whose last byte comes in the next terminal read (it would show as U+FFFD).
  using time = new FakeTime();
  const { buffer, chunks } = collect();
  buffer.append(new Uint8Array([0x61, 0xe2, 0x9c]));
  time.tick(500);
  assert.deepEqual(chunks, ["a"]);
  buffer.append(new Uint8Array([0x93, ...bytes(" done\n")]));
  time.tick(100);
  assert.deepEqual(chunks, ["a", "\u2713 done\n"]);
  buffer.close();
  assert.deepEqual(chunks, ["a", "\u2713 done\n"]);
});

Deno.test("OutputBuffer emits invalid bytes one marker each on close", () => {
  const { buffer, chunks } = collect();
  buffer.append(new Uint8Array([0x96, 0x96, 0x61, 0xe3, 0x81]));
  buffer.close();
  assert.deepEqual(chunks, [`${INVALID_BYTE}${INVALID_BYTE}a${INVALID_BYTE}${INVALID_BYTE}`]);
});

Deno.test("OutputBuffer ignores appends after close and flush() empties it", () => {
  const { buffer, chunks } = collect();
  buffer.append(bytes("x"));
  buffer.flush();
  assert.deepEqual(chunks, ["x"]);
  buffer.close();
  buffer.append(bytes("late"));
  buffer.close();
  assert.deepEqual(chunks, ["x"]);
});

Deno.test("OutputBuffer rebuilds 10 MB exactly", () => {
  const { buffer, chunks } = collect();
  const line = "0123456789".repeat(9) + "\r\n";
  const piece = bytes(line.repeat(40));
  const n = Math.ceil(10_000_000 / piece.length);
  for (let i = 0; i < n; i++) buffer.append(piece);
  buffer.close();
  const out = chunks.join("");
  assert.equal(out.length, n * 40 * 91);
  assert.equal(out, (line.replace("\r\n", "\n")).repeat(n * 40));
});

Deno.test("OutputBuffer shows output that trickles without waiting for a pause", async () => {
  const { buffer, chunks, next } = collect();
  let appended = 0;
  const timer = setInterval(() => {
    buffer.append(bytes("."));
    appended++;
  }, 20);
  const first = next();
  buffer.append(bytes("."));
  appended++;
  await first;
  clearInterval(timer);
  // One byte every 20 ms never leaves a 100 ms pause, yet the first dots are out long before
  // 100 bytes have gathered.
  assert.ok(appended < 50, `flushed after ${appended} appends`);
  assert.match(chunks[0], /^\.+$/);
  buffer.close();
  assert.equal(chunks.join(""), ".".repeat(appended));
});

Deno.test("OutputBuffer gives the same chunks when a few waiting bytes meet a large read", () => {
  const cases: [string | Uint8Array, string | Uint8Array, string[]][] = [
    ["ab", "c".repeat(200), [`ab${"c".repeat(200)}`]],
    ["a\r\nb", `\r\n${"c".repeat(200)}`, [`a\nb\n${"c".repeat(200)}`]],
    ["ab\r", `\n${"c".repeat(200)}`, [`ab\n${"c".repeat(200)}`]], // CR waits as bytes
    [new Uint8Array([0x61, 0xc3]), new Uint8Array([0xa9, ...bytes("c".repeat(200))]), [
      `a\u00e9${"c".repeat(200)}`,
    ]],
    ["ab", new Uint8Array([...bytes("c".repeat(200)), 0xe2, 0x82]), [`ab${"c".repeat(200)}`]],
    [new Uint8Array([0x61, 0x80]), "c".repeat(200), [`a${INVALID_BYTE}${"c".repeat(200)}`]],
  ];
  for (const [first, second, expected] of cases) {
    const { buffer, chunks } = collect();
    buffer.append(typeof first === "string" ? bytes(first) : first);
    buffer.append(typeof second === "string" ? bytes(second) : second);
    assert.deepEqual(chunks, expected);
    buffer.close();
  }
});
