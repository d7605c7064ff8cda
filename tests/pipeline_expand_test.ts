import assert from "node:assert/strict";
import { parseYaml, readPipeline } from "../lib/run/pipeline/schema.ts";
import { validatePipeline } from "../lib/run/pipeline/validate.ts";
import { expandBlock, type PlannedJob, type RunInfo } from "../lib/run/pipeline/expand.ts";
import type { GitFacts } from "../lib/run/pipeline/git_facts.ts";
import type { Secret } from "../lib/run/pipeline/secrets.ts";
import { decodeBase64Text } from "../lib/util/base64.ts";

const facts: GitFacts = {
  repoRoot: "/src/app",
  refType: "branch",
  currentBranch: "feature",
  branch: "feature",
  tag: "",
  pullRequest: "",
  prBase: "master",
  prName: "Local pull request",
  sha: "abc123",
  url: "git@github.com:acme/app.git",
  provider: "github",
  repoName: "app",
  slug: "acme/app",
  commitRange: "abc000...abc123",
  committer: "Dev",
  author: "Dev",
  remote: "origin",
  committed: false,
};

const run: RunInfo = {
  workflowId: "wf-1",
  workflowNumber: 7,
  pipelineId: "ppl-1",
  projectName: "app",
  projectId: "proj-1",
  orgUrl: "http://localhost",
  createdAt: 1700000000,
};

function expand(yaml: string, secrets: Map<string, Secret> = new Map()): PlannedJob[][] {
  const { pipeline } = readPipeline(parseYaml(yaml), {
    pipelineDir: "/src/app/.semaphore",
    repoRoot: "/src/app",
  });
  const valid = validatePipeline(pipeline);
  let n = 0;
  return valid.blocks.map((b) => expandBlock(valid, b, { facts, run, secrets }, () => ++n));
}

const HEAD = "version: v1.0\nagent: {machine: {type: e1-standard-2, os_image: ubuntu2004}}\n";

Deno.test("expandBlock() builds the PIPELINES.md §2.4 example: names, commands, epilogues, env order", () => {
  const [[first, second]] = expand(
    HEAD + `
global_job_config:
  env_vars: [{name: A, value: global}]
  prologue: {commands: [checkout]}
  epilogue: {always: {commands: [echo g-always]}}
blocks:
  - name: Test
    task:
      env_vars: [{name: A, value: task}]
      prologue: {commands: [make deps]}
      epilogue: {always: {commands: [echo t-always]}, on_fail: {commands: [echo t-fail]}}
      jobs:
        - {name: Unit, commands: [make test], matrix: [{env_var: RUBY, values: ["3.2", "3.3"]}]}
`,
  );
  assert.equal(first.name, "Unit - RUBY=3.2");
  assert.equal(second.name, "Unit - RUBY=3.3");
  const r = first.request;
  assert.equal(r.executor, "shell");
  assert.deepEqual(r.commands.map((c) => c.directive), ["checkout", "make deps", "make test"]);
  assert.deepEqual(r.epilogue_always_commands.map((c) => c.directive), [
    "echo t-always",
    "echo g-always",
  ]);
  assert.deepEqual(r.epilogue_on_pass_commands, []);
  assert.deepEqual(r.epilogue_on_fail_commands.map((c) => c.directive), ["echo t-fail"]);
  const names = first.env.map(([n]) => n);
  // The tail of the request: block name (group C) ... A global, A task, then the matrix value.
  assert.deepEqual(first.env.slice(-3), [["A", "global"], ["A", "task"], ["RUBY", "3.2"]]);
  assert.ok(names.indexOf("SEMAPHORE_BLOCK_NAME") < names.indexOf("A"));
  assert.deepEqual(first.env.find(([n]) => n === "SEMAPHORE_BLOCK_NAME"), [
    "SEMAPHORE_BLOCK_NAME",
    "Test",
  ]);
  // Values travel base64 in the request, decoded they are the env.
  assert.deepEqual(r.env_vars.map((e) => [e.name, decodeBase64Text(e.value)]), first.env);
});

Deno.test("expandBlock() orders env groups A, git, secrets, C, global, task, job, count, matrix (§2.2)", () => {
  const secrets = new Map<string, Secret>([
    ["g", { name: "g", envVars: [{ name: "G_SECRET", value: "gsecret" }], files: [], source: "t" }],
    ["t", {
      name: "t",
      envVars: [{ name: "T_SECRET", value: "tsecret" }],
      files: [{ path: "/home/semaphore/.aws/c", content: "eA==" }],
      source: "t",
    }],
  ]);
  const [[job]] = expand(
    HEAD + `
global_job_config: {secrets: [{name: g}], env_vars: [{name: GV, value: g}]}
blocks:
  - name: B
    task:
      secrets: [{name: t}]
      env_vars: [{name: TV, value: t}]
      jobs: [{name: J, commands: [x], env_vars: [{name: JV, value: j}], parallelism: 2}]
`,
    secrets,
  );
  const names = job.env.map(([n]) => n);
  const at = (n: string) => {
    const i = names.indexOf(n);
    assert.ok(i >= 0, `${n} missing`);
    return i;
  };
  const order = [
    "PAGER",
    "CI",
    "SEMAPHORE_JOB_NAME",
    "SEMAPHORE_ORGANIZATION_URL",
    "SEMAPHORE_ARTIFACT_TOKEN",
    "SEMAPHORE_GIT_PROVIDER",
    "SEMAPHORE_GIT_SHA",
    "SEMAPHORE_GIT_COMMIT_RANGE",
    "G_SECRET",
    "T_SECRET",
    "SEMAPHORE_WORKFLOW_ID",
    "SEMAPHORE_PIPELINE_ID",
    "SEMAPHORE_BLOCK_NAME",
    "GV",
    "TV",
    "JV",
    "SEMAPHORE_JOB_COUNT",
    "SEMAPHORE_JOB_INDEX",
  ];
  for (let i = 1; i < order.length; i++) {
    assert.ok(at(order[i - 1]) < at(order[i]), `${order[i - 1]} before ${order[i]}`);
  }
  assert.equal(names[0], "PAGER");
  assert.ok(!names.includes("DISPLAY"));
  assert.equal(job.name, "J - 1/2");
  assert.deepEqual(job.env.slice(-2), [["SEMAPHORE_JOB_COUNT", "2"], ["SEMAPHORE_JOB_INDEX", "1"]]);
  // A shell job's secret file under /home/semaphore/ goes to the job's HOME.
  assert.deepEqual(job.request.files, [{ path: ".aws/c", content: "eA==", mode: "0644" }]);
  assert.deepEqual([...job.secretValues].sort(), ["gsecret", "tsecret", "x"].sort());
  assert.deepEqual(job.secretNames, ["g", "t"]);
});

