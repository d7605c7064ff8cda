import assert from "node:assert/strict";
import { parseYaml, PipelineError, readPipeline } from "../lib/run/pipeline/schema.ts";
import { stagesOf, validatePipeline } from "../lib/run/pipeline/validate.ts";

const HEAD = "version: v1.0\nagent: {machine: {type: e1-standard-2}}\n";

function validate(yaml: string) {
  const { pipeline } = readPipeline(parseYaml(yaml), {
    pipelineDir: "/r/.semaphore",
    repoRoot: "/r",
  });
  return validatePipeline(pipeline);
}

function rejects(yaml: string, message: string) {
  assert.throws(() => validate(yaml), (error: Error) => {
    assert.ok(error instanceof PipelineError);
    assert.equal(error.message, message);
    return true;
  });
}

const job = "task: {jobs: [{commands: [x]}]}";

Deno.test("validatePipeline() makes implicit dependencies explicit: each block waits for the one before", () => {
  const p = validate(
    HEAD + `blocks:\n  - {name: A, ${job}}\n  - {name: B, ${job}}\n  - {name: C, ${job}}\n`,
  );
  assert.deepEqual(p.blocks.map((b) => b.dependencies), [[], [0], [1]]);
  assert.deepEqual(stagesOf(p.blocks), [0, 1, 2]);
});

Deno.test("validatePipeline() keeps explicit dependencies as written, [] meaning none", () => {
  const p = validate(
    HEAD +
      `blocks:\n  - {name: A, dependencies: [], ${job}}\n  - {name: B, dependencies: [], ${job}}\n  - {name: C, dependencies: [A, B], ${job}}\n`,
  );
  assert.deepEqual(p.blocks.map((b) => b.dependencies), [[], [], [0, 1]]);
  assert.deepEqual(stagesOf(p.blocks), [0, 0, 1]);
});

Deno.test("validatePipeline() names nameless blocks, skipping taken names", () => {
  const p = validate(
    HEAD + `blocks:\n  - {${job}}\n  - {name: Nameless block 2, ${job}}\n  - {${job}}\n`,
  );
  assert.deepEqual(p.blocks.map((b) => b.name), [
    "Nameless block 1",
    "Nameless block 2",
    "Nameless block 3",
  ]);
});

Deno.test("validatePipeline() rejects bad dependencies with the YAML path", async (t) => {
  await t.step("unknown block", () =>
    rejects(
      HEAD +
        `blocks:\n  - {name: A, dependencies: [], ${job}}\n  - {name: B, dependencies: [Z], ${job}}\n`,
      "blocks[1].dependencies[0]: unknown block 'Z'",
    ));
  await t.step("cycle", () =>
    rejects(
      HEAD +
        `blocks:\n  - {name: A, dependencies: [C], ${job}}\n  - {name: B, dependencies: [A], ${job}}\n  - {name: C, dependencies: [B], ${job}}\n`,
      "blocks[0].dependencies: dependency cycle: A -> C -> B -> A",
    ));
  await t.step("mixed implicit and explicit", () =>
    rejects(
      HEAD + `blocks:\n  - {name: A, ${job}}\n  - {name: B, dependencies: [A], ${job}}\n`,
      "blocks[0]: 'dependencies' missing; when one block has 'dependencies', every block needs them (use [] for none)",
    ));
  await t.step("duplicate block names", () =>
    rejects(
      HEAD + `blocks:\n  - {name: A, ${job}}\n  - {name: A, ${job}}\n`,
      "blocks[1].name: duplicate block name 'A' (as blocks[0])",
    ));
  await t.step("duplicate job names", () =>
    rejects(
      HEAD + "blocks: [{task: {jobs: [{name: J, commands: [x]}, {name: J, commands: [z]}]}}]\n",
      "blocks[0].task.jobs[1].name: duplicate job name 'J' (as blocks[0].task.jobs[0])",
    ));
});

Deno.test("validatePipeline() rejects a condition that does not parse, naming its path", () => {
  rejects(
    HEAD + `blocks:\n  - {name: A, run: {when: "branch = \\"master\\""}, ${job}}\n`,
    `blocks[0].run.when: invalid condition 'branch = "master"': unexpected '"' at position 10 (strings use single quotes)`,
  );
  rejects(
    HEAD + `fail_fast: {stop: {when: "branch = 'a' and"}}\nblocks:\n  - {name: A, ${job}}\n`,
    "fail_fast.stop.when: invalid condition 'branch = 'a' and': unexpected end of condition",
  );
});

Deno.test("validatePipeline() rejects a job time limit above its block's", () => {
  rejects(
    HEAD +
      "blocks:\n  - execution_time_limit: {minutes: 10}\n    task: {jobs: [{commands: [x], execution_time_limit: {minutes: 20}}]}\n",
    "blocks[0].task.jobs[0].execution_time_limit: 20 minutes is more than the enclosing limit of 10 minutes",
  );
  rejects(
    HEAD + `execution_time_limit: {hours: 25}\nblocks:\n  - {${job}}\n`,
    "execution_time_limit: more than 24 hours",
  );
});

Deno.test("validatePipeline() parses the conditions of fields ignored locally too", () => {
  rejects(
    HEAD + `queue: {name: q, when: "branch === 'x'"}\nblocks:\n  - {${job}}\n`,
    "queue.when: invalid condition 'branch === 'x'': expected a quoted string after 'branch ='",
  );
  rejects(
    HEAD +
      'blocks:\n  - task: {jobs: [{commands: [x], priority: [{value: 1, when: "tag = "}]}]}\n',
    "blocks[0].task.jobs[0].priority[0].when: invalid condition 'tag = ': unexpected end of condition",
  );
});
