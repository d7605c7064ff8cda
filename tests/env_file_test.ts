import assert from "node:assert/strict";
import { buildEnvironment, formatEnvFile, quoteEnvValue } from "../lib/engine/env_file.ts";
import { encodeBase64 } from "../lib/util/base64.ts";
import { runTestJob, simplify } from "./support/job_harness.ts";

Deno.test("quoteEnvValue() quotes as the original does", () => {
  assert.equal(quoteEnvValue(""), "''");
  assert.equal(quoteEnvValue("AAA"), "AAA");
  assert.equal(quoteEnvValue("a-b_c.d/e:f,g+h=i@j%k"), "a-b_c.d/e:f,g+h=i@j%k");
  assert.equal(quoteEnvValue("how are you?"), "'how are you?'");
  assert.equal(quoteEnvValue("quotes ' quotes"), `'quotes '"'"' quotes'`);
  assert.equal(quoteEnvValue("$PATH:/etc/a"), "'$PATH:/etc/a'");
  assert.equal(quoteEnvValue("line\n"), "'line\n'");
});

Deno.test("buildEnvironment() decodes, lets host values win and sorts by name", () => {
  const env = buildEnvironment(
    [{ name: "B", value: encodeBase64("job b") }, { name: "A", value: encodeBase64("1") }, {
      name: "A",
      value: encodeBase64("2"),
    }],
    [{ name: "B", value: "host b" }, { name: "C", value: "c" }],
  );
  const text = new TextDecoder();
  assert.deepEqual(env.map((v) => ({ name: v.name, value: text.decode(v.value) })), [
    { name: "A", value: "2" },
    { name: "B", value: "host b" },
    { name: "C", value: "c" },
  ]);
  assert.equal(
    text.decode(formatEnvFile(env)),
    "export A=2\nexport B='host b'\nexport C=c\n",
  );
});

Deno.test("formatEnvFile() writes a value that is not UTF-8 byte for byte", () => {
  const env = buildEnvironment([{ name: "L", value: btoa("caf\xe9 '") }]);
  assert.deepEqual(
    formatEnvFile(env),
    new Uint8Array([
      ...new TextEncoder().encode("export L='caf"),
      0xe9,
      ...new TextEncoder().encode(` '"'"''\n`),
    ]),
  );
});

Deno.test("buildEnvironment() names the variable it cannot decode", () => {
  assert.throws(
    () => buildEnvironment([{ name: "BAR", value: "!!" }]),
    { message: "error decoding 'BAR'" },
  );
});

Deno.test("formatEnvFile() gets an env var value that is not UTF-8 to the job byte for byte (§9.4)", async () => {
  // The original writes `string(decoded)`: raw bytes, no U+FFFD replacement.
  const { result, events } = await runTestJob({
    request: {
      env_vars: [{ name: "LATIN1", value: btoa("caf\xe9") }],
      commands: [{ directive: 'printf %s "$LATIN1" | od -An -tx1', alias: "" }],
    },
  });
  assert.equal(result, "passed");
  assert.equal(simplify(events)[7], " 63 61 66 e9\n");
});
