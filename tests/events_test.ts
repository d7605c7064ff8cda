/**
 * Tests of lib/events.ts: every event's exact JSON line (SEMAPHORE_COMPAT.md §6.1) and the Go
 * `encoding/json` details (HTML and line-separator escapes, control characters, one `\ufffd`
 * per invalid UTF-8 byte, a real U+FFFD written raw).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  decodeUtf8PerByte,
  encodeEvent,
  goJsonString,
  INVALID_BYTE,
  type JobEvent,
  unixSeconds,
} from "../lib/engine/events.ts";

const T = 1700000000;

function output(text: string): string {
  return encodeEvent({ event: "cmd_output", timestamp: T, output: text });
}

function outputOfBytes(bytes: readonly number[]): string {
  return output(decodeUtf8PerByte(new Uint8Array(bytes)));
}

Deno.test("encodeEvent() writes each event type byte-exact as in §6.1", () => {
  const cases: readonly (readonly [JobEvent, string])[] = [
    [{ event: "job_started", timestamp: T }, '{"event":"job_started","timestamp":1700000000}\n'],
    [
      { event: "cmd_started", timestamp: T, directive: "echo hello" },
      '{"event":"cmd_started","timestamp":1700000000,"directive":"echo hello"}\n',
    ],
    [
      { event: "cmd_output", timestamp: T, output: "hello\n" },
      '{"event":"cmd_output","timestamp":1700000000,"output":"hello\\n"}\n',
    ],
    [
      {
        event: "cmd_finished",
        timestamp: T,
        directive: "echo hello",
        exit_code: 0,
        started_at: T,
        finished_at: T,
      },
      '{"event":"cmd_finished","timestamp":1700000000,"directive":"echo hello","exit_code":0,' +
      '"started_at":1700000000,"finished_at":1700000000}\n',
    ],
    [
      { event: "job_finished", timestamp: T + 1, result: "passed" },
      '{"event":"job_finished","timestamp":1700000001,"result":"passed"}\n',
    ],
  ];
  for (const [event, line] of cases) assert.equal(encodeEvent(event), line);
});

Deno.test("encodeEvent() writes every job result and non-zero exit codes", () => {
  for (const result of ["passed", "failed", "stopped"] as const) {
    assert.equal(
      encodeEvent({ event: "job_finished", timestamp: 5, result }),
      `{"event":"job_finished","timestamp":5,"result":"${result}"}\n`,
    );
  }
  assert.equal(
    encodeEvent({
      event: "cmd_finished",
      timestamp: 2,
      directive: "exit 130",
      exit_code: 130,
      started_at: 1,
      finished_at: 2,
    }),
    '{"event":"cmd_finished","timestamp":2,"directive":"exit 130","exit_code":130,' +
      '"started_at":1,"finished_at":2}\n',
  );
});

Deno.test("encodeEvent() escapes directives in cmd_started and cmd_finished", () => {
  const directive = 'echo "<a & b>" \\ done';
  const escaped = '"echo \\"\\u003ca \\u0026 b\\u003e\\" \\\\ done"';
  assert.equal(
    encodeEvent({ event: "cmd_started", timestamp: T, directive }),
    `{"event":"cmd_started","timestamp":1700000000,"directive":${escaped}}\n`,
  );
  assert.equal(
    encodeEvent({
      event: "cmd_finished",
      timestamp: T,
      directive,
      exit_code: 1,
      started_at: T,
      finished_at: T,
    }),
    `{"event":"cmd_finished","timestamp":1700000000,"directive":${escaped},"exit_code":1,` +
      '"started_at":1700000000,"finished_at":1700000000}\n',
  );
});

Deno.test("goJsonString() escapes < > & U+2028 U+2029 as Go does", () => {
  assert.equal(goJsonString("<>&"), '"\\u003c\\u003e\\u0026"');
  assert.equal(goJsonString("a\u2028b\u2029c"), '"a\\u2028b\\u2029c"');
  assert.equal(goJsonString("x<<y&&z>>"), '"x\\u003c\\u003cy\\u0026\\u0026z\\u003e\\u003e"');
  // Repeated calls must not be affected by the global regex's lastIndex.
  for (let i = 0; i < 3; i++) {
    assert.equal(goJsonString("&"), '"\\u0026"');
    assert.equal(goJsonString("plain"), '"plain"');
  }
});

Deno.test("goJsonString() escapes control characters as Go 1.22+ does", () => {
  assert.equal(goJsonString('"\\'), '"\\"\\\\"');
  assert.equal(goJsonString("\n\r\t"), '"\\n\\r\\t"');
  // Go >= 1.22 writes \b and \f in their short forms, like JSON.stringify.
  assert.equal(goJsonString("\b\f"), '"\\b\\f"');
  assert.equal(goJsonString("\x00\x01\x1b\x1f"), '"\\u0000\\u0001\\u001b\\u001f"');
  // DEL, C1 controls, non-ASCII and astral characters are written raw.
  assert.equal(goJsonString("\x7f\x80\x9f"), '"\x7f\x80\x9f"');
  assert.equal(goJsonString("héllo ✓ 😀"), '"héllo ✓ 😀"');
  assert.equal(goJsonString("/"), '"/"');
});

Deno.test("encodeEvent() writes terminal output with escapes and CR kept", () => {
  assert.equal(
    output("\x1b[32mok\x1b[0m\r\n"),
    '{"event":"cmd_output","timestamp":1700000000,"output":"\\u001b[32mok\\u001b[0m\\r\\n"}\n',
  );
  assert.equal(
    output("hi"),
    '{"event":"cmd_output","timestamp":1700000000,"output":"hi"}\n',
  );
});

Deno.test("decodeUtf8PerByte() gives five \\ufffd for five 0x96 bytes (e2e broken_unicode)", () => {
  assert.equal(
    outputOfBytes([0x96, 0x96, 0x96, 0x96, 0x96]),
    '{"event":"cmd_output","timestamp":1700000000,"output":"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd"}\n',
  );
  assert.equal(
    outputOfBytes([0x61, 0x96, 0x62, 0x96, 0x0a]),
    '{"event":"cmd_output","timestamp":1700000000,"output":"a\\ufffdb\\ufffd\\n"}\n',
  );
});

Deno.test("decodeUtf8PerByte() gives one U+FFFD per byte of a truncated sequence", async (t) => {
  const cases: readonly (readonly [string, readonly number[], string])[] = [
    ["2 of 3 bytes at the end", [0x41, 0xe2, 0x82], "A\\ufffd\\ufffd"],
    ["3 of 4 bytes at the end", [0xf0, 0x9f, 0x98], "\\ufffd\\ufffd\\ufffd"],
    ["1 of 2 bytes at the end", [0xc3], "\\ufffd"],
    ["2 of 3 bytes before ASCII", [0xe2, 0x82, 0x41], "\\ufffd\\ufffdA"],
    ["3 of 4 bytes before a valid char", [0xf0, 0x9f, 0x98, 0xc3, 0xa9], "\\ufffd\\ufffd\\ufffdé"],
    ["lone continuation bytes", [0x80, 0xbf], "\\ufffd\\ufffd"],
    ["overlong 2-byte form", [0xc0, 0xaf], "\\ufffd\\ufffd"],
    ["overlong 3-byte form", [0xe0, 0x80, 0xaf], "\\ufffd\\ufffd\\ufffd"],
    ["UTF-16 surrogate", [0xed, 0xa0, 0x80], "\\ufffd\\ufffd\\ufffd"],
    ["above U+10FFFF", [0xf4, 0x90, 0x80, 0x80], "\\ufffd\\ufffd\\ufffd\\ufffd"],
    ["0xF5 lead byte", [0xf5, 0x80], "\\ufffd\\ufffd"],
    ["0xFF byte", [0xff], "\\ufffd"],
  ];
  for (const [name, bytes, json] of cases) {
    await t.step(name, () => {
      assert.equal(
        outputOfBytes(bytes),
        `{"event":"cmd_output","timestamp":1700000000,"output":"${json}"}\n`,
      );
    });
  }
});

Deno.test("decodeUtf8PerByte() keeps valid sequences at the edges of the valid ranges", () => {
  const bytes = [
    ...[0xc2, 0x80], // U+0080
    ...[0xdf, 0xbf], // U+07FF
    ...[0xe0, 0xa0, 0x80], // U+0800
    ...[0xed, 0x9f, 0xbf], // U+D7FF
    ...[0xee, 0x80, 0x80], // U+E000
    ...[0xf0, 0x90, 0x80, 0x80], // U+10000
    ...[0xf4, 0x8f, 0xbf, 0xbf], // U+10FFFF
  ];
  assert.equal(
    decodeUtf8PerByte(new Uint8Array(bytes)),
    "\u0080\u07ff\u0800\ud7ff\ue000\u{10000}\u{10ffff}",
  );
  assert.equal(
    decodeUtf8PerByte(new Uint8Array([0x96, ...bytes, 0x96])),
    `${INVALID_BYTE}\u0080\u07ff\u0800\ud7ff\ue000\u{10000}\u{10ffff}${INVALID_BYTE}`,
  );
});

Deno.test("decodeUtf8PerByte() keeps a real U+FFFD raw while an invalid byte is escaped", () => {
  const bytes = [0xef, 0xbf, 0xbd, 0x96];
  assert.equal(decodeUtf8PerByte(new Uint8Array(bytes)), `\ufffd${INVALID_BYTE}`);
  assert.equal(
    outputOfBytes(bytes),
    '{"event":"cmd_output","timestamp":1700000000,"output":"\ufffd\\ufffd"}\n',
  );
  assert.equal(
    output("\ufffd"),
    '{"event":"cmd_output","timestamp":1700000000,"output":"\ufffd"}\n',
  );
});

Deno.test("decodeUtf8PerByte() keeps a leading byte order mark as Go does", () => {
  // Go writes U+FEFF raw; a default TextDecoder would drop it.
  assert.equal(decodeUtf8PerByte(new Uint8Array([0xef, 0xbb, 0xbf, 0x41])), "\ufeffA");
  assert.equal(
    decodeUtf8PerByte(new Uint8Array([0x96, 0xef, 0xbb, 0xbf, 0x41])),
    `${INVALID_BYTE}\ufeffA`,
  );
});

Deno.test("goJsonString() escapes characters next to invalid-byte markers", () => {
  assert.equal(
    goJsonString(`<${INVALID_BYTE}"&${INVALID_BYTE}${INVALID_BYTE}\n`),
    '"\\u003c\\ufffd\\"\\u0026\\ufffd\\ufffd\\n"',
  );
  assert.equal(goJsonString(INVALID_BYTE), '"\\ufffd"');
});

Deno.test("decodeUtf8PerByte() decodes valid and empty input unchanged", () => {
  assert.equal(decodeUtf8PerByte(new Uint8Array()), "");
  const text = "plain ASCII, ünïcödé, 日本語, 😀\n";
  assert.equal(decodeUtf8PerByte(new TextEncoder().encode(text)), text);
});

Deno.test("unixSeconds() returns the current time in whole seconds", () => {
  const before = Math.floor(Date.now() / 1000);
  const now = unixSeconds();
  const after = Math.floor(Date.now() / 1000);
  assert.ok(Number.isInteger(now));
  assert.ok(before <= now && now <= after);
});
