import assert from "node:assert/strict";
import { createLogger } from "../lib/util/agent_log.ts";
import { runShutdownHook, shutdownReasonFromApi } from "../lib/start/shutdown_hook.ts";

Deno.test("shutdownReasonFromApi() maps the API reasons", () => {
  assert.equal(shutdownReasonFromApi("idle"), "IDLE");
  assert.equal(shutdownReasonFromApi("job-finished"), "JOB_FINISHED");
  assert.equal(shutdownReasonFromApi("requested"), "REQUESTED");
  assert.equal(shutdownReasonFromApi("interrupted"), "INTERRUPTED");
  assert.equal(shutdownReasonFromApi(""), "UNKNOWN");
  assert.equal(shutdownReasonFromApi("whatever"), "UNKNOWN");
});

Deno.test("runShutdownHook() logs the combined output and failures", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lines: string[] = [];
    const logger = createLogger({ stdout: false, onLine: (l) => lines.push(l) });
    await Deno.writeTextFile(
      `${dir}/ok.sh`,
      'echo "out $SEMAPHORE_AGENT_SHUTDOWN_REASON $0"\necho err >&2\n',
    );
    await runShutdownHook(`${dir}/ok.sh`, "IDLE", logger);
    assert.ok(
      lines.some((l) => l.endsWith(`: Output: out IDLE ${dir}/ok.sh\nerr\n\n`)),
      lines.join(""),
    );
    lines.length = 0;
    await Deno.writeTextFile(`${dir}/bad.sh`, "echo failing\nexit 3\n");
    await runShutdownHook(`${dir}/bad.sh`, "UNKNOWN", logger);
    assert.ok(lines.some((l) => l.endsWith(": Error executing shutdown hook: exit status 3\n")));
    assert.ok(lines.some((l) => l.endsWith(": Output: failing\n\n")));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runShutdownHook() keeps the agent's SEMAPHORE_AGENT_* settings from the hook", async () => {
  const dir = await Deno.makeTempDir();
  Deno.env.set("SEMAPHORE_AGENT_TOKEN", "registration-secret");
  Deno.env.set("SHUTDOWN_HOOK_TEST_VISIBLE", "kept");
  try {
    const lines: string[] = [];
    const logger = createLogger({ stdout: false, onLine: (l) => lines.push(l) });
    await Deno.writeTextFile(
      `${dir}/env.sh`,
      "env | grep -E '^(SEMAPHORE_AGENT_|SHUTDOWN_HOOK_TEST_)' | sort\n",
    );
    await runShutdownHook(`${dir}/env.sh`, "IDLE", logger);
    assert.ok(
      lines.some((l) =>
        l.endsWith(
          ": Output: SEMAPHORE_AGENT_SHUTDOWN_REASON=IDLE\nSHUTDOWN_HOOK_TEST_VISIBLE=kept\n\n",
        )
      ),
      lines.join(""),
    );
  } finally {
    Deno.env.delete("SEMAPHORE_AGENT_TOKEN");
    Deno.env.delete("SHUTDOWN_HOOK_TEST_VISIBLE");
    await Deno.remove(dir, { recursive: true });
  }
});
