import assert from "node:assert/strict";
import { gitIn, makeRepo, runAgent, writeFiles } from "./support/pipeline_repo.ts";
import { dockerSkipReason, ensureTestImages, TEST_IMAGES } from "./support/test_images.ts";

const dockerSkip = await dockerSkipReason();
if (dockerSkip === undefined) await ensureTestImages();

const AGENT = "agent: {machine: {type: e1-standard-2, os_image: ubuntu2204}}";

Deno.test("agent run runs .semaphore/semaphore.yml: checkout copies the work tree, cache and artifacts cross jobs", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
name: CI
${AGENT}
global_job_config:
  prologue: {commands: [checkout]}
blocks:
  - name: Build
    task:
      jobs:
        - name: Make
          commands:
            - cat uncommitted.txt
            - echo built > out.txt
            - cache store build-$SEMAPHORE_GIT_BRANCH out.txt
            - artifact push workflow out.txt -d result.txt
  - name: Test
    task:
      jobs:
        - name: Check
          commands:
            - cache restore build-$SEMAPHORE_GIT_BRANCH
            - cat out.txt
            - artifact pull workflow result.txt
            - cat result.txt
            - 'test "$PWD" = "$HOME/$SEMAPHORE_GIT_REPO_NAME"'
            - touch mess && rm README
`,
    "README": "hello\n",
  });
  await writeFiles(repo, { "uncommitted.txt": "work in progress\n" });
  const logDir = `${repo}/../${repo.split("/").at(-1)}-logs`;
  const run = await runAgent(repo, ["--jobs", "1", "--log-dir", logDir]);
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /\nwork in progress\n/);
  assert.match(
    run.stdout,
    new RegExp(
      `Copied local working tree ${repo} to .*/home/${repo.split("/").at(-1)} \\(3 files\\)`,
    ),
  );
  assert.match(run.stdout, /HIT: 'build-master', using key 'build-master'\./);
  assert.match(run.stdout, /\$ cat result.txt\nbuilt\n/);
  // Summary table and result.
  assert.match(
    run.stdout,
    /\nBlock +Job +Result +Duration\nBuild +Make +passed +\S+\nTest +Check +passed +\S+\n\nPipeline passed in /,
  );
  // The real repository is untouched.
  assert.equal(await Deno.readTextFile(`${repo}/README`), "hello\n");
  await assert.rejects(() => Deno.stat(`${repo}/mess`));
  // One JSONL log per job, named <nn>-<block>--<job>.
  const logs = [...Deno.readDirSync(logDir)].map((e) => e.name).sort();
  assert.deepEqual(logs, ["01-Build--Make.jsonl", "02-Test--Check.jsonl"]);
  const last = (await Deno.readTextFile(`${logDir}/02-Test--Check.jsonl`)).trim().split("\n").at(
    -1,
  )!;
  assert.equal(JSON.parse(last).result, "passed");
  await Deno.remove(logDir, { recursive: true });
});

Deno.test("agent run exits 1 when a job fails, cancels what depends on it, and runs after_pipeline", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - name: A
    task:
      jobs:
        - {name: Good, commands: ["echo extra=$EXTRA"], env_vars: [{name: EXTRA, value: yaml}]}
        - {name: Bad, commands: ["false", "echo never"]}
      epilogue: {on_fail: {commands: ["echo failed-epilogue $SEMAPHORE_JOB_RESULT"]}}
  - name: B
    task: {jobs: [{name: Later, commands: [echo later]}]}
after_pipeline:
  task:
    jobs: [{name: Report, commands: ["echo result=$SEMAPHORE_PIPELINE_RESULT/$SEMAPHORE_PIPELINE_RESULT_REASON"]}]
`,
  });
  const run = await runAgent(repo, ["--jobs", "2", "--env", "EXTRA=flag"]);
  assert.equal(run.code, 1, run.stdout + run.stderr);
  // --env overrides every job's variables (§2.2).
  assert.match(run.stdout, /\[A \/ Good\] extra=flag\n/);
  assert.match(run.stdout, /\[A \/ Bad\] failed-epilogue failed\n/);
  assert.doesNotMatch(run.stdout, /echo never\n/);
  assert.match(run.stdout, /\[After pipeline \/ Report\] result=failed\/test\n/);
  assert.match(run.stdout, /\nB +Later +canceled +-\n/);
  assert.match(run.stdout, /\nPipeline failed \(test\) in /);
  assert.match(run.stdout, /Run directory kept: /);
});

