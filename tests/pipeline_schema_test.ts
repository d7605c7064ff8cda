import assert from "node:assert/strict";
import { parseYaml, PipelineError, readPipeline } from "../lib/run/pipeline/schema.ts";

const HEAD = "version: v1.0\nagent: {machine: {type: e1-standard-2}}\n";

async function read(yaml: string, files: Record<string, string> = {}) {
  const root = await Deno.makeTempDir();
  try {
    for (const [path, text] of Object.entries(files)) {
      const full = `${root}/${path}`;
      await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
      await Deno.writeTextFile(full, text);
    }
    return readPipeline(parseYaml(yaml), { pipelineDir: `${root}/.semaphore`, repoRoot: root });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function rejects(yaml: string, message: string) {
  await assert.rejects(() => read(yaml), (error: Error) => {
    assert.ok(error instanceof PipelineError);
    assert.equal(error.message, message);
    return true;
  });
}

Deno.test("readPipeline() names the YAML path of a value of the wrong type", async (t) => {
  await t.step("matrix values given as a string", () =>
    rejects(
      HEAD + `blocks:
  - {name: A, task: {jobs: [{commands: [x]}]}}
  - {name: B, task: {jobs: [{commands: [x]}]}}
  - name: C
    task:
      jobs:
        - commands: [x]
          matrix: [{env_var: A, values: ["1"]}, {env_var: B, values: "x"}]
`,
      "blocks[2].task.jobs[0].matrix[1].values: expected a list",
    ));
  await t.step("an env value read as a number", () =>
    rejects(
      HEAD + "blocks: [{task: {env_vars: [{name: NUM, value: 1}], jobs: [{commands: [x]}]}}]\n",
      "blocks[0].task.env_vars[0].value: expected a string, found number 1 (quote it)",
    ));
  await t.step("`on` read as a boolean by a YAML 1.1 reader", () =>
    rejects(
      HEAD + "blocks: [{task: {jobs: [{commands: [x], env_vars: [{name: F, value: on}]}]}}]\n",
      "blocks[0].task.jobs[0].env_vars[0].value: expected a string, found boolean true (quote it)",
    ));
  await t.step("commands given as one string", () =>
    rejects(
      HEAD + "blocks: [{task: {jobs: [{commands: make test}]}}]\n",
      "blocks[0].task.jobs[0].commands: expected a list",
    ));
});

Deno.test("readPipeline() rejects unknown keys, missing keys and exclusive pairs", async (t) => {
  await t.step("unknown key in a job", () =>
    rejects(
      HEAD + "blocks: [{task: {jobs: [{commands: [x], cmd: [y]}]}}]\n",
      "blocks[0].task.jobs[0].cmd: unknown key (allowed here: name, commands, commands_file, " +
        "env_vars, matrix, parallelism, execution_time_limit, priority, oidc_tokens)",
    ));
  await t.step(
    "missing top-level key",
    () => rejects("version: v1.0\nblocks: []\n", "missing key 'agent'"),
  );
  await t.step("wrong version", () =>
    rejects(
      "version: v2.0\nagent: {machine: {type: a}}\nblocks: []\n",
      "version: must be 'v1.0', found 'v2.0'",
    ));
  await t.step("matrix with parallelism", () =>
    rejects(
      HEAD +
        "blocks: [{task: {jobs: [{commands: [x], parallelism: 2, matrix: [{env_var: A, values: ['1']}]}]}}]\n",
      "blocks[0].task.jobs[0]: 'matrix' and 'parallelism' cannot both be set",
    ));
  await t.step("empty matrix values", () =>
    rejects(
      HEAD + "blocks: [{task: {jobs: [{commands: [x], matrix: [{env_var: A, values: []}]}]}}]\n",
      "blocks[0].task.jobs[0].matrix[0].values: expected at least one value",
    ));
  await t.step("repeated matrix env_var", () =>
    rejects(
      HEAD +
        "blocks: [{task: {jobs: [{commands: [x], matrix: [{env_var: A, values: ['1']}, {env_var: A, values: ['2']}]}]}}]\n",
      "blocks[0].task.jobs[0].matrix[1].env_var: 'A' is repeated",
    ));
  await t.step("boosters", () =>
    rejects(
      HEAD + "blocks: [{task: {boosters: [{name: r, type: rspec, job_count: 2}]}}]\n",
      "blocks[0].task.boosters: boosters are not supported locally; use parallelism",
    ));
  await t.step("skip with run", () =>
    rejects(
      HEAD +
        "blocks: [{skip: {when: 'true'}, run: {when: 'true'}, task: {jobs: [{commands: [x]}]}}]\n",
      "blocks[0]: at most one of 'skip', 'run', 'filters' (found skip, run)",
    ));
  await t.step("a missing commands_file", async () => {
    await assert.rejects(
      () => read(HEAD + "blocks: [{task: {jobs: [{commands_file: nope.sh}]}}]\n"),
      (e: Error) =>
        e instanceof PipelineError &&
        /^blocks\[0\]\.task\.jobs\[0\]\.commands_file: cannot read commands file 'nope\.sh' \(.*\/\.semaphore\/nope\.sh\): no such file$/
          .test(e.message),
    );
  });
});

Deno.test("readPipeline() reads commands_file lines and task_file relative to the pipeline dir", async () => {
  const { pipeline } = await read(
    HEAD + `blocks:
  - {name: A, task_file: tasks/a.yml}
  - {name: B, task: {jobs: [{commands_file: /scripts/b.sh}]}}
`,
    {
      ".semaphore/tasks/a.yml": "jobs: [{name: J, commands: [echo a]}]\n",
      "scripts/b.sh": "echo 1\n\necho 2\n",
    },
  );
  assert.deepEqual(pipeline.blocks[0].task.jobs[0].commands, ["echo a"]);
  // Every line is a command, blank ones too.
  assert.deepEqual(pipeline.blocks[1].task.jobs[0].commands, ["echo 1", "", "echo 2"]);
});

Deno.test("readPipeline() gives one notice line per field ignored locally", async () => {
  const { notices } = await read(
    HEAD + `auto_cancel: {running: {when: "branch != 'master'"}}
queue: {name: q, scope: project}
blocks:
  - filters: []
    task: {jobs: [{commands: [x], priority: [{value: 70, when: true}]}]}
`,
  );
  assert.deepEqual(notices, [
    "notice: auto_cancel is ignored locally (one pipeline runs at a time)",
    "notice: queue is ignored locally (no queues locally)",
    "notice: blocks[0].task.jobs[0].priority is ignored locally (jobs are not queued)",
    "notice: blocks[0].filters is ignored locally (no labels locally)",
  ]);
});

Deno.test("readPipeline() with lenient coerces scalars to text and warns", () => {
  const { pipeline, warnings } = readPipeline(
    parseYaml(
      HEAD + "blocks: [{task: {jobs: [{commands: [x], env_vars: [{name: NUM, value: 1}]}]}}]\n",
    ),
    { pipelineDir: "/r/.semaphore", repoRoot: "/r", lenient: true },
  );
  assert.equal(pipeline.blocks[0].task.jobs[0].env_vars[0].value, "1");
  assert.deepEqual(warnings, [
    "warning: blocks[0].task.jobs[0].env_vars[0].value: 1 read as the string '1'",
  ]);
});

Deno.test("parseYaml() names the line and column of invalid YAML and of a repeated key", () => {
  assert.throws(
    () => parseYaml("version: v1.0\nblocks:\n  - name: A\n    name: B\n"),
    new PipelineError("invalid YAML (line 4, column 5): Map keys must be unique"),
  );
});
