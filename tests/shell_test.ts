/**
 * The shell executor (executors/shell.ts) through the job engine: where job files land on the
 * host and with which mode. The lifecycle itself is tests/job_test.ts.
 */

import assert from "node:assert/strict";
import { makeHome, runTestJob, simplify } from "./support/job_harness.ts";
import { encodeBase64 } from "../lib/util/base64.ts";
import { resolveHostFilePath } from "../executors/shell.ts";

Deno.test("resolveHostFilePath() keeps absolute paths, expands ~ and cleans relative ones", () => {
  assert.equal(resolveHostFilePath("/etc/x", "/home/u"), "/etc/x");
  // SEMAPHORE_COMPAT.md §4.2: a path starting with ~ has every ~ replaced (a quirk we keep).
  assert.equal(resolveHostFilePath("~/a/~b", "/home/u"), "/home/u/a//home/ub");
  assert.equal(resolveHostFilePath("a/../b/./c", "/home/u"), "/home/u/b/c");
});

Deno.test("shell executor joins relative file paths to HOME as Go's filepath.Join does (§4.2, §9.5)", async () => {
  const home = await makeHome();
  const { result, events } = await runTestJob({
    home,
    request: {
      files: [
        { path: "a/../rel.txt", content: encodeBase64("x"), mode: "0644" },
        { path: "./dot.txt", content: encodeBase64("x"), mode: "0644" },
        { path: "dir//double.txt", content: encodeBase64("x"), mode: "0644" },
      ],
    },
  });
  assert.equal(result, "passed");
  assert.equal(
    simplify(events)[4],
    `Injecting ${home}/rel.txt with file mode 0644\n` +
      `Injecting ${home}/dot.txt with file mode 0644\n` +
      `Injecting ${home}/dir/double.txt with file mode 0644\n`,
  );
  await Deno.remove(home, { recursive: true });
});

Deno.test("shell executor keeps only the permission bits of file modes, as Go's os.Chmod(fs.FileMode(n)) (§9.5)", async () => {
  const home = await makeHome();
  const { result } = await runTestJob({
    home,
    request: {
      files: [
        { path: "suid", content: encodeBase64("x"), mode: "4755" },
        { path: "sticky", content: encodeBase64("x"), mode: "1777" },
      ],
    },
  });
  assert.equal(result, "passed");
  assert.equal((await Deno.stat(`${home}/suid`)).mode! & 0o7777, 0o755);
  assert.equal((await Deno.stat(`${home}/sticky`)).mode! & 0o7777, 0o777);
  await Deno.remove(home, { recursive: true });
});

/** Prints the mode and owner of the env file named in ~/.bash_profile, its dir and the command file. */
const SHOW_MODES = `f=$(grep -o '/[^ ]*/\\.env-[0-9]*' ~/.bash_profile | head -n 1)
d=$(dirname "$f")
stat -c '%a %u' "$f" "$d" "$d/current-agent-cmd"
cat ~/.bash_profile`;

Deno.test("createShellExecutor() keeps env and command files 0600 in a 0700 dir of the agent's user", async () => {
  const home = await Deno.makeTempDir({ prefix: "shell_test_home_" });
  await Deno.writeTextFile(`${home}/.bash_profile`, "# the user's own line\n");
  try {
    const run = await runTestJob({
      request: {
        env_vars: [{ name: "SECRET", value: encodeBase64("s3cr3t") }],
        commands: [{ directive: SHOW_MODES }],
      },
      selfHosted: false, // hosted: also the .bash_profile line
      home,
    });
    assert.equal(run.result, "passed");
    const log = simplify(run.events);
    const output = log[log.indexOf(`directive: ${SHOW_MODES}`) + 1];
    const uid = Deno.uid();
    const lines = output.split("\n");
    assert.deepEqual(lines.slice(0, 3), [`600 ${uid}`, `700 ${uid}`, `600 ${uid}`], output);
    const profile = lines.slice(3);
    const envFile = /source '?(\/[^ ']*\/\.env-\d+)/.exec(profile.join("\n"))?.[1];
    assert.ok(envFile, output);
    assert.deepEqual(profile, [
      "# the user's own line",
      `if [ -O ${envFile} ] && [ ! -L ${envFile} ]; then source ${envFile}; fi`,
      "",
    ]);
    // At cleanup the file, its dir and the profile lines are gone; the user's line stays.
    await assert.rejects(() => Deno.stat(envFile.slice(0, envFile.lastIndexOf("/"))));
    assert.equal(await Deno.readTextFile(`${home}/.bash_profile`), "# the user's own line\n");
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