Deno.test("agent run --print-requests writes requests that plain agent run replays", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - name: Unit
    task:
      env_vars: [{name: GREETING, value: hello}]
      jobs: [{name: Tests, parallelism: 2, commands: ["echo $GREETING $SEMAPHORE_JOB_NAME $SEMAPHORE_JOB_INDEX"]}]
`,
  });
  const dir = `${repo}/requests`;
  const run = await runAgent(repo, ["--print-requests", dir]);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
    "01-Unit--Tests_-_1_2.yml",
    "02-Unit--Tests_-_2_2.yml",
  ]);
  const replay = await runAgent(repo, [`${dir}/02-Unit--Tests_-_2_2.yml`]);
  assert.equal(replay.code, 0, replay.stdout + replay.stderr);
  assert.match(replay.stdout, /\nhello Tests - 2\/2 2\n/);
});

Deno.test("agent run replays a --print-requests request in a sandbox HOME with the local toolbox, leaving the real HOME alone", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - name: Build
    task:
      secrets: [{name: aws}]
      prologue: {commands: [checkout]}
      jobs:
        - name: Make
          commands:
            - cat README
            - cat ~/.aws/credentials
            - grep -c from-secret ~/.aws/credentials
            - echo "key is $DEPLOY_KEY"
            - 'test "$PWD" = "$HOME/$SEMAPHORE_GIT_REPO_NAME"'
`,
    "README": "hello from the tree\n",
  });
  const secrets = await Deno.makeTempDir({ prefix: "pipeline-secrets-" });
  globalThis.addEventListener("unload", () => Deno.removeSync(secrets, { recursive: true }));
  await Deno.writeTextFile(
    `${secrets}/aws.yml`,
    `apiVersion: v1beta
kind: Secret
metadata: {name: aws}
data:
  env_vars: [{name: DEPLOY_KEY, value: deploy-secret-42}]
  files: [{path: ~/.aws/credentials, content: ${btoa("key=from-secret\n")}}]
`,
  );
  const dir = `${secrets}/requests`;
  const run = await runAgent(repo, ["--print-requests", dir, "--secrets-dir", secrets]);
  assert.equal(run.code, 0, run.stderr);
  const home = await Deno.makeTempDir({ prefix: "pipeline-real-home-" });
  globalThis.addEventListener("unload", () => Deno.removeSync(home, { recursive: true }));
  const replay = await runAgent(repo, [`${dir}/01-Build--Make.yml`], { home });
  assert.equal(replay.code, 0, replay.stdout + replay.stderr);
  assert.match(replay.stdout, /\$ cat README\nhello from the tree\n/);
  // The secret's file and variable reach the job, and are redacted as in the pipeline run
  // (DEPLOY_KEY matches no default name pattern: the request's mark names it).
  assert.match(replay.stdout, /\$ cat ~\/.aws\/credentials\n\[REDACTED\]\n/);
  assert.match(replay.stdout, /\$ grep -c from-secret ~\/.aws\/credentials\n1\n/);
  assert.match(replay.stdout, /\$ echo "key is \$DEPLOY_KEY"\nkey is \[REDACTED\]\n/);
  assert.ok(!replay.stdout.includes("deploy-secret-42"), replay.stdout);
  // The secret file went into the sandbox HOME, not the real one, and left with it.
  await assert.rejects(() => Deno.stat(`${home}/.aws`));
  const runs = `${home}/.local/state/semaphore-agent/runs`;
  for (const run of Deno.readDirSync(runs)) {
    assert.deepEqual([...Deno.readDirSync(`${runs}/${run.name}/jobs`)], []);
  }
  // The real repository is untouched by the replay.
  assert.equal(await Deno.readTextFile(`${repo}/README`), "hello from the tree\n");
});

