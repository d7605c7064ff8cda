/**
 * Tests of `tests/support/check_boundaries.ts` (`deno task boundaries`): which arrows between
 * the areas it lets through and which it flags.
 *
 * @module
 */

import assert from "node:assert/strict";
import { checkFile, checkRepository, scanImports } from "./support/check_boundaries.ts";
import { ROOT } from "./support/compiled_agent.ts";

/** The rules `file` breaks with `source` as its text. */
function broken(file: string, source: string): string[] {
  return checkFile(file, scanImports(source)).map((v) => `${v.specifier}: ${v.rule}`);
}

Deno.test("the repository keeps its arrows", async () => {
  assert.deepEqual(await checkRepository(ROOT), []);
});

Deno.test("a mode reaches the executors through for_job.ts and shell_ahead.ts alone", () => {
  assert.deepEqual(
    broken(
      "lib/run/local_run.ts",
      `import { createExecutor } from "../../executors/for_job.ts";\n` +
        `import { startShellAhead } from "../../executors/shell_ahead.ts";\n`,
    ),
    [],
  );
  assert.deepEqual(
    broken("server/serve.ts", `import { JobShell } from "../executors/job_shell.ts";\n`),
    [
      "../executors/job_shell.ts: modes import executors only through " +
      "executors/for_job.ts and executors/shell_ahead.ts",
    ],
  );
});

Deno.test("the engine imports no executor and no mode; main.ts loads modes with import() only", () => {
  assert.equal(
    broken("lib/engine/job.ts", `import { createExecutor } from "../../executors/for_job.ts";\n`)
      .length,
    1,
  );
  assert.equal(
    broken("lib/engine/job.ts", `import { runFile } from "../run/run_file.ts";\n`).length,
    1,
  );
  assert.deepEqual(
    broken("main.ts", `const { runFile } = await import("./lib/run/run_file.ts");\n`),
    [],
  );
  assert.equal(broken("main.ts", `import { runFile } from "./lib/run/run_file.ts";\n`).length, 1);
});
