import assert from "node:assert/strict";
import {
  buildEnvironment,
  formatEnvFile,
  guardedProfileLine,
  quoteEnvValue,
  removeProfileLines,
} from "../lib/engine/env_file.ts";
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

/** What bash prints running `line` (a `~/.bash_profile` line). */
async function runProfileLine(line: string): Promise<string> {
  const output = await new Deno.Command("bash", {
    args: ["--norc", "--noprofile", "-c", `${line}\necho "status=$?"`],
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
    clearEnv: true,
  }).output();
  return new TextDecoder().decode(output.stdout);
}

Deno.test("guardedProfileLine() sources only the user's own regular file", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "env_file_test_" });
  const file = `${dir}/.env-1`;
  const line = guardedProfileLine(file);
  try {
    await t.step("the job's file is sourced", async () => {
      await Deno.writeTextFile(file, "echo sourced\n", { mode: 0o600 });
      assert.equal(await runProfileLine(line), "sourced\nstatus=0\n");
    });
    await t.step("no file: nothing, status 0", async () => {
      await Deno.remove(file);
      assert.equal(await runProfileLine(line), "status=0\n");
    });
    await t.step("a symlink in its place is not followed", async () => {
      await Deno.writeTextFile(`${dir}/other`, "echo sourced\n");
      await Deno.symlink(`${dir}/other`, file);
      assert.equal(await runProfileLine(line), "status=0\n");
      await Deno.remove(file);
    });
    if (Deno.uid() === 0) {
      await t.step("a file of another user is not sourced", async () => {
        await Deno.writeTextFile(file, "echo sourced\n");
        await Deno.chown(file, 65534, 65534);
        assert.equal(await runProfileLine(line), "status=0\n");
      });
    }
    await t.step("a path with spaces and quotes is one word", () => {
      assert.equal(
        guardedProfileLine("/tmp/a b'c/.env-1"),
        `if [ -O '/tmp/a b'"'"'c/.env-1' ] && [ ! -L '/tmp/a b'"'"'c/.env-1' ]; then source '/tmp/a b'"'"'c/.env-1'; fi`,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("removeProfileLines() removes exactly the given lines, in place", async () => {
  const dir = await Deno.makeTempDir({ prefix: "env_file_test_" });
  const profile = `${dir}/.bash_profile`;
  try {
    await Deno.writeTextFile(profile, "export A=1\nL1\nsource x\nL2\nL1\n", { mode: 0o640 });
    const inode = (await Deno.stat(profile)).ino;
    await removeProfileLines(profile, ["L1", "L2", "absent"]);
    assert.equal(await Deno.readTextFile(profile), "export A=1\nsource x\n");
    const info = await Deno.stat(profile);
    assert.equal(info.ino, inode);
    assert.equal(info.mode! & 0o777, 0o640);
    await removeProfileLines(`${dir}/missing`, ["L1"]); // no file: nothing to do
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