Deno.test("agent run rejects an invalid pipeline with exit 2 and one line naming the YAML path", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - name: A
    task: {jobs: [{commands: [x], matrix: [{env_var: V, values: "1"}]}]}
`,
  });
  const run = await runAgent(repo, ["-l"]);
  assert.equal(run.code, 2);
  assert.equal(
    run.stderr,
    "agent: .semaphore/semaphore.yml: blocks[0].task.jobs[0].matrix[0].values: expected a list\n",
  );
  assert.equal(run.stdout, "");
});

Deno.test("agent run stops before any job when a secret is missing, and redacts secret values", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - name: Deploy
    task:
      secrets: [{name: aws}]
      jobs: [{name: Push, commands: ["echo key=$AWS_KEY", "cat ~/.aws/credentials"]}]
`,
  });
  const missing = await runAgent(repo, []);
  assert.equal(missing.code, 2);
  assert.match(
    missing.stderr,
    /^agent: \.semaphore\/semaphore\.yml: secret 'aws' not found \(used by block 'Deploy'\)/,
  );
  assert.doesNotMatch(missing.stdout, /Block 'Deploy' started/);
  const secretFile = `${repo}/../${repo.split("/").at(-1)}-aws.yml`;
  await Deno.writeTextFile(
    secretFile,
    `apiVersion: v1beta
kind: Secret
metadata: {name: aws}
data:
  env_vars: [{name: AWS_KEY, value: AKIAVERYSECRET}]
  files: [{path: /home/semaphore/.aws/credentials, content: ${
      btoa("[default]\nsecret=FILESECRETVALUE\n")
    }}]
`,
    { mode: 0o600 },
  );
  const run = await runAgent(repo, ["--secret-file", secretFile]);
  await Deno.remove(secretFile);
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /\] key=\[REDACTED\]\n/);
  // Each line of a secret file is a secret value of its own.
  assert.match(
    run.stdout,
    /\$ cat ~\/\.aws\/credentials\n\[Deploy \/ Push\] \[REDACTED\]\n\[Deploy \/ Push\] \[REDACTED\]\n/,
  );
  assert.doesNotMatch(run.stdout, /AKIAVERYSECRET|FILESECRETVALUE/);
});

