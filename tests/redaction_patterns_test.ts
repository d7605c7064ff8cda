/**
 * Tests of `lib/engine/redaction_patterns.ts`: which variable names are secret.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  DEFAULT_REDACTED_VARS,
  nameMatcher,
  redactionPatterns,
} from "../lib/engine/redaction_patterns.ts";

Deno.test("redactionPatterns() adds given patterns to the defaults; an empty list is off", () => {
  assert.deepEqual(redactionPatterns(undefined), DEFAULT_REDACTED_VARS);
  assert.deepEqual(redactionPatterns([]), []);
  assert.deepEqual(redactionPatterns([""]), []);
  assert.deepEqual(redactionPatterns(["MY_VAR,*_KEY"]), [
    ...DEFAULT_REDACTED_VARS,
    "MY_VAR",
    "*_KEY",
  ]);
  assert.throws(() => redactionPatterns(["A-B"]), /'A-B' is not a valid pattern/);
  const matches = nameMatcher(DEFAULT_REDACTED_VARS);
  for (
    const name of [
      "DB_PASSWORD",
      "PASSWORD",
      "PGPASSWORD",
      "db_password",
      "MY_SECRET",
      "AWS_SECRET_ACCESS_KEY",
      "SECRET_KEY_BASE",
      "GITHUB_TOKEN",
      "SEMAPHORE_OIDC_TOKEN",
      "SSH_PRIVATE_KEY",
      "STRIPE_API_KEY",
      "AWS_ACCESS_KEY_ID",
      "DATABASE_CONNECTION_STRING",
      "SENTRY_DSN",
      "DEPLOY_SSH_KEY",
    ]
  ) assert.ok(matches(name), name);
  for (const name of ["PATH", "HOME", "GREETING", "TOKENIZER_PATH", "SSH_PRIVATE_KEY_PATH"]) {
    assert.ok(!matches(name), name);
  }
});
