import assert from "node:assert/strict";

/** Runs `code` in a fresh Deno process so the test process keeps its own attributes. */
async function inChild(code: string): Promise<string> {
  const module = new URL("../lib/util/prctl.ts", import.meta.url).href;
  const { stdout, success } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", `import * as p from ${JSON.stringify(module)};\n${code}`],
    stdout: "piped",
  }).output();
  assert.ok(success);
  return new TextDecoder().decode(stdout).trim();
}

Deno.test("setDumpable() makes /proc/<pid>/environ unreadable to other processes of the user", async () => {
  const out = await inChild(`
    const before = p.getDumpable();
    p.setDumpable(false);
    const after = p.getDumpable();
    const cat = await new Deno.Command("sh", { args: ["-c", "stat -c %U /proc/" + Deno.pid + "/environ"], stdout: "piped" }).output();
    console.log(JSON.stringify([before, after, new TextDecoder().decode(cat.stdout).trim()]));
  `);
  const [before, after, owner] = JSON.parse(out);
  assert.deepEqual(before, { state: "ok", value: 1 });
  assert.deepEqual(after, { state: "ok", value: 0 });
  assert.equal(owner, "root"); // a non-dumpable process's /proc files belong to root
});

Deno.test("setChildSubreaper() is read back by isChildSubreaper()", async () => {
  const out = await inChild(`
    const before = p.isChildSubreaper();
    p.setChildSubreaper(true);
    console.log(JSON.stringify([before, p.isChildSubreaper()]));
  `);
  assert.deepEqual(JSON.parse(out), [false, true]);
});
