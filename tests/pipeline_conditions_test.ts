import assert from "node:assert/strict";
import {
  ConditionError,
  evaluateCondition,
  type KeywordValues,
  parseCondition,
} from "../lib/run/pipeline/conditions.ts";

function evaluate(text: string, keywords: KeywordValues, changeIn = false): boolean {
  return evaluateCondition(parseCondition(text), { keywords, changeIn: () => changeIn });
}

const onMaster = { branch: "master", tag: "", pull_request: "" };
const onTag = { branch: "", tag: "v1.2.0", pull_request: "" };
const onPr = { branch: "", tag: "", pull_request: "42" };

Deno.test("evaluateCondition() compares keywords with = != =~ !~ (§5.2)", () => {
  assert.equal(evaluate("branch = 'master'", onMaster), true);
  assert.equal(evaluate("branch != 'master'", onMaster), false);
  assert.equal(evaluate("'master' = branch", onMaster), true);
  assert.equal(evaluate("branch =~ '^mas'", onMaster), true);
  assert.equal(evaluate("branch =~ 'ste'", onMaster), true, "the regex is unanchored");
  assert.equal(evaluate("tag =~ '.*'", onMaster), false, "=~ against an empty value is false");
  assert.equal(evaluate("tag !~ '.*'", onMaster), true, "!~ against an empty value is true");
  assert.equal(evaluate("tag =~ '^v1\\.'", onTag), true);
  assert.equal(evaluate("branch = 'master'", onPr), false, "a PR pipeline has no branch");
  assert.equal(evaluate("pull_request =~ '.*'", onPr), true);
  assert.equal(evaluate("BRANCH = 'master'", onMaster), true, "keywords in capitals");
});

Deno.test("evaluateCondition() reads and/or left to right with no precedence (§5.1)", () => {
  // true or true and false == (true or true) and false
  assert.equal(evaluate("true or true and false", onMaster), false);
  assert.equal(evaluate("true or (true and false)", onMaster), true);
  assert.equal(evaluate("branch = 'x' OR tag =~ '^v' AND true", onTag), true);
});

Deno.test("evaluateCondition() gives bare values their truth (§5.2)", () => {
  assert.equal(evaluate("false", onMaster), false);
  assert.equal(evaluate("'false'", onMaster), false);
  assert.equal(evaluate("'anything'", onMaster), true);
  assert.equal(evaluate("0", onMaster), true);
  assert.equal(evaluate("-1", onMaster), false);
  assert.equal(evaluate("[]", onMaster), false);
  assert.equal(evaluate("change_in('/lib') and branch = 'master'", onMaster, true), true);
  assert.equal(
    evaluate("change_in(['/a', '/b'], {default_branch: 'main'})", onMaster, false),
    false,
  );
});

Deno.test("evaluateCondition() throws for result outside promotions", () => {
  assert.throws(
    () => evaluate("result = 'passed'", onMaster),
    new ConditionError("Missing value of keyword parameter 'result'"),
  );
});

Deno.test("parseCondition() rejects what renderedtext/when does not lex", () => {
  for (
    const [text, message] of [
      ['branch = "master"', `unexpected '"' at position 10 (strings use single quotes)`],
      ["branch == 'master'", "expected a quoted string after 'branch ='"],
      ["feature = 'x'", "unknown keyword 'feature' at position 1"],
      ["changes_in('/a')", "unknown function 'changes_in'"],
      ["(branch = 'a'", "unexpected end of condition"],
      ["", "empty condition"],
    ]
  ) {
    assert.throws(() => parseCondition(text), new ConditionError(message), text);
  }
});

Deno.test("parseCondition() rejects a bad regular expression; (?i) makes one case-insensitive", () => {
  assert.throws(
    () => parseCondition("branch =~ '['"),
    new ConditionError("invalid regular expression '['"),
  );
  assert.equal(evaluate("branch =~ '(?i)^MASTER$'", onMaster), true);
});
