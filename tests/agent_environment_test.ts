import assert from "node:assert/strict";
import { scrubbedEnvironment } from "../lib/engine/agent_environment.ts";

Deno.test("scrubbedEnvironment() drops SEMAPHORE_AGENT_* and keeps the rest", () => {
  const env = {
    PATH: "/usr/bin",
    SEMAPHORE_AGENT_AUTH_TOKEN_SECRET: "secret",
    SEMAPHORE_AGENT_LOG_LEVEL: "debug",
    SEMAPHORE_JOB_ID: "1",
    semaphore_agent_lowercase: "kept",
  };
  assert.deepEqual(scrubbedEnvironment(env), {
    PATH: "/usr/bin",
    SEMAPHORE_JOB_ID: "1",
    semaphore_agent_lowercase: "kept",
  });
  assert.equal(env.SEMAPHORE_AGENT_LOG_LEVEL, "debug", "the caller's object is not changed");
});

Deno.test("scrubbedEnvironment() reads the agent's environment by default", () => {
  const scrubbed = scrubbedEnvironment();
  assert.equal(scrubbed.PATH, Deno.env.get("PATH"));
  assert.ok(Object.keys(scrubbed).every((name) => !name.startsWith("SEMAPHORE_AGENT_")));
});
