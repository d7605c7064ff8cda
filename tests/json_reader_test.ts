import assert from "node:assert/strict";
import { JsonSyntaxError, MAX_JSON_DEPTH, readJson } from "../lib/util/json_reader.ts";

Deno.test("readJson() keeps offsets and number literals", () => {
  const root = readJson(' {"a": [1.50, true, null, "x"]}');
  assert.deepEqual(root, {
    t: "map",
    o: 1,
    entries: [["a", {
      t: "list",
      o: 7,
      items: [
        { t: "scalar", raw: "1.50", number: true, o: 8 },
        { t: "scalar", raw: "true", number: false, o: 14 },
        { t: "null", o: 20 },
        { t: "string", value: "x", o: 26 },
      ],
    }]],
  });
});

Deno.test("readJson() throws JsonSyntaxError with the problem and its offset", async (t) => {
  const cases: [string, string, number][] = [
    ["", "unexpected end of input", 0],
    ['{"a": 1,}', "unexpected character '}' where a key was expected", 8],
    ['"\\q"', "invalid escape '\\q' in a string", 1],
    ["[1] x", "unexpected character 'x' after the top-level value", 4],
    [
      "[".repeat(MAX_JSON_DEPTH + 1),
      `nesting deeper than ${MAX_JSON_DEPTH} levels`,
      MAX_JSON_DEPTH,
    ],
  ];
  for (const [text, problem, offset] of cases) {
    await t.step(JSON.stringify(text.slice(0, 20)), () => {
      assert.throws(() => readJson(text), (error) => {
        assert.ok(error instanceof JsonSyntaxError);
        assert.equal(error.problem, problem);
        assert.equal(error.offset, offset);
        return true;
      });
    });
  }
});