Deno.test("agent run -l shows the plan with conditions evaluated on --branch, --tag and --pull-request", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - name: Test
    dependencies: []
    task: {jobs: [{name: Unit, commands: [x], matrix: [{env_var: DB, values: [pg, mysql]}]}]}
  - name: Release
    dependencies: [Test]
    run: {when: "tag =~ '^v'"}
    task: {jobs: [{name: Publish, commands: [x]}]}
`,
  });
  const onBranch = await runAgent(repo, ["-l"]);
  assert.equal(onBranch.code, 0, onBranch.stderr);
  assert.equal(
    onBranch.stdout,
    [
      "Stage  Block    Job              Depends on  Condition",
      "1      Test     Unit - DB=pg     -",
      "1      Test     Unit - DB=mysql",
      "2      Release  Publish          Test        run: tag =~ '^v' → false",
      "",
    ].join("\n"),
  );
  const onTag = await runAgent(repo, ["-l", "--tag", "v1.0.0"]);
  assert.match(onTag.stdout, /run: tag =~ '\^v' → true\n/);
  const condition = await runAgent(repo, [
    "--condition",
    "tag =~ '^v' and branch != 'x'",
    "--tag",
    "v2",
  ]);
  assert.equal(condition.stdout, "tag =~ '^v' and branch != 'x' → true\n");
  const picked = await runAgent(repo, ["-l", "--matrix", "DB=mysql", "-b", "Release"]);
  assert.doesNotMatch(picked.stdout, /DB=pg/);
  assert.match(picked.stdout, /Unit - DB=mysql/);
  // Defaults from ./.agentrc apply to pipelines, one flag per line.
  await Deno.writeTextFile(`${repo}/.agentrc`, "--matrix DB=pg\n");
  const defaults = await runAgent(repo, ["-l"]);
  assert.doesNotMatch(defaults.stdout, /DB=mysql/);
  assert.match(defaults.stdout, /Unit - DB=pg/);
});

Deno.test("agent run keeps job request files as they were and refuses pipeline flags for them", async () => {
  const repo = await makeRepo({
    "job.yml": "commands: [{directive: echo plain job}]\n",
    // Pipeline defaults do not stop a job file from running.
    ".agentrc": "# defaults for pipelines\n--jobs 1\n--no-cache\n",
  });
  const run = await runAgent(repo, ["job.yml"]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /\$ echo plain job\nplain job\n/);
  const flagged = await runAgent(repo, ["job.yml", "--jobs", "2"]);
  assert.equal(flagged.code, 2);
  assert.equal(
    flagged.stderr,
    "agent: job.yml: --jobs is a pipeline flag, and this is a job request file\n",
  );
});

Deno.test("agent run stops every job on SIGINT and exits 130", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - name: Slow
    task: {jobs: [{name: One, commands: ["echo ready-one; sleep 300"]}, {name: Two, commands: ["echo ready-two; sleep 300"]}]}
  - name: After
    task: {jobs: [{name: Never, commands: [echo never]}]}
`,
  });
  const home = await Deno.makeTempDir({ prefix: "pipeline-home-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      new URL("../main.ts", import.meta.url).pathname,
      "run",
      "--jobs",
      "2",
    ],
    cwd: repo,
    env: { HOME: home, PATH: Deno.env.get("PATH")!, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const guard = setTimeout(() => child.kill("SIGKILL"), 120_000);
  let out = "";
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  while (!(/ready-one\n/.test(out) && /ready-two\n/.test(out))) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  child.kill("SIGINT");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  const status = await child.status;
  clearTimeout(guard);
  await child.stderr.cancel();
  assert.equal(status.code, 130, out);
  assert.match(out, /\nPipeline stopped \(user\) in /);
  assert.doesNotMatch(out, /echo never/);
  // No job process survives.
  const ps = new TextDecoder().decode(
    new Deno.Command("ps", { args: ["-eo", "args"], stdout: "piped" }).outputSync().stdout,
  );
  assert.doesNotMatch(ps, /ready-one; sleep 300/);
  await Deno.remove(home, { recursive: true });
});

Deno.test({
  name: "agent run runs agent.containers jobs in containers with the local toolbox and sidecars",
  ignore: dockerSkip !== undefined,
  fn: async () => {
    const repo = await makeRepo({
      ".semaphore/semaphore.yml": `version: v1.0
agent:
  machine: {type: e1-standard-2}
  containers:
    - {name: main, image: "${TEST_IMAGES.bash}"}
    - {name: pong, image: "${TEST_IMAGES.pong}"}
blocks:
  - name: C
    task:
      jobs:
        - name: Inside
          commands:
            - checkout
            - cat README
            - echo kept > out && cache store ctr-key out
            - 'echo type=$SEMAPHORE_AGENT_MACHINE_ENVIRONMENT_TYPE id=$SEMAPHORE_JOB_ID'
            - nc pong 5432 </dev/null
`,
      "README": "from the work tree\n",
    });
    const run = await runAgent(repo, ["--jobs", "1"]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /\$ Loading the local toolbox\n/);
    assert.match(run.stdout, /\$ cat README\nfrom the work tree\n/);
    assert.match(run.stdout, /Uploading 'out' with cache key 'ctr-key'\.\.\.\n/);
    const id = /\ntype=container id=(\S+)\n/.exec(run.stdout)?.[1];
    assert.ok(id, run.stdout);
    assert.match(run.stdout, /\npong\n/);
    const left = new TextDecoder().decode(
      new Deno.Command("docker", {
        args: ["ps", "-aq", "--filter", `label=semaphore-agent.job=${id}`],
        stdout: "piped",
      }).outputSync().stdout,
    );
    assert.equal(left.trim(), "", "no container is left");
  },
});

