import { pipelineBench } from "/work/wt/pipeline/tests/bench/pipeline_bench.ts";
const tmp = await Deno.makeTempDir();
const home = await Deno.makeTempDir();
const rows = await pipelineBench({
  root: "/work/wt/pipeline",
  agent: [Deno.execPath(), "run", "-A", "--quiet", "/work/wt/pipeline/main.ts"],
  quick: false,
  env: { HOME: home, PATH: Deno.env.get("PATH")!, DENO_DIR: "/root/.cache/deno" },
  tmp,
});
console.log(rows);
