import assert from "node:assert/strict";
import { SHELL_JUMP_POINT, writeJumpPoint } from "../executors/host_setup.ts";

Deno.test("writeJumpPoint() replaces what is at the path, never writing through a symlink", async () => {
  const dir = await Deno.makeTempDir({ prefix: "host_setup_test_" });
  const path = `${dir}/ssh_jump_point`;
  try {
    await Deno.writeTextFile(`${dir}/victim`, "keep me\n");
    await Deno.symlink(`${dir}/victim`, path);
    await writeJumpPoint(SHELL_JUMP_POINT, path);
    assert.equal(await Deno.readTextFile(`${dir}/victim`), "keep me\n");
    const info = await Deno.lstat(path);
    assert.ok(info.isFile);
    assert.equal(info.mode! & 0o777, 0o755);
    assert.equal(await Deno.readTextFile(path), SHELL_JUMP_POINT);
    // A shorter script replaces a longer one whole (DECISIONS.md 6), and no temp file is left.
    await writeJumpPoint("#!/bin/bash\n", path);
    assert.equal(await Deno.readTextFile(path), "#!/bin/bash\n");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "ssh_jump_point",
      "victim",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
