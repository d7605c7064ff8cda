import assert from "node:assert/strict";
import { isPipelineText } from "../lib/run/run_file.ts";

Deno.test("isPipelineText() is true for a top-level mapping with a blocks key, whatever its style", async () => {
  assert.equal(await isPipelineText("version: v1.0\nagent: {}\nblocks:\n  - task: {}\n"), true);
  assert.equal(await isPipelineText("# CI\nblocks: []\n"), true);
  assert.equal(await isPipelineText('"blocks": []\n'), true);
  assert.equal(await isPipelineText("# c\n{version: v1.0, blocks: []}\n"), true);
});

Deno.test("isPipelineText() is false for job requests, nested blocks keys and non-mappings", async () => {
  assert.equal(await isPipelineText("commands:\n  - directive: echo blocks:\n"), false);
  assert.equal(await isPipelineText("env_vars:\n  blocks: 1\n"), false);
  assert.equal(await isPipelineText("{commands: [{directive: 'x'}], env: {blocks: 1}}\n"), false);
  assert.equal(await isPipelineText("- blocks: 1\n"), false);
  assert.equal(await isPipelineText("blocksy: 1\n"), false);
});

Deno.test("agent run --job-cpu-limit reaches the job's cgroup; a bad limit exits 2 with one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent-run-limits-" });
  try {
    const read = "while read -r l; do case $l in *:cpu,*|*:cpu:*) p=${l##*:};; esac; " +
      "done < /proc/self/cgroup; read -r q < /sys/fs/cgroup/cpu$p/cpu.cfs_quota_us; echo quota=$q";
    await Deno.writeTextFile(
      `${dir}/job.yaml`,
      `commands:\n  - directive: ${JSON.stringify(read)}\n`,
    );
    const agent = (args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL("../main.ts", import.meta.url).pathname, "run", ...args],
        env: {
          HOME: dir,
          NO_COLOR: "1",
          // Deno's cache, so the child with another HOME still finds the npm packages.
          DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME")}/.cache/deno`,
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
    const ok = await agent(["--job-cpu-limit", "0.25", `${dir}/job.yaml`]);
    const out = new TextDecoder().decode(ok.stdout);
    assert.equal(ok.code, 0, out + new TextDecoder().decode(ok.stderr));
    assert.match(out, /\nquota=25000\n/);
    const bad = await agent(["--job-pids-limit", "lots", `${dir}/job.yaml`]);
    assert.equal(bad.code, 2);
    assert.equal(
      new TextDecoder().decode(bad.stderr),
      "agent: --job-pids-limit: 'lots' is not a positive number of processes\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
