/**
 * Regression tests from a review of the job engine against SEMAPHORE_COMPAT.md §4, §5, §9 and
 * DECISIONS.md: each pins one reproduced difference from the original agent.
 */

import assert from "node:assert/strict";
import { makeHome, runTestJob, simplify } from "./support/job_harness.ts";
import { encodeBase64 } from "../lib/util/base64.ts";

const cmd = (directive: string, alias = "") => ({ directive, alias });

Deno.test("review: an env var value that is not UTF-8 reaches the job byte for byte (§9.4)", async () => {
  // The original writes `string(decoded)`: raw bytes, no U+FFFD replacement.
  const { result, events } = await runTestJob({
    request: {
      env_vars: [{ name: "LATIN1", value: btoa("caf\xe9") }],
      commands: [cmd('printf %s "$LATIN1" | od -An -tx1')],
    },
  });
  assert.equal(result, "passed");
  assert.equal(simplify(events)[7], " 63 61 66 e9\n");
});

Deno.test("review: relative file paths are joined to HOME as Go's filepath.Join does (§4.2, §9.5)", async () => {
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

Deno.test("review: file modes keep only the permission bits, as Go's os.Chmod(fs.FileMode(n)) (§9.5)", async () => {
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

Deno.test("review: `exit 130` ends the shell: the job fails as in the original, it is not 'stopped' (§5.4, DECISIONS.md 8)", async () => {
  const { result, events } = await runTestJob({
    request: {
      commands: [cmd("export SEMAPHORE_JOB_RESULT=passed"), cmd("exit 130")],
      epilogue_always_commands: [cmd("echo epilogue")],
    },
  });
  // DECISIONS.md 8 changes only the exit code the command reports (130, not 1). The shell is
  // gone, so `$SEMAPHORE_JOB_RESULT` cannot be read: the original ends this job `failed` and
  // runs the epilogues (each reporting exit code 1); we end it `stopped` with
  // "SEMAPHORE_JOB_RESULT is set to ''", ignoring the `passed` the job exported.
  assert.ok(!simplify(events).includes("directive: Checking job result"));
  assert.equal(result, "failed");
});