Deno.test("agent run --promote runs the promoted pipeline with its parameters after the pipeline", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - {name: Build, task: {jobs: [{name: B, commands: [echo built]}]}}
promotions:
  - name: Deploy
    pipeline_file: deploy.yml
    parameters: {env_vars: [{name: TARGET, required: true}]}
`,
    ".semaphore/deploy.yml": `version: v1.0
name: Deploy \${{parameters.TARGET}}
${AGENT}
blocks:
  - name: Ship
    task:
      jobs:
        - {name: S, commands: ["echo to=$TARGET promoted=$SEMAPHORE_PIPELINE_PROMOTION name=$SEMAPHORE_PIPELINE_NAME"]}
`,
  });
  const missing = await runAgent(repo, ["--promote", "Deploy"]);
  assert.equal(missing.code, 2);
  assert.equal(
    missing.stderr,
    "agent: .semaphore/semaphore.yml: promotion 'Deploy': parameter TARGET is required; give --param TARGET=VALUE\n",
  );
  assert.doesNotMatch(missing.stdout, /built/);
  const run = await runAgent(repo, [
    "--promote",
    "Deploy",
    "--param",
    "TARGET=prod",
    "--jobs",
    "1",
  ]);
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /\n▶ Promotion 'Deploy' \(deploy\.yml, manual\)\n/);
  assert.match(run.stdout, /\nto=prod promoted=true name=Deploy prod\n/);
});

Deno.test("agent run --promote expands %{{...}} in the promoted pipeline and names that file when it cannot", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - {name: Build, task: {jobs: [{name: B, commands: [echo built]}]}}
promotions:
  - name: Deploy
    pipeline_file: deploy.yml
    parameters: {env_vars: [{name: REGIONS, default_value: "eu,us"}]}
`,
    ".semaphore/deploy.yml": `version: v1.0
${AGENT}
blocks:
  - name: Ship
    task:
      jobs:
        - name: S
          matrix: [{env_var: REGION, values: "%{{parameters.REGIONS | splitList \",\"}}"}]
          commands: ["echo region=$REGION"]
`,
  });
  const run = await runAgent(repo, ["--promote", "Deploy", "--jobs", "1"]);
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /\nregion=eu\n/);
  assert.match(run.stdout, /\nregion=us\n/);
  await Deno.writeTextFile(
    `${repo}/.semaphore/deploy.yml`,
    `version: v1.0\n${AGENT}\nname: "%{{parameters.REGIONS | sha1sum}}"\nblocks: []\n`,
  );
  const bad = await runAgent(repo, ["--promote", "Deploy"]);
  assert.equal(bad.code, 2);
  assert.equal(
    bad.stderr,
    `agent: ${repo}/.semaphore/deploy.yml: %{{parameters.REGIONS | sha1sum}}: unknown template function 'sha1sum' (supported locally: splitList, join, int, int64, mul, add, upper, lower, trim, nospace, default)\n`,
  );
});

Deno.test("agent run --json prints block, job and pipeline events as JSON lines", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - {name: Only, task: {jobs: [{name: J, commands: [echo hi]}]}}
`,
  });
  const run = await runAgent(repo, ["--json"]);
  assert.equal(run.code, 0, run.stderr);
  const records = run.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(records[0], { event: "block_started", block: "Only", jobs: 1 });
  assert.ok(
    records.some((r) =>
      r.event === "cmd_output" && r.output === "hi\n" && r.block === "Only" && r.job === "J"
    ),
  );
  const last = records.at(-1);
  assert.equal(last.event, "pipeline_finished");
  assert.equal(last.result, "passed");
  assert.deepEqual(
    last.jobs.map((
      j: { block: string; job: string; result: string },
    ) => [j.block, j.job, j.result]),
    [["Only", "J", "passed"]],
  );
});

Deno.test("agent run -s NAME:VAR sets a secret's variable from the flag or the environment", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - name: D
    task:
      secrets: [{name: creds}]
      jobs: [{name: J, commands: ["test \\"$USER_NAME/$TOKEN\\" = 'deployer/tok-from-env' && echo ok-secrets"]}]
`,
  });
  const run = await runAgent(repo, [
    "-s",
    "creds:USER_NAME=deployer",
    "-s",
    "creds:TOKEN",
    "--jobs",
    "1",
  ], {
    env: { TOKEN: "tok-from-env" },
  });
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /\nok-secrets\n/);
  assert.doesNotMatch(run.stdout, /tok-from-env/);
});

