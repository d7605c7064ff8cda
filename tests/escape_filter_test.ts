import assert from "node:assert/strict";
import { EscapeFilter, stripEscapes } from "../lib/run/escape_filter.ts";

Deno.test("stripEscapes() keeps colours and text attributes (SGR)", () => {
  const text = "a\x1b[1;31mred\x1b[0m b\x1b[38;5;208mX\x1b[m\x1b[38:2::1:2:3mY\x1b[4m";
  assert.equal(stripEscapes(text), text);
});

Deno.test("stripEscapes() removes OSC strings: clipboard, title, hyperlinks", () => {
  assert.equal(stripEscapes("x\x1b]52;c;ZXZpbA==\x07y\x1b]52;c;ZXZpbA==\x1b\\z"), "xyz");
  assert.equal(stripEscapes("\x1b]0;pwned\x07\x1b]2;title\x1b\\ok"), "ok");
  assert.equal(stripEscapes("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\"), "link");
  assert.equal(stripEscapes("\x1b]4;1;rgb:ff/00/00\x07\x1b]104\x07."), ".");
});

Deno.test("stripEscapes() removes DCS, SOS, PM and APC strings", () => {
  assert.equal(
    stripEscapes("a\x1bPq#0;2;0;0;0\x1b\\b\x1b_apc\x1b\\c\x1b^pm\x1b\\d\x1bXsos\x1b\\e"),
    "abcde",
  );
});

Deno.test("stripEscapes() removes every CSI that is not SGR", () => {
  assert.equal(
    stripEscapes(
      "\x1b[2J\x1b[H\x1b[3;4Hx\x1b[K\x1b[6n\x1b[?1049h\x1b[?25l\x1b[1;2r\x1b[5A\x1b[21t" +
        "\x1b[?1m\x1b[>4;1m\x1b[1 q\x1b[3J\x1b[0c.",
    ),
    "x.",
  );
});

Deno.test("stripEscapes() removes other escape sequences (reset, cursor save, charsets)", () => {
  assert.equal(stripEscapes("\x1bc\x1b7\x1b8\x1b(0q\x1b(B\x1bM\x1b#8\x1b=\x1b>!"), "q!");
});

Deno.test("stripEscapes() keeps tab, newline, CR and backspace and drops other controls", () => {
  assert.equal(
    stripEscapes("a\x07b\x00c\x0ed\x0fe\x7ff\tg\bh\ri\n\x05"),
    "abcdef\tg\bh\ri\n",
  );
});

Deno.test("stripEscapes() reads C1 controls as their 7-bit sequences", () => {
  assert.equal(
    stripEscapes("\u009b2J\u009d0;title\u0007x\u0085y\u009b31mz\u0090dcs\u009c."),
    "xy\x1b[31mz.",
  );
});

Deno.test("stripEscapes() ends a sequence at CAN, SUB, a new ESC or a stray character", () => {
  assert.equal(stripEscapes("\x1b[31\x18x\x1b]0;t\x1ay"), "xy");
  assert.equal(stripEscapes("\x1b]0;title\x1b[31mred"), "\x1b[31mred");
  assert.equal(stripEscapes("\x1b[1;\u00e9x"), "\u00e9x");
  assert.equal(stripEscapes("\x1b\u00e9"), "\u00e9");
});

Deno.test("stripEscapes() drops an SGR with more parameters than any real one", () => {
  assert.equal(stripEscapes(`\x1b[${"1;".repeat(200)}mx`), "x");
});

Deno.test("EscapeFilter.push() follows sequences split across chunks", () => {
  const filter = new EscapeFilter();
  const chunks = ["a\x1b", "]52;c;", "QUFB", "\x07b\x1b[3", "1mc\x1b[", "2Jd\x1b", "\\e"];
  assert.deepEqual(chunks.map((chunk) => filter.push(chunk)), [
    "a",
    "",
    "",
    "b",
    "\x1b[31mc",
    "d",
    "e",
  ]);
  assert.equal(filter.styled, true);
});

Deno.test("EscapeFilter.reset() forgets an unfinished sequence and past colours", () => {
  const filter = new EscapeFilter();
  assert.equal(filter.push("\x1b[1m\x1b]0;ti"), "\x1b[1m");
  filter.reset();
  assert.equal(filter.styled, false);
  assert.equal(filter.push("tle"), "tle");
});
