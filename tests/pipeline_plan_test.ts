import assert from "node:assert/strict";
import { parseYaml, PipelineError, readPipeline } from "../lib/run/pipeline/schema.ts";
import { validatePipeline } from "../lib/run/pipeline/validate.ts";
import { buildPlan, formatGraph, formatPlan, type Selection } from "../lib/run/pipeline/plan.ts";
import { gitEnvVars, type GitFacts } from "../lib/run/pipeline/git_facts.ts";

const base: GitFacts = {
  repoRoot: "/nonexistent",
  refType: "branch",
  currentBranch: "dev",
  branch: "dev",
  tag: "",
  pullRequest: "",
  prBase: "master",
  prName: "Local pull request",
  sha: "s",
  url: "/r",
  provider: "git",
  repoName: "r",
  slug: "local/r",
  commitRange: "",
  committer: "c",
  author: "a",
  remote: "origin",
  committed: false,
};
const run = {
  workflowId: "w",
  workflowNumber: 1,
  pipelineId: "p",
  projectName: "r",
  projectId: "i",
  orgUrl: "",
  createdAt: 0,
};

const PIPELINE = `version: v1.0
agent: {machine: {type: e1-standard-2}}
blocks:
  - name: Build
    dependencies: []
    task: {jobs: [{name: Compile, commands: [x]}]}
  - name: Lint
    dependencies: []
    task: {jobs: [{name: Style, commands: [x]}]}
  - name: Test
    dependencies: [Build]
    task:
      jobs:
        - {name: Unit, commands: [x], matrix: [{env_var: RUBY, values: ["3.2", "3.3"]}, {env_var: DB, values: [pg, mysql]}]}
        - {name: Smoke, commands: [x]}
  - name: Deploy
    dependencies: [Test, Lint]
    run: {when: "branch = 'master' or tag =~ '^v'"}
    task: {jobs: [{name: Ship, commands: [x]}]}
`;

function plan(selection: Selection = {}, facts: GitFacts = base) {
  const { pipeline } = readPipeline(parseYaml(PIPELINE), {
    pipelineDir: "/r/.semaphore",
    repoRoot: "/r",
  });
  return buildPlan(validatePipeline(pipeline), {
    facts,
    run,
    secrets: new Map(),
    pipelineFile: "/.semaphore/semaphore.yml",
    selection,
  });
}

const running = (p: ReturnType<typeof plan>) =>
  p.blocks.filter((b) => b.selected).map((b) =>
    `${b.block.name}: ${b.jobs.map((j) => j.name).join(", ")}`
  );

Deno.test("buildPlan() orders blocks by stage and evaluates conditions on the trigger", () => {
  const p = plan();
  assert.deepEqual(p.blocks.map((b) => [b.stage, b.block.name]), [[1, "Build"], [1, "Lint"], [
    2,
    "Test",
  ], [3, "Deploy"]]);
  assert.deepEqual(p.blocks.map((b) => b.skipped), [false, false, false, true]);
  assert.equal(p.blocks[3].conditionText, "run: branch = 'master' or tag =~ '^v' → false");
  const onTag = plan({}, { ...base, refType: "tag", tag: "v2", branch: "" });
  assert.equal(onTag.blocks[3].skipped, false);
  // Jobs are numbered in -l order, from 1.
  assert.deepEqual(p.blocks.flatMap((b) => b.jobs.map((j) => j.nn)), [1, 2, 3, 4, 5, 6, 7, 8]);
});

Deno.test("buildPlan() with --block runs the block and its transitive dependencies", () => {
  assert.deepEqual(running(plan({ blocks: ["Test"] })), [
    "Build: Compile",
    "Test: Unit - RUBY=3.2, DB=pg, Unit - RUBY=3.2, DB=mysql, Unit - RUBY=3.3, DB=pg, Unit - RUBY=3.3, DB=mysql, Smoke",
  ]);
  assert.deepEqual(running(plan({ blocks: ["Test"], noDeps: true })).map((l) => l.split(":")[0]), [
    "Test",
  ]);
});

