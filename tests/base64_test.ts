import assert from "node:assert/strict";
import { decodeBase64, decodeBase64Text, encodeBase64 } from "../lib/util/base64.ts";

Deno.test("decodeBase64() decodes like Go's base64.StdEncoding", async (t) => {
  const text = (s: string) => new TextDecoder().decode(decodeBase64(s));
  await t.step("valid input", () => {
    assert.equal(text(""), "");
    assert.equal(text("aGVsbG8K"), "hello\n");
    assert.equal(text("YQ=="), "a");
    assert.equal(text("YWI="), "ab");
    assert.equal(text("YWJj"), "abc");
    assert.equal(text("YR=="), "a"); // non-zero trailing bits are accepted (not Strict)
    assert.equal(text("Y\nQ\r\n=\n=\r\n"), "a"); // \r and \n are skipped anywhere
    assert.equal(text("\n"), "");
    assert.deepEqual(decodeBase64("+/+/"), new Uint8Array([0xfb, 0xff, 0xbf]));
  });
  await t.step("invalid input, with Go's byte offsets", () => {
    const cases: [string, number][] = [
      ["YQ", 0],
      ["YQ=", 3],
      ["aGVsbG8", 4],
      ["Y===", 1],
      ["====", 0],
      ["=", 0],
      ["YQ=a", 2],
      ["YW=I", 2],
      ["YQ==YQ==", 4],
      ["YQ==\nx", 5],
      ["a b=", 1],
      ["aGVs-G8K", 4], // URL alphabet
      ["aGVs_G8K", 4],
      ["aGVsbG8K\t", 8],
      ["é===", 0],
    ];
    for (const [input, offset] of cases) {
      assert.throws(() => decodeBase64(input), {
        name: "SyntaxError",
        message: `illegal base64 data at input byte ${offset}`,
      }, JSON.stringify(input));
    }
  });
  await t.step("agrees with atob on random valid input", () => {
    let seed = 7;
    for (let round = 0; round < 500; round++) {
      const bytes = new Uint8Array(round % 50);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (seed = (seed * 69069 + 1) >>> 0) >>> 24;
      const encoded = btoa(String.fromCharCode(...bytes));
      assert.deepEqual(decodeBase64(encoded), bytes);
    }
  });
});

Deno.test("decodeBase64Text() decodes UTF-8, invalid bytes as U+FFFD", () => {
  assert.equal(decodeBase64Text("aMOpbGxv"), "héllo");
  assert.equal(decodeBase64Text("/w=="), "\ufffd");
  assert.throws(() => decodeBase64Text("YQ"), {
    name: "SyntaxError",
    message: "illegal base64 data at input byte 0",
  });
});

Deno.test("encodeBase64() encodes UTF-8 text in padded standard base64", () => {
  assert.equal(encodeBase64(""), "");
  assert.equal(encodeBase64("a"), "YQ==");
  assert.equal(encodeBase64("héllo"), "aMOpbGxv");
  const long = "ü".repeat(100_000); // more bytes than one String.fromCharCode call takes
  assert.equal(decodeBase64Text(encodeBase64(long)), long);
});
