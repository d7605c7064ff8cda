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
