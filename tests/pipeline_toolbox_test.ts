import assert from "node:assert/strict";
import {
  prepareJobHome,
  prepareRun,
  type RunDirs,
  toolboxEnv,
} from "../lib/run/pipeline/toolbox.ts";
import { gitIn, makeRepo } from "./support/pipeline_repo.ts";

const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "toolbox-test-" }));
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const realHome = `${root}/realhome`;
await Deno.mkdir(realHome);
const dirs: RunDirs = await prepareRun({
  state: `${root}/state`,
  cache: `${root}/cache`,
  projectId: "proj",
  workflowNumber: 3,
  workflowId: "0123456789-wf",
});

let jobs = 0;
/** Runs `script` in a job shell as `agent run` sets it up (login bash, sandbox HOME). */
async function inJob(
  script: string,
  options: { source?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; out: string; home: string }> {
  const { home, env } = await prepareJobHome({
    dirs,
    jobDir: `${dirs.runDir}/jobs/${++jobs}`,
    baseEnv: { HOME: realHome, PATH: Deno.env.get("PATH")!, LANG: "C.UTF-8" },
    toolbox: toolboxEnv(dirs, {
      sourceDir: options.source ?? root,
      checkout: "copy",
      noCache: false,
      strictVersions: false,
      allowSudo: false,
      userProfile: false,
    }, realHome),
    userProfile: false,
  });
  const out = await new Deno.Command("bash", {
    args: ["--login", "-c", script],
    env: {
      ...env,
      SEMAPHORE_JOB_ID: `job-${jobs}`,
      SEMAPHORE_WORKFLOW_ID: "wf",
      SEMAPHORE_PROJECT_ID: "proj",
      SEMAPHORE_PIPELINE_ID: "ppl",
      SEMAPHORE_GIT_BRANCH: "main",
      ...options.env,
    },
    clearEnv: true,
    cwd: home,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, out: text, home };
}

const GIT = (repo: string) => ({
  SEMAPHORE_GIT_URL: repo,
  SEMAPHORE_GIT_DIR: "app",
  SEMAPHORE_GIT_SHA: "x",
});

Deno.test("checkout copies tracked and untracked, not ignored, files and cds in", async () => {
  const repo = await makeRepo({ "a.txt": "a\n", ".gitignore": "build/\n" });
  await Deno.mkdir(`${repo}/build`);
  await Deno.writeTextFile(`${repo}/build/big`, "ignored\n");
  await Deno.writeTextFile(`${repo}/new.txt`, "new\n");
  const r = await inJob("checkout && pwd && ls -A | sort", { source: repo, env: GIT(repo) });
  assert.equal(r.code, 0, r.out);
  assert.equal(
    r.out,
    `Copied local working tree ${repo} to ${r.home}/app (3 files)\n${r.home}/app\n.git\n.gitignore\na.txt\nnew.txt\n`,
  );
});

Deno.test("checkout refuses a target that is the source tree or holds the real home", async () => {
  const repo = await makeRepo({ "a.txt": "a\n" });
  const intoSource = await inJob("checkout", {
    source: repo,
    env: { ...GIT(repo), SEMAPHORE_GIT_DIR: repo },
  });
  assert.equal(intoSource.code, 1);
  assert.equal(
    intoSource.out,
    `checkout: refusing to replace '${repo}': it is or holds the source tree ${repo}\n`,
  );
  const home = await inJob("checkout", {
    source: repo,
    env: { ...GIT(repo), SEMAPHORE_GIT_DIR: root },
  });
  assert.equal(home.code, 1);
  assert.equal(
    home.out,
    `checkout: refusing to replace '${root}': it is your home directory or holds it\n`,
  );
  assert.equal(await Deno.readTextFile(`${repo}/a.txt`), "a\n");
  const unset = await inJob("checkout", { source: repo });
  assert.equal(unset.code, 1);
  assert.match(
    unset.out,
    /^\[CHECKOUT ERROR\] Some of these variables are unset:\nSEMAPHORE_GIT_URL=\n/,
  );
});

Deno.test("cache store and restore across jobs: exact key, regex fallback, MISS", async () => {
  const stored = await inJob(
    "mkdir -p deps && echo v1 > deps/f && cache store deps-main-abc deps && cache store deps-main-abc deps",
  );
  assert.equal(stored.code, 0, stored.out);
  assert.match(stored.out, /Key 'deps-main-abc' already exists\.\n$/);
  const restored = await inJob(
    "cache restore deps-main-zzz,deps-main && cat deps/f && cache restore nothing-here",
  );
  assert.equal(restored.code, 0, restored.out);
  assert.match(
    restored.out,
    /MISS: 'deps-main-zzz'\.\nHIT: 'deps-main', using key 'deps-main-abc'\.\n/,
  );
  assert.match(restored.out, /\nv1\nMISS: 'nothing-here'\.\n$/);
  const hasKey = await inJob("cache has_key deps-main-abc; echo $?; cache has_key nope; echo $?");
  assert.match(hasKey.out, /\n0\n.*\n1\n$/s);
});

Deno.test("artifact push and pull share workflow files and refuse to overwrite without -f", async () => {
  const pushed = await inJob(
    "echo data > r.txt && artifact push workflow r.txt && artifact push workflow r.txt; echo rc=$?",
  );
  assert.match(
    pushed.out,
    /^File 'r\.txt' pushed to 'artifacts\/workflows\/wf\/r\.txt' for current workflow\.\n/,
  );
  assert.match(pushed.out, /already exists; use --force to overwrite it\.\nrc=1\n$/);
  const pulled = await inJob(
    "artifact pull workflow r.txt && cat r.txt && artifact pull workflow missing; echo rc=$?",
  );
  assert.match(pulled.out, /\ndata\n/);
  assert.match(pulled.out, /rc=1\n$/);
});

Deno.test("retry reruns a failing command and reports each attempt", async () => {
  const r = await inJob("retry -t 3 'echo try; false'; echo rc=$?");
  assert.equal(
    r.out,
    "try\n[1/3] Execution Failed with exit status 1. Retrying.\ntry\n[2/3] Execution Failed with exit status 1. Retrying.\ntry\n[3/3] Execution Failed with exit status 1. No more retries.\nrc=1\n",
  );
  const ok = await inJob(
    "n=0; retry --times 2 test -e marker || touch marker; retry -t 2 test -e marker; echo rc=$?",
  );
  assert.match(ok.out, /rc=0\n$/);
});

Deno.test("sem-context and test-results keep workflow data between jobs", async () => {
  const put = await inJob(
    "sem-context put release=1.2.3 && sem-context put release=x; echo rc=$?; sem-context put 'bad key=1'; echo rc=$?",
  );
  assert.equal(
    put.out,
    "sem-context: key 'release' already exists\nrc=1\nsem-context: invalid key 'bad key'\nrc=3\n",
  );
  const get = await inJob("sem-context get release; sem-context get nope; echo rc=$?");
  assert.equal(get.out, "1.2.3\nsem-context: key 'nope' does not exist\nrc=1\n");
  const junit = await inJob(
    `cat > r.xml <<'X'
<testsuites><testsuite name="a" tests="3" failures="1" errors="0" skipped="1"></testsuite>
<testsuite name="b" tests="2" failures="0" errors="1" skipped="0"/></testsuites>
X
test-results publish r.xml`,
  );
  assert.equal(junit.code, 0, junit.out);
  assert.equal(junit.out, "tests: 5, failures: 1, errors: 1, skipped: 1\n");
});

Deno.test("checkout of a linked work tree gives the copy a repository of its own", async () => {
  const repo = await makeRepo({ "a.txt": "a\n" });
  const worktree = `${repo}-wt`;
  gitIn(repo, "worktree", "add", "-q", worktree);
  globalThis.addEventListener("unload", () => Deno.removeSync(worktree, { recursive: true }));
  await Deno.writeTextFile(`${worktree}/new.txt`, "new\n");
  const r = await inJob(
    "checkout >/dev/null && test -d .git && git status --porcelain && echo b >> a.txt && git -c user.name=j -c user.email=j@x commit -qam local-only && git log -1 --format=%s",
    { source: worktree, env: GIT(worktree) },
  );
  assert.equal(r.code, 0, r.out);
  assert.equal(r.out, "?? new.txt\nlocal-only\n");
  // The commit made in the job exists only in the copy.
  assert.equal(gitIn(worktree, "log", "-1", "--format=%s"), "first");
});

Deno.test("test-results with --toolbox-passthrough runs the real CLI from the PATH", async () => {
  const bin = `${root}/realbin`;
  await Deno.mkdir(bin, { recursive: true });
  await Deno.writeTextFile(`${bin}/test-results`, '#!/bin/sh\necho real test-results "$@"\n', {
    mode: 0o755,
  });
  // (A login shell's /etc/profile may reset PATH: the real CLI's dir is put after the toolbox.)
  const r = await inJob(`PATH="$HOME/.toolbox/bin:${bin}:$PATH" test-results publish r.xml`, {
    env: { SEMAPHORE_LOCAL_TOOLBOX_PASSTHROUGH: "1" },
  });
  assert.equal(r.out, "real test-results publish r.xml\n");
});

Deno.test("a job shell keeps the invoking PATH after the login profile, toolbox first", async () => {
  const r = await inJob('echo "$PATH"');
  const path = Deno.env.get("PATH")!;
  assert.equal(r.out, `${r.home}/.toolbox/bin:${r.home}/.toolbox/bin-host:${path}\n`);
});
