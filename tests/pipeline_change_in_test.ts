import assert from "node:assert/strict";
import { evaluateChangeIn, matchesPattern } from "../lib/run/pipeline/change_in.ts";
import { readGitFacts } from "../lib/run/pipeline/git_facts.ts";
import { PipelineError } from "../lib/run/pipeline/schema.ts";
import { gitIn, makeRepo, writeFiles } from "./support/pipeline_repo.ts";

const PIPELINE = "/.semaphore/semaphore.yml";

Deno.test("matchesPattern() is a prefix match without * and a whole-path glob with it (§5.3)", () => {
  assert.equal(matchesPattern("/javascript/a.js", "/java"), true);
  assert.equal(matchesPattern("/javascript/a.js", "/java/"), false);
  assert.equal(matchesPattern("/java/a.js", "/java/"), true);
  assert.equal(matchesPattern("/lib/a/b.ts", "/lib/**/*.ts"), true);
  assert.equal(matchesPattern("/lib/b.ts", "/lib/*.ts"), true);
  assert.equal(matchesPattern("/lib/a/b.ts", "/lib/*.ts"), false);
});

Deno.test("evaluateChangeIn() on a branch diffs from the merge base with the default branch, uncommitted work included", async () => {
  const repo = await makeRepo({
    ".semaphore/semaphore.yml": "x\n",
    "lib/a.ts": "1\n",
    "docs/r.md": "1\n",
  });
  gitIn(repo, "checkout", "-q", "-b", "feature");
  await writeFiles(repo, { "lib/a.ts": "2\n" });
  gitIn(repo, "commit", "-qam", "change lib");
  await writeFiles(repo, { "web/new.js": "untracked\n" });
  const facts = await readGitFacts(repo, {});
  const ctx = { facts, pipelineFile: PIPELINE };
  assert.deepEqual(evaluateChangeIn(["/lib"], ctx), {
    value: true,
    detail: "1 of 2 changed files match",
  });
  assert.equal(evaluateChangeIn(["/docs"], ctx).value, false);
  assert.equal(evaluateChangeIn([["/docs", "/web/"]], ctx).value, true);
  // Relative patterns start at the pipeline file's directory.
  assert.equal(evaluateChangeIn(["lib"], ctx).value, false);
  assert.equal(evaluateChangeIn(["../lib"], ctx).value, true);
  assert.equal(evaluateChangeIn(["/lib", { exclude: ["/lib/a.ts"] }], ctx).value, false);
  assert.equal(
    evaluateChangeIn(["/lib"], {
      facts: await readGitFacts(repo, { committed: true }),
      pipelineFile: PIPELINE,
    }).value,
    true,
  );
  assert.equal(
    evaluateChangeIn(["/web"], {
      facts: await readGitFacts(repo, { committed: true }),
      pipelineFile: PIPELINE,
    }).value,
    false,
  );
});

Deno.test("evaluateChangeIn() is true when the tracked pipeline file changed", async () => {
  const repo = await makeRepo({ ".semaphore/semaphore.yml": "x\n", "lib/a.ts": "1\n" });
  gitIn(repo, "checkout", "-q", "-b", "feature");
  await writeFiles(repo, { ".semaphore/semaphore.yml": "y\n" });
  const facts = await readGitFacts(repo, {});
  assert.equal(evaluateChangeIn(["/lib"], { facts, pipelineFile: PIPELINE }).value, true);
  assert.equal(
    evaluateChangeIn(["/lib", { pipeline_file: "ignore" }], { facts, pipelineFile: PIPELINE })
      .value,
    false,
  );
});

Deno.test("evaluateChangeIn() on the default branch looks at HEAD~1 to the working tree", async () => {
  const repo = await makeRepo({ "a/1": "1\n", "b/1": "1\n" }, "main");
  await writeFiles(repo, { "b/1": "2\n" });
  gitIn(repo, "commit", "-qam", "second");
  const facts = await readGitFacts(repo, { defaultBranch: "main" });
  assert.equal(evaluateChangeIn(["/b"], { facts, pipelineFile: PIPELINE }).value, true);
  assert.equal(evaluateChangeIn(["/a"], { facts, pipelineFile: PIPELINE }).value, false);
});

Deno.test("evaluateChangeIn() is on_tags on a tag pipeline and needs the default branch to exist", async () => {
  const repo = await makeRepo({ "a/1": "1\n" }, "main");
  const tag = await readGitFacts(repo, { tag: "v1" });
  assert.equal(evaluateChangeIn(["/zzz"], { facts: tag, pipelineFile: PIPELINE }).value, true);
  assert.equal(
    evaluateChangeIn(["/zzz", { on_tags: false }], { facts: tag, pipelineFile: PIPELINE }).value,
    false,
  );
  gitIn(repo, "checkout", "-q", "-b", "feature");
  const onFeature = await readGitFacts(repo, {});
  assert.throws(
    () => evaluateChangeIn(["/a"], { facts: onFeature, pipelineFile: PIPELINE }),
    new PipelineError(
      "change_in: unknown git reference 'master'; use --default-branch or fetch it",
    ),
  );
});

Deno.test("readGitFacts() light reads the branch from .git/HEAD without git", async () => {
  const repo = await makeRepo({ "a": "1\n" }, "trunk");
  gitIn(repo, "checkout", "-q", "-b", "feature/x");
  const light = await readGitFacts(repo, {}, true);
  assert.equal(light.branch, "feature/x");
  assert.equal(light.sha, "");
  const full = await readGitFacts(repo, {});
  assert.equal(full.branch, "feature/x");
  assert.equal(full.sha, gitIn(repo, "rev-parse", "HEAD"));
  assert.equal(full.author, "Dev Eloper");
});

Deno.test("readGitFacts() leaves the credentials of an https remote URL out of the git facts", async () => {
  const repo = await makeRepo({ "a": "1\n" });
  const cases: [string, string][] = [
    ["https://user:ghp_remoteToken123@github.com/o/r.git", "https://github.com/o/r.git"],
    ["https://ghp_remoteToken123@github.com/o/r.git", "https://github.com/o/r.git"],
    ["ssh://git:s3cretpass@example.com/o/r.git", "ssh://git@example.com/o/r.git"],
    ["ssh://git@bitbucket.org/o/r", "ssh://git@bitbucket.org/o/r"],
    ["git@github.com:o/r.git", "git@github.com:o/r.git"],
  ];
  for (const [remote, url] of cases) {
    gitIn(repo, "config", "remote.origin.url", remote);
    const facts = await readGitFacts(repo, {});
    assert.equal(facts.url, url);
    assert.equal(facts.slug, "o/r");
  }
});
