import assert from "node:assert/strict";
import { decodeEnvVars, findEnvVar, findFile } from "../lib/engine/job_request_values.ts";

Deno.test("decodeEnvVars() decodes values and names the bad one", () => {
  assert.deepEqual(
    decodeEnvVars([{ name: "FOO", value: "Rk9PX1ZBTFVF" }, { name: "BAR", value: "QkFSX1ZBTFVF" }]),
    [{ name: "FOO", value: "FOO_VALUE" }, { name: "BAR", value: "BAR_VALUE" }],
  );
  assert.deepEqual(decodeEnvVars([{ name: "E", value: "" }, { name: "U", value: "/w==" }]), [
    { name: "E", value: "" },
    { name: "U", value: "\ufffd" },
  ]);
  assert.throws(
    () => decodeEnvVars([{ name: "FOO", value: "Rk9P" }, { name: "BAR", value: "BAR_VALUE" }]),
    (error: Error) => {
      assert.equal(error.message, "error decoding 'BAR'");
      assert.ok(error.cause instanceof SyntaxError);
      return true;
    },
  );
});

Deno.test("findEnvVar() and findFile() find the first match or say what is missing", () => {
  const vars = [
    { name: "DOCKER_CREDENTIAL_TYPE", value: "RG9ja2VySHVi" },
    { name: "BAD", value: "!!" },
    { name: "DOCKER_CREDENTIAL_TYPE", value: "R0NS" },
  ];
  assert.equal(findEnvVar(vars, "DOCKER_CREDENTIAL_TYPE"), "DockerHub");
  assert.throws(() => findEnvVar(vars, "DOCKERHUB_USERNAME"), {
    message: "no env var 'DOCKERHUB_USERNAME' found",
  });
  assert.throws(() => findEnvVar(vars, "BAD"), { message: "error decoding 'BAD'" });
  const files = [{ path: "/tmp/gcr/keyfile.json", content: "e30=", mode: "0600" }];
  assert.equal(findFile(files, "/tmp/gcr/keyfile.json"), files[0]);
  assert.throws(() => findFile(files, "x"), { message: "no file 'x' found" });
});
