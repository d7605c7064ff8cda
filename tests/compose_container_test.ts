import assert from "node:assert/strict";
import { composeContainerConfig, splitShellWords } from "../executors/compose_container.ts";
import { encodeBase64 } from "../lib/util/base64.ts";

Deno.test("splitShellWords() splits compose command strings like compose does", () => {
  assert.deepEqual(splitShellWords("postgres start"), ["postgres", "start"]);
  assert.deepEqual(splitShellWords(`sh -c "echo 'a b'; echo \\"q\\""`), [
    "sh",
    "-c",
    `echo 'a b'; echo "q"`,
  ]);
  assert.deepEqual(splitShellWords("  a\\ b  '' c"), ["a b", "", "c"]);
});

Deno.test("composeContainerConfig() maps a compose container, bad env values as empty", () => {
  assert.deepEqual(
    composeContainerConfig({
      name: "db",
      image: "postgres:16",
      user: "",
      entrypoint: "",
      command: "postgres -c 'max_connections=5'",
      env_vars: [{ name: "A", value: encodeBase64("ü") }, { name: "B", value: "not base64" }],
    }),
    { Image: "postgres:16", Cmd: ["postgres", "-c", "max_connections=5"], Env: ["A=ü", "B="] },
  );
  assert.deepEqual(
    composeContainerConfig({
      name: "main",
      image: "bash",
      user: "1000",
      entrypoint: "/bin/sh -c",
      command: "",
      env_vars: [],
    }),
    { Image: "bash", User: "1000", Entrypoint: ["/bin/sh", "-c"], Env: [] },
  );
});
