import assert from "node:assert/strict";
import { findJobEnvVar } from "../lib/engine/job_request_values.ts";
import { encodeBase64 } from "../lib/util/base64.ts";

Deno.test("findJobEnvVar() decodes the last env var of that name, undefined when missing", () => {
  const vars = [
    { name: "DOCKER_CREDENTIAL_TYPE", value: "RG9ja2VySHVi" },
    { name: "U", value: "/w==" },
    { name: "DOCKER_CREDENTIAL_TYPE", value: "R0NS" },
  ];
  assert.equal(findJobEnvVar(vars, "DOCKER_CREDENTIAL_TYPE"), "GCR");
  assert.equal(findJobEnvVar(vars, "U"), "\ufffd");
  assert.equal(findJobEnvVar(vars, "DOCKERHUB_USERNAME"), undefined);
  assert.equal(
    findJobEnvVar([{ name: "A", value: encodeBase64("1") }, {
      name: "A",
      value: encodeBase64("2"),
    }], "A"),
    "2",
  );
});

Deno.test("findJobEnvVar() names the variable whose value is not base64", () => {
  assert.throws(
    () => findJobEnvVar([{ name: "BAR", value: "BAR_VALUE" }], "BAR"),
    (error: Error) => {
      assert.equal(error.message, "error decoding 'BAR'");
      assert.ok(error.cause instanceof SyntaxError);
      return true;
    },
  );
});
