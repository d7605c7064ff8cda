import assert from "node:assert/strict";
import { parseYaml, PipelineError, readPipeline } from "../lib/run/pipeline/schema.ts";
import {
  promotionParameters,
  promotionTargets,
  substituteParameters,
} from "../lib/run/pipeline/promotions.ts";
import type { GitFacts } from "../lib/run/pipeline/git_facts.ts";

const facts = {
  repoRoot: "/nonexistent",
  refType: "branch",
  branch: "master",
  tag: "",
  pullRequest: "",
  committed: false,
} as GitFacts;

const { pipeline } = readPipeline(
  parseYaml(`version: v1.0
agent: {machine: {type: e1-standard-2}}
blocks: [{task: {jobs: [{commands: [x]}]}}]
promotions:
  - name: Staging
    pipeline_file: staging.yml
    auto_promote: {when: "result = 'passed' and branch = 'master'"}
  - name: Legacy
    pipeline_file: legacy.yml
    auto_promote_on: [{result: failed, branch: ["^mas"]}]
  - name: Production
    pipeline_file: production.yml
    parameters:
      env_vars:
        - {name: REGION, required: true, options: [eu, us]}
        - {name: DRY, default_value: "yes"}
        - {name: NOTE}
`),
  { pipelineDir: "/r/.semaphore", repoRoot: "/r" },
);

Deno.test("promotionTargets() picks named promotions and those whose auto_promote holds", () => {
  const names = (
    outcome: { result: string; reason: string },
    options = { names: [] as string[], auto: true },
  ) =>
    promotionTargets(pipeline.promotions, {
      ...options,
      facts,
      pipelineFile: "/.semaphore/semaphore.yml",
      outcome,
    })
      .map((t) => `${t.promotion.name}:${t.by}`);
  assert.deepEqual(names({ result: "passed", reason: "" }), ["Staging:auto-promotion"]);
  assert.deepEqual(names({ result: "failed", reason: "test" }), ["Legacy:auto-promotion"]);
  assert.deepEqual(
    names({ result: "failed", reason: "test" }, { names: ["Production"], auto: false }),
    [
      "Production:manual",
    ],
  );
});

Deno.test("promotionParameters() takes --param, then defaults, and checks required and options", () => {
  const production = pipeline.promotions[2];
  assert.deepEqual(promotionParameters(production, new Map([["REGION", "eu"]])), [
    ["REGION", "eu"],
    ["DRY", "yes"],
  ]);
  assert.throws(
    () => promotionParameters(production, new Map()),
    new PipelineError(
      "promotion 'Production': parameter REGION is required; give --param REGION=VALUE",
    ),
  );
  assert.throws(
    () => promotionParameters(production, new Map([["REGION", "asia"]])),
    new PipelineError(
      "promotion 'Production': parameter REGION must be one of 'eu', 'us', found 'asia'",
    ),
  );
});

Deno.test("substituteParameters() replaces ${{parameters.X}} and warns for unknown ones", () => {
  const warnings: string[] = [];
  const text = substituteParameters(
    "name: Deploy ${{parameters.REGION}} ${{ parameters.MISSING }}\n",
    new Map([["REGION", "eu"]]),
    (w) => warnings.push(w),
  );
  assert.equal(text, "name: Deploy eu MISSING\n");
  assert.deepEqual(warnings, [
    "warning: parameter MISSING has no value; ${{parameters.MISSING}} becomes 'MISSING'",
  ]);
});

Deno.test("substituteParameters() replaces %{{...}} by the JSON result of its template functions", () => {
  const values = new Map([["REGIONS", "eu, us"], ["N", "3"], ["ENV", " Prod "], ["EMPTY", ""]]);
  const text = substituteParameters(
    [
      `values: %{{parameters.REGIONS | splitList ","}}`,
      `quoted: "%{{ parameters.REGIONS | nospace | splitList "," }}"`,
      `single: '%{{parameters.N | int | mul 2 | add 1}}'`,
      `- %{{parameters.ENV | trim | lower}}`,
      `name: Deploy to %{{parameters.ENV | trim | upper}} from %{{parameters.N}} jobs`,
      `joined: %{{parameters.REGIONS | splitList ", " | join "+"}}`,
      `fallback: %{{parameters.EMPTY | default "none"}}`,
      `plain: %{{parameters.N | int64}}`,
    ].join("\n"),
    values,
    () => {},
  );
  assert.equal(
    text,
    [
      `values: ["eu"," us"]`,
      `quoted: ["eu","us"]`,
      `single: 7`,
      `- "prod"`,
      `name: Deploy to PROD from 3 jobs`,
      `joined: "eu+us"`,
      `fallback: "none"`,
      `plain: 3`,
    ].join("\n"),
  );
  assert.throws(
    () => substituteParameters("x: %{{parameters.N | sha256sum}}", values, () => {}),
    new PipelineError(
      "%{{parameters.N | sha256sum}}: unknown template function 'sha256sum' (supported locally: splitList, join, int, int64, mul, add, upper, lower, trim, nospace, default)",
    ),
  );
});
