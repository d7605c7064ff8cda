import assert from "node:assert/strict";
import { stringify } from "yaml";
import { readReplayMark } from "../lib/run/pipeline/replay.ts";
import { replayMark } from "../lib/run/pipeline/request_file.ts";
import type { RunInfo } from "../lib/run/pipeline/expand.ts";
import { UsageError } from "../lib/util/errors.ts";

const RUN = {
  projectId: "6f1c5bd0-7a32-5c6e-9a57-0d6c1c3c9e2a",
  workflowId: "0b6e3f51-2c41-4d0f-9d5e-6c0f3b1a2d7e",
  workflowNumber: 0,
} as RunInfo;

const SETTINGS = {
  sourceDir: "/src",
  checkout: "committed",
  noCache: true,
  strictVersions: false,
  allowSudo: false,
  userProfile: false,
} as const;

Deno.test("readReplayMark() reads back the mark replayMark() writes", () => {
  const mark = replayMark(RUN, SETTINGS, { cacheDir: "/cache" });
  const text = `job_id: x\ncommands: []\n${stringify({ local_toolbox: mark })}`;
  assert.deepEqual(readReplayMark(text, "job.yml"), mark);
  assert.equal(mark.checkout, "committed");
  assert.equal(mark.no_cache, true);
  assert.equal(mark.toolbox_passthrough, false);
  assert.equal(mark.cache_dir, "/cache");
  assert.equal(mark.artifacts_dir, undefined);
});

Deno.test("readReplayMark() is undefined for a request without the mark", () => {
  assert.equal(readReplayMark("job_id: x\ncommands: []\n", "job.yml"), undefined);
  // Only a top-level key marks a request.
  assert.equal(readReplayMark("env:\n  local_toolbox: {}\n", "job.yml"), undefined);
});

Deno.test("readReplayMark() throws one line naming the file and the field when the mark is bad", () => {
  const mark = replayMark(RUN, SETTINGS, {});
  const cases: [unknown, string][] = [
    ["yes", "job.yml: local_toolbox: expected a mapping (rewrite it with --print-requests)"],
    [
      { ...mark, checkout: "clone" },
      "job.yml: local_toolbox: checkout: expected one of copy, all, committed, bind (rewrite it with --print-requests)",
    ],
    [
      { ...mark, workflow_id: "../x" },
      "job.yml: local_toolbox: workflow_id: expected an id (rewrite it with --print-requests)",
    ],
    [
      { ...mark, no_cache: "no" },
      "job.yml: local_toolbox: no_cache: expected true or false (rewrite it with --print-requests)",
    ],
    [
      { ...mark, cache_dir: "cache" },
      "job.yml: local_toolbox: cache_dir: expected an absolute path (rewrite it with --print-requests)",
    ],
  ];
  for (const [value, message] of cases) {
    assert.throws(
      () => readReplayMark(stringify({ job_id: "x", local_toolbox: value }), "job.yml"),
      (error: unknown) => error instanceof UsageError && error.message === message,
    );
  }
});
