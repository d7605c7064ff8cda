import assert from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import {
  type ArtifactUploadOptions,
  compressionThreshold,
  DEFAULT_COMPRESSION_SIZE,
  uploadJobLogArtifact,
  uploadPolicyFromJobEnv,
} from "../lib/reporting/artifact_upload.ts";
import { EventLog } from "../lib/engine/event_log.ts";
import { recordingLogger } from "./support/recording_logger.ts";
import type { EnvVar } from "../lib/engine/job_request_types.ts";
import { encodeBase64 } from "../lib/util/base64.ts";

const ARTIFACT_ENV: readonly EnvVar[] = [
  { name: "SEMAPHORE_ARTIFACT_TOKEN", value: encodeBase64("art-token") },
  { name: "SEMAPHORE_ORGANIZATION_URL", value: encodeBase64("https://org.semaphoreci.com") },
];

/**
 * A temp dir with a fake `artifact` CLI on its own `bin/`: it records its arguments, the
 * variables it was given and a copy of the uploaded file, and exits with `$FAKE_EXIT`.
 */
async function setup(exitCode = 0, tail = "") {
  const dir = await Deno.makeTempDir({ prefix: "artifact_upload_test_" });
  await Deno.mkdir(`${dir}/bin`);
  await Deno.writeTextFile(
    `${dir}/bin/artifact`,
    `#!/bin/bash
printf '%s\\n' "$@" > "${dir}/args"
{
  echo "TOKEN=$SEMAPHORE_ARTIFACT_TOKEN"
  echo "JOB=$SEMAPHORE_JOB_ID"
  echo "URL=$SEMAPHORE_ORGANIZATION_URL"
  echo "SECRET=\${SEMAPHORE_AGENT_AUTH_TOKEN_SECRET-unset}"
  echo "OTHER=$OTHER_VAR"
} > "${dir}/env"
cp "$3" "${dir}/uploaded"
echo "some output"
${tail}
exit ${exitCode}
`,
    { mode: 0o755 },
  );
  const log = await EventLog.create({ dir });
  log.write({ event: "job_started", timestamp: 1 });
  log.write({ event: "cmd_started", timestamp: 1, directive: "echo hello" });
  log.write({ event: "cmd_output", timestamp: 1, output: "hello\n" });
  log.write({
    event: "cmd_finished",
    timestamp: 1,
    directive: "echo hello",
    exit_code: 0,
    started_at: 1,
    finished_at: 1,
  });
  log.write({ event: "job_finished", timestamp: 1, result: "passed" });
  await log.close();
  const env = {
    PATH: `${dir}/bin:${Deno.env.get("PATH")}`,
    SEMAPHORE_AGENT_AUTH_TOKEN_SECRET: "do-not-leak",
    OTHER_VAR: "kept",
  };
  return {
    dir,
    log,
    env,
    ran: async () => {
      try {
        await Deno.stat(`${dir}/args`);
        return true;
      } catch {
        return false;
      }
    },
    /** Files left in the temp dir besides bin/, the args/env/uploaded records and the log. */
    leftovers: async () => {
      const names: string[] = [];
      for await (const entry of Deno.readDir(dir)) names.push(entry.name);
      return names.filter((n) =>
        !["bin", "args", "env", "uploaded"].includes(n) && !n.startsWith("job_log_")
      );
    },
    /** Runs the upload of this log by the fake CLI: job `j`, policy `always`, untrimmed. */
    upload: (options: Partial<ArtifactUploadOptions> = {}) =>
      uploadJobLogArtifact({
        log,
        jobId: "j",
        envVars: ARTIFACT_ENV,
        policy: "always",
        trimmed: false,
        logger: recordingLogger(),
        env,
        dir,
        ...options,
      }),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

Deno.test("uploadJobLogArtifact() pushes the plain-text log with the job's token and URL", async () => {
  await using t = await setup();
  const logger = recordingLogger();
  const outcome = await t.upload({ jobId: "job-1", logger });
  assert.deepEqual(outcome, { state: "uploaded", destination: "agent/job_logs.txt" });
  const args = (await Deno.readTextFile(`${t.dir}/args`)).split("\n");
  assert.deepEqual(args.slice(0, 3), ["push", "job", args[2]]);
  assert.match(args[2], /\.txt$/);
  assert.deepEqual(args.slice(3), ["-d", "agent/job_logs.txt", ""]);
  assert.equal(
    await Deno.readTextFile(`${t.dir}/env`),
    "TOKEN=art-token\nJOB=job-1\nURL=https://org.semaphoreci.com\nSECRET=unset\nOTHER=kept\n",
  );
  assert.equal(await Deno.readTextFile(`${t.dir}/uploaded`), "echo hello\nhello\n");
  assert.deepEqual(await t.leftovers(), [], "the plain-text file is deleted");
  assert.ok(logger.lines.includes("info: Successfully uploaded job logs as artifact."));
});

Deno.test("uploadJobLogArtifact() follows the policy and the trimmed flag", async (t) => {
  for (
    const [policy, trimmed, expected] of [
      ["never", true, "skipped"],
      ["when-trimmed", false, "skipped"],
      ["when-trimmed", true, "uploaded"],
      ["always", false, "uploaded"],
    ] as const
  ) {
    await t.step(`${policy}, trimmed=${trimmed} -> ${expected}`, async () => {
      await using s = await setup();
      const logger = recordingLogger();
      const outcome = await s.upload({ policy, trimmed, logger });
      assert.equal(outcome.state, expected);
      assert.equal(await s.ran(), expected === "uploaded");
      if (policy === "never") {
        assert.deepEqual(logger.lines, [
          "info: upload-job-logs=never - not uploading job logs as job artifact.",
        ]);
      }
    });
  }
});

Deno.test("uploadJobLogArtifact() gzips the text at the compression threshold", async () => {
  await using t = await setup();
  const log = await EventLog.create({ dir: t.dir });
  const line = "x".repeat(1023) + "\n";
  for (let i = 0; i < 1100; i++) log.write({ event: "cmd_output", timestamp: 1, output: line });
  await log.close();
  const outcome = await t.upload({
    log,
    env: { ...t.env, SEMAPHORE_AGENT_LOGS_COMPRESSION_SIZE: "1048576" },
  });
  assert.deepEqual(outcome, { state: "uploaded", destination: "agent/job_logs.txt.gz" });
  const args = (await Deno.readTextFile(`${t.dir}/args`)).split("\n");
  assert.match(args[2], /\.txt\.gz$/);
  assert.equal(args[4], "agent/job_logs.txt.gz");
  const text = new TextDecoder().decode(gunzipSync(await Deno.readFile(`${t.dir}/uploaded`)));
  assert.equal(text, line.repeat(1100));
  assert.deepEqual(await t.leftovers(), []);
});

Deno.test("uploadJobLogArtifact() skips with an error line when a requirement is missing", async (t) => {
  await t.step("no SEMAPHORE_ARTIFACT_TOKEN", async () => {
    await using s = await setup();
    const logger = recordingLogger();
    const outcome = await s.upload({ envVars: ARTIFACT_ENV.slice(1), logger });
    assert.equal(outcome.state, "skipped");
    assert.match(logger.lines[0], /^error: SEMAPHORE_ARTIFACT_TOKEN is not set/);
    assert.equal(await s.ran(), false);
  });
  await t.step("no SEMAPHORE_ORGANIZATION_URL", async () => {
    await using s = await setup();
    const outcome = await s.upload({ envVars: ARTIFACT_ENV.slice(0, 1) });
    assert.equal(outcome.state, "skipped");
  });
  await t.step("no artifact CLI on PATH", async () => {
    await using s = await setup();
    const logger = recordingLogger();
    const outcome = await s.upload({ logger, env: { PATH: "/nonexistent" } });
    assert.equal(outcome.state, "skipped");
    assert.match(logger.lines[0], /^error: artifact CLI is not available/);
  });
});

Deno.test("uploadJobLogArtifact() logs a failing artifact CLI with its output", async () => {
  await using t = await setup(3);
  const logger = recordingLogger();
  const outcome = await t.upload({ logger });
  assert.deepEqual(outcome, { state: "failed", error: "artifact exited with code 3" });
  assert.ok(
    logger.lines.includes(
      "error: Error uploading job logs as artifact: artifact exited with code 3, some output",
    ),
  );
  assert.deepEqual(await t.leftovers(), []);
});

Deno.test("uploadJobLogArtifact() kills an artifact CLI that does not finish in time", async () => {
  // `exec` makes the CLI's own process the sleeper, as a hung upload would be.
  await using t = await setup(0, "exec sleep 60");
  const logger = recordingLogger();
  const started = performance.now();
  const outcome = await t.upload({ logger, timeoutMs: 300 });
  const elapsed = performance.now() - started;
  assert.deepEqual(outcome, {
    state: "failed",
    error: "artifact did not finish within 300ms - killed it",
  });
  assert.ok(elapsed < 5000, `took ${elapsed} ms`);
  assert.ok(
    logger.lines.includes(
      "error: Error uploading job logs as artifact: artifact did not finish within 300ms - killed it",
    ),
  );
  assert.deepEqual(await t.leftovers(), []);
});

Deno.test("uploadJobLogArtifact() keeps at most 64 KiB of the artifact CLI's output", async () => {
  await using t = await setup(3, "head -c 10000000 /dev/zero | tr '\\0' x");
  const logger = recordingLogger();
  const outcome = await t.upload({ logger });
  assert.deepEqual(outcome, { state: "failed", error: "artifact exited with code 3" });
  const line = logger.lines.find((l) => l.includes("artifact exited with code 3"))!;
  assert.match(line, /, some output\nxxx/);
  assert.ok(line.length < 2 * 64 * 1024, `${line.length} characters`);
});

Deno.test("uploadPolicyFromJobEnv() reads the base64 job variable, never by default", () => {
  const env = (v: string): EnvVar[] => [{ name: "SEMAPHORE_AGENT_UPLOAD_JOB_LOGS", value: v }];
  assert.equal(uploadPolicyFromJobEnv([]), "never");
  assert.equal(uploadPolicyFromJobEnv(env(encodeBase64("always"))), "always");
  assert.equal(uploadPolicyFromJobEnv(env(encodeBase64("when-trimmed"))), "when-trimmed");
  assert.equal(uploadPolicyFromJobEnv(env(encodeBase64("sometimes"))), "never");
  assert.equal(uploadPolicyFromJobEnv(env("always")), "never", "not base64");
});

Deno.test("compressionThreshold() accepts 1 MiB to 1 GiB, else 100 MiB", () => {
  assert.equal(compressionThreshold(undefined), DEFAULT_COMPRESSION_SIZE);
  assert.equal(compressionThreshold("1048576"), 1048576);
  assert.equal(compressionThreshold("1073741824"), 1073741824);
  assert.equal(compressionThreshold("1048575"), DEFAULT_COMPRESSION_SIZE);
  assert.equal(compressionThreshold("1073741825"), DEFAULT_COMPRESSION_SIZE);
  assert.equal(compressionThreshold("2MB"), DEFAULT_COMPRESSION_SIZE);
});