Deno.test("agent run fails a job with more than 300 environment variables, not the file", async () => {
  const many = Array.from({ length: 300 }, (_, i) => `{name: V${i}, value: "x"}`).join(", ");
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - name: A
    dependencies: []
    task: {jobs: [{name: Many, commands: [echo never-runs], env_vars: [${many}]}]}
  - name: B
    dependencies: []
    task: {jobs: [{name: Few, commands: [echo fine]}]}
`,
  });
  const run = await runAgent(repo, ["--jobs", "2"]);
  assert.equal(run.code, 1, run.stdout + run.stderr);
  assert.match(
    run.stdout,
    /\[A \/ Many\] Cannot start the job: it has \d+ environment variables, more than the 300 Semaphore allows\n/,
  );
  assert.doesNotMatch(run.stdout, /never-runs\n/);
  assert.match(run.stdout, /\nA +Many +failed /);
  assert.match(run.stdout, /\nB +Few +passed /);
});

Deno.test("agent run -w runs the pipeline again after a change and stops on Ctrl-C", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - {name: A, task: {jobs: [{name: J, commands: ["cat $SEMAPHORE_LOCAL_SOURCE/value.txt"]}]}}
`,
    "value.txt": "first\n",
  });
  const home = await Deno.makeTempDir({ prefix: "pipeline-home-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      new URL("../main.ts", import.meta.url).pathname,
      "run",
      "-w",
      "--jobs",
      "1",
    ],
    cwd: repo,
    env: { HOME: home, PATH: Deno.env.get("PATH")!, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // A hung child fails the test instead of hanging it.
  const guard = setTimeout(() => child.kill("SIGKILL"), 120_000);
  let out = "";
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const until = async (pattern: RegExp) => {
    while (!pattern.test(out)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`ended before ${pattern}: ${out}`);
      out += value;
    }
  };
  await until(/Watching for changes/);
  await Deno.writeTextFile(`${repo}/value.txt`, "second\n");
  await until(/\nsecond\n[\s\S]*Watching for changes/);
  child.kill("SIGINT");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  const status = await child.status;
  clearTimeout(guard);
  await child.stderr.cancel();
  assert.equal(status.code, 130, out);
  assert.match(out, /\nfirst\n/);
  assert.match(out, /\nChange seen: running again\n/);
  await Deno.remove(home, { recursive: true });
});

Deno.test("agent run -l evaluates a change_in whose range is $SEMAPHORE_GIT_COMMIT_RANGE as a run does", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": `version: v1.0
${AGENT}
blocks:
  - name: Lib
    run:
      when: "change_in('/lib/', {branch_range: '$SEMAPHORE_GIT_COMMIT_RANGE'})"
    task: {jobs: [{name: L, commands: [echo lib]}]}
`,
  });
  gitIn(repo, "checkout", "-q", "-b", "feature");
  await writeFiles(repo, { "lib/a.txt": "1\n" });
  gitIn(repo, "add", "-A");
  gitIn(repo, "commit", "-q", "-m", "lib");
  const list = await runAgent(repo, ["-l"]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(
    list.stdout,
    /run: change_in\('\/lib\/', \{branch_range: '\$SEMAPHORE_GIT_COMMIT_RANGE'\}\) → true \(1 of 1 changed files match\)\n/,
  );
});