Deno.test("buildPlan() with --job runs matching jobs and their dependency blocks in full, nothing downstream", () => {
  assert.deepEqual(running(plan({ jobs: ["Unit*pg"] })), [
    "Build: Compile",
    "Test: Unit - RUBY=3.2, DB=pg, Unit - RUBY=3.3, DB=pg",
  ]);
});

Deno.test("buildPlan() with --matrix keeps matching combinations and jobs without the variable", () => {
  const p = plan({ matrix: ["RUBY=3.3", "DB=pg", "DB=mysql"] });
  assert.deepEqual(p.blocks[2].jobs.map((j) => j.name), [
    "Unit - RUBY=3.3, DB=pg",
    "Unit - RUBY=3.3, DB=mysql",
    "Smoke",
  ]);
});

Deno.test("buildPlan() rejects a selection that matches nothing", () => {
  assert.throws(
    () => plan({ blocks: ["Nope"] }),
    new PipelineError("--block: no block matches 'Nope'"),
  );
  assert.throws(
    () => plan({ jobs: ["Nope*"] }),
    new PipelineError("--job: no job matches 'Nope*'"),
  );
});

Deno.test("formatPlan() lists stage, block, job, dependencies and the condition with its value", () => {
  assert.equal(
    formatPlan(plan({ blocks: ["Deploy"], matrix: ["RUBY=3.2", "DB=pg"] })),
    [
      "Stage  Block   Job                     Depends on  Condition",
      "1      Build   Compile                 -",
      "1      Lint    Style                   -",
      "2      Test    Unit - RUBY=3.2, DB=pg  Build",
      "2      Test    Smoke",
      "3      Deploy  Ship                    Test, Lint  run: branch = 'master' or tag =~ '^v' → false",
      "",
    ].join("\n"),
  );
});

Deno.test("gitEnvVars() sets the pull request variables from --pull-request (§3)", () => {
  const vars = Object.fromEntries(
    gitEnvVars({ ...base, refType: "pull-request", pullRequest: "12", prBase: "main" }),
  );
  assert.equal(vars.SEMAPHORE_GIT_REF, "refs/pull/12/merge");
  assert.equal(vars.SEMAPHORE_GIT_REF_TYPE, "pull-request");
  assert.equal(vars.SEMAPHORE_GIT_BRANCH, "main");
  assert.equal(vars.SEMAPHORE_GIT_WORKING_BRANCH, "dev");
  assert.equal(vars.SEMAPHORE_GIT_PR_NUMBER, "12");
  assert.equal(vars.SEMAPHORE_GIT_PR_BRANCH, "dev");
  assert.equal(vars.SEMAPHORE_GIT_PR_NAME, "Local pull request");
  const tag = Object.fromEntries(gitEnvVars({ ...base, refType: "tag", tag: "v1" }));
  assert.equal(tag.SEMAPHORE_GIT_BRANCH, "refs/tags/v1");
  assert.equal(tag.SEMAPHORE_GIT_TAG_NAME, "v1");
  assert.equal(tag.SEMAPHORE_GIT_WORKING_BRANCH, undefined);
});

Deno.test("formatGraph() draws the blocks stage by stage, or as Graphviz dot", () => {
  assert.equal(
    formatGraph(plan(), "text"),
    [
      "Stage 1",
      "  [Build] 1 job",
      "  [Lint] 1 job",
      "Stage 2",
      "  [Test] 5 jobs <- Build",
      "Stage 3",
      "  [Deploy] 1 job <- Test, Lint (skipped)",
      "",
    ].join("\n"),
  );
  const dot = formatGraph(plan(), "dot");
  assert.match(dot, /^digraph pipeline \{\n/);
  assert.ok(dot.includes('\n  "Lint" -> "Deploy";\n'), dot);
  assert.ok(dot.includes('\n  "Deploy" [style=dashed];\n'), dot);
});