Deno.test("expandBlock() names parallel, matrix and nameless jobs as Semaphore does (§2.6, §8.1)", () => {
  const [[...jobs]] = expand(
    HEAD + `
blocks:
  - task:
      jobs:
        - {name: Tests, commands: [x], parallelism: 4}
        - name: Unit
          commands: [x]
          matrix: [{env_var: RUBY, values: ["3.2", "3.3"]}, {env_var: DB, values: [pg, mysql]}]
        - {commands: [x], matrix: [{env_var: A, values: ["1"]}, {env_var: B, values: [x, z]}]}
        - {name: Nameless 2, commands: [x]}
        - {commands: [x]}
        - {name: Q, commands: [x], env_vars: [{name: SEMAPHORE_JOB_COUNT, value: "9"}], matrix: [{env_var: I, values: ["3", "4"]}]}
`,
  );
  assert.deepEqual(jobs.map((j) => j.name), [
    "Tests - 1/4",
    "Tests - 2/4",
    "Tests - 3/4",
    "Tests - 4/4",
    "Unit - RUBY=3.2, DB=pg",
    "Unit - RUBY=3.2, DB=mysql",
    "Unit - RUBY=3.3, DB=pg",
    "Unit - RUBY=3.3, DB=mysql",
    "Nameless 1 - A=1, B=x",
    "Nameless 1 - A=1, B=z",
    "Nameless 2",
    "Nameless 3",
    "Q - 3/9",
    "Q - 4/9",
  ]);
  assert.deepEqual(jobs[5].env.slice(-2), [["RUBY", "3.2"], ["DB", "mysql"]]);
  // A plain matrix sets no SEMAPHORE_JOB_COUNT (§8.11).
  assert.ok(!jobs[5].env.some(([n]) => n === "SEMAPHORE_JOB_COUNT"));
});

Deno.test("expandBlock() builds a dockercompose request from agent.containers (§2.4)", () => {
  const secrets = new Map<string, Secret>([
    ["db", { name: "db", envVars: [{ name: "PW", value: "hunter22" }], files: [], source: "t" }],
  ]);
  const [[job]] = expand(
    `version: v1.0
agent:
  machine: {type: e1-standard-2}
  containers:
    - {name: main, image: semaphoreci/ruby:3.2}
    - {name: db, image: postgres:16, secrets: [{name: db}], env_vars: [{name: POSTGRES_DB, value: app}]}
blocks:
  - {name: B, task: {jobs: [{name: J, commands: [x]}]}}
`,
    secrets,
  );
  assert.equal(job.request.executor, "dockercompose");
  const [main, db] = job.request.compose.containers;
  assert.equal(main.image, "registry.semaphoreci.com/ruby:3.2");
  assert.deepEqual(db.env_vars.map((e) => [e.name, decodeBase64Text(e.value)]), [
    ["PW", "hunter22"],
    ["POSTGRES_DB", "app"],
  ]);
  assert.deepEqual(job.env.find(([n]) => n === "SEMAPHORE_AGENT_MACHINE_ENVIRONMENT_TYPE"), [
    "SEMAPHORE_AGENT_MACHINE_ENVIRONMENT_TYPE",
    "container",
  ]);
  assert.ok(job.secretValues.includes("hunter22"));
});

Deno.test("expandBlock() with -P runs VM jobs of a mapped os_image in that container image", () => {
  const { pipeline } = readPipeline(
    parseYaml(HEAD + "blocks: [{name: B, task: {jobs: [{name: J, commands: [x]}]}}]\n"),
    { pipelineDir: "/src/app/.semaphore", repoRoot: "/src/app" },
  );
  const valid = validatePipeline(pipeline);
  let n = 0;
  const expandWith = (images: Record<string, string>) =>
    expandBlock(valid, valid.blocks[0], { facts, run, secrets: new Map(), images }, () => ++n)[0];
  const mapped = expandWith({ ubuntu2004: "ubuntu:20.04" });
  assert.equal(mapped.request.executor, "dockercompose");
  assert.deepEqual(mapped.request.compose.containers.map((c) => [c.name, c.image]), [[
    "main",
    "ubuntu:20.04",
  ]]);
  assert.equal(expandWith({ ubuntu2204: "ubuntu:22.04" }).request.executor, "shell");
  assert.equal(expandWith({ "*": "debian:12" }).request.compose.containers[0].image, "debian:12");
});
