import assert from "node:assert/strict";
import { isPipelineText } from "../lib/run/run_file.ts";

Deno.test("isPipelineText() is true for a top-level mapping with a blocks key, whatever its style", () => {
  assert.equal(isPipelineText("version: v1.0\nagent: {}\nblocks:\n  - task: {}\n"), true);
  assert.equal(isPipelineText("# CI\nblocks: []\n"), true);
  assert.equal(isPipelineText('"blocks": []\n'), true);
  assert.equal(isPipelineText("# c\n{version: v1.0, blocks: []}\n"), true);
});

Deno.test("isPipelineText() is false for job requests, nested blocks keys and non-mappings", () => {
  assert.equal(isPipelineText("commands:\n  - directive: echo blocks:\n"), false);
  assert.equal(isPipelineText("env_vars:\n  blocks: 1\n"), false);
  assert.equal(isPipelineText("{commands: [{directive: 'x'}], env: {blocks: 1}}\n"), false);
  assert.equal(isPipelineText("- blocks: 1\n"), false);
  assert.equal(isPipelineText("blocksy: 1\n"), false);
});
