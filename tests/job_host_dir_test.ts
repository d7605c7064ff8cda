/**
 * Tests of `executors/job_host_dir.ts`: a job's host directory, its modes, and the owner file
 * whose lock tells a live job's directory from a dead agent's.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createJobHostDir, ownerState } from "../executors/job_host_dir.ts";

Deno.test("createJobHostDir() makes a 0700 dir, with the container's 0755 mount dir inside", async () => {
  const previous = Deno.umask(0o000);
  try {
    await using dir = createJobHostDir();
    const modes = async (path: string) => {
      const info = await Deno.lstat(path);
      return { mode: info.mode! & 0o7777, uid: info.uid, directory: info.isDirectory };
    };
    assert.deepEqual(await modes(dir.path), { mode: 0o700, uid: Deno.uid(), directory: true });
    assert.equal(dir.mountPath, `${dir.path}/mount`);
    assert.deepEqual(await modes(dir.mountPath), { mode: 0o755, uid: Deno.uid(), directory: true });
    assert.deepEqual(await modes(`${dir.path}/.owner`), {
      mode: 0o600,
      uid: Deno.uid(),
      directory: false,
    });
  } finally {
    Deno.umask(previous);
  }
});

Deno.test("ownerState() tells a live job's dir (locked) from a dead agent's, a dir being made and none", async () => {
  await using live = createJobHostDir();
  assert.equal(await ownerState(live.path), "held");
  // A dead agent's dir: its owner file is there, and nobody holds the lock.
  const dead = await Deno.makeTempDir({ prefix: "agent-temp-directory-" });
  const made = await Deno.makeTempDir({ prefix: "agent-temp-directory-" });
  try {
    await Deno.writeTextFile(`${dead}/.owner`, "elsewhere/1");
    assert.equal(await ownerState(dead), "free");
    // Being made: no owner file yet.
    assert.equal(await ownerState(made), "no owner file");
  } finally {
    await Deno.remove(dead, { recursive: true });
    await Deno.remove(made, { recursive: true });
  }
  await live.remove();
  assert.equal(await ownerState(live.path), "no dir");
});
