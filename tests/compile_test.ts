/**
 * End-to-end tests of the built binary `dist/agent`, whichever way `compile.sh` built it:
 * version, `agent run` of passing, failing and invalid job files, `--log-file`, signals passing
 * through the launcher, and independence from the caller's working directory.
 *
 * The binary is built once by `bash compile.sh`, or reused when it is newer than every source
 * file (tests/support/compiled_agent.ts). Jobs run with HOME set to an empty temporary directory.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { AGENT, CACHE_HOME, ensureBuilt, ROOT } from "./support/compiled_agent.ts";
import { startServeAgent } from "./support/serve_agent.ts";

interface AgentResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs dist/agent with `args` in a fresh HOME; `cwd` defaults to the repository, `env` adds
 * variables.
 */
async function runAgent(
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<AgentResult> {
  await ensureBuilt();
  const home = await Deno.makeTempDir({ prefix: "agent-home-" });
  try {
    const { code, stdout, stderr } = await new Deno.Command(AGENT, {
      args,
      cwd: options.cwd ?? ROOT,
      env: { HOME: home, XDG_CACHE_HOME: CACHE_HOME, ...options.env },
      stdin: "null",
    }).output();
    const text = new TextDecoder();
    return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
  } finally {
    await Deno.remove(home, { recursive: true });
  }
}

function show(result: AgentResult): string {
  return `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

async function agentVersion(): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json")));
  return `v${config.version}`;
}

Deno.test("dist/agent version prints v<deno.json version> and exits 0", async () => {
  const result = await runAgent(["version"]);
  assert.equal(result.code, 0, show(result));
  assert.equal(result.stdout, `${await agentVersion()}\n`);
  assert.equal(result.stderr, "");
});

Deno.test("dist/agent ignores deno.json and package.json in the caller's directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent-cwd-" });
  try {
    await Deno.writeTextFile(join(dir, "deno.json"), "{ not json");
    await Deno.writeTextFile(join(dir, "package.json"), "{ not json");
    await Deno.writeTextFile(join(dir, "deno.lock"), "{ not json");
    const result = await runAgent(["version"], { cwd: dir });
    assert.equal(result.code, 0, show(result));
    assert.equal(result.stdout, `${await agentVersion()}\n`);
    assert.equal(result.stderr, "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dist/agent run exits 0 and prints the job when the job passes", async () => {
  const result = await runAgent(["run", "examples/hello.yaml"]);
  assert.equal(result.code, 0, show(result));
  for (const line of ["hello from the job", "result is passed"]) {
    assert.match(result.stdout, new RegExp(`^${line}$`, "m"), show(result));
  }
});

Deno.test("dist/agent run exits 1 when the job fails", async () => {
  const result = await runAgent(["run", "examples/failing.yaml"]);
  assert.equal(result.code, 1, show(result));
  assert.match(result.stdout, /^about to fail$/m, show(result));
  assert.doesNotMatch(result.stdout, /^never printed$/m, show(result));
  assert.match(result.stdout, /^result is failed$/m, show(result));
});

Deno.test("dist/agent run exits 2 with one stderr line naming the file and field when the job is invalid", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent-job-" });
  try {
    const path = join(dir, "invalid.yaml");
    await Deno.writeTextFile(path, "commands: 5\n");
    const result = await runAgent(["run", path]);
    assert.equal(result.code, 2, show(result));
    assert.equal(result.stdout, "", show(result));
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, show(result));
    assert.ok(lines[0].includes(path), show(result));
    assert.match(lines[0], /\bcommands\b/, show(result));
    assert.doesNotMatch(result.stderr, /^\s+at /m, show(result));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dist/agent run exits 2 with one stderr line when the job file is missing", async () => {
  const path = join(ROOT, "examples", "no-such-job.yaml");
  const result = await runAgent(["run", path]);
  assert.equal(result.code, 2, show(result));
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, show(result));
  assert.ok(lines[0].includes(path), show(result));
});

Deno.test("dist/agent run --log-file writes the job's events as JSONL", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent-log-" });
  try {
    const logFile = join(dir, "job.jsonl");
    const result = await runAgent(["run", "--log-file", logFile, "examples/hello.yaml"]);
    assert.equal(result.code, 0, show(result));
    const text = await Deno.readTextFile(logFile);
    assert.ok(text.endsWith("\n"), "the log ends with a newline");
    const events = text.trimEnd().split("\n").map((line) => JSON.parse(line));
    assert.equal(events[0].event, "job_started");
    assert.equal(events.at(-1).event, "job_finished");
    assert.equal(events.at(-1).result, "passed");
    const output = events.filter((e) => e.event === "cmd_output").map((e) => e.output).join("");
    assert.match(output, /^hello from the job$/m);
    const started = events.filter((e) => e.event === "cmd_started").length;
    const finished = events.filter((e) => e.event === "cmd_finished").length;
    assert.equal(started, finished);
    assert.ok(events.some((e) => e.event === "cmd_started" && e.directive === 'echo "$GREETING"'));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dist/agent run exits 130 when SIGTERM reaches it through the launcher", async () => {
  await ensureBuilt();
  const dir = await Deno.makeTempDir({ prefix: "agent-stop-" });
  try {
    const path = join(dir, "sleep.yaml");
    await Deno.writeTextFile(
      path,
      [
        "commands:",
        "  - directive: echo sleeping-now; sleep 60",
        "  - directive: echo never-reached",
        "",
      ].join("\n"),
    );
    const child = new Deno.Command(AGENT, {
      args: ["run", path],
      cwd: ROOT,
      env: { HOME: dir, XDG_CACHE_HOME: CACHE_HOME },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderrText = new Response(child.stderr).text();
    const decoder = new TextDecoder();
    let stdout = "";
    const reader = child.stdout.getReader();
    while (!/^sleeping-now$/m.test(stdout)) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += decoder.decode(value, { stream: true });
    }
    assert.match(stdout, /^sleeping-now$/m, `the job did not start:\n${stdout}`);
    const stopAt = performance.now();
    child.kill("SIGTERM");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      stdout += decoder.decode(value, { stream: true });
    }
    const status = await child.status;
    const seconds = (performance.now() - stopAt) / 1000;
    assert.equal(status.code, 130, `stdout:\n${stdout}\nstderr:\n${await stderrText}`);
    await stderrText;
    assert.doesNotMatch(stdout, /^never-reached$/m);
    assert.ok(seconds < 20, `stopping took ${seconds.toFixed(1)} s`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** What one script the runtime evaluated was built from. */
interface EvaluatedScript {
  /** The script's URL. */
  readonly url: string;
  /**
   * The modules in it: repository paths (`main.ts`, `server/app.ts`) and packages
   * (`npm:hono`). A bundle chunk names its modules in esbuild's `// path` comments (none for
   * esbuild's helpers); a module of a `deno compile` binary is its URL.
   */
  readonly modules: readonly string[];
  /** The `node:` modules it imports. */
  readonly nodeImports: readonly string[];
}

function moduleName(path: string): string {
  const npm = /registry\.npmjs\.org\/((?:@[^/]+\/)?[^/]+)\//.exec(path);
  if (npm) return `npm:${npm[1]}`;
  return path.startsWith("/") ? relative(ROOT, path) : path;
}

/**
 * Runs dist/agent with `args` and V8 coverage on (DENO_COVERAGE_DIR), which lists every script
 * the runtime evaluated, and says what each was built from.
 */
async function evaluatedScripts(args: string[]): Promise<EvaluatedScript[]> {
  const coverage = await Deno.makeTempDir({ prefix: "agent-coverage-" });
  try {
    const result = await runAgent(args, { env: { DENO_COVERAGE_DIR: coverage } });
    assert.equal(result.code, 0, show(result));
    const scripts: EvaluatedScript[] = [];
    for await (const entry of Deno.readDir(coverage)) {
      const { url } = JSON.parse(await Deno.readTextFile(join(coverage, entry.name)));
      let source: string | undefined;
      try {
        source = await Deno.readTextFile(new URL(url));
      } catch {
        // a module inside a `deno compile` binary: its URL says what it is
      }
      // A chunk without such comments holds esbuild's own helpers only.
      const modules = source === undefined
        ? [new URL(url).pathname]
        : [...source.matchAll(/^\/\/ (\S+\.(?:[cm]?[jt]s|json))$/gm)].map((m) => m[1]);
      scripts.push({
        url,
        modules: [...new Set(modules.map(moduleName))].sort(),
        nodeImports: [...(source ?? "").matchAll(/\bfrom\s*"(node:[^"]+)"/g)].map((m) => m[1]),
      });
    }
    return scripts;
  } finally {
    await Deno.remove(coverage, { recursive: true });
  }
}

Deno.test("dist/agent version evaluates main.ts, the version and the error types only, no node: module", async () => {
  const scripts = await evaluatedScripts(["version"]);
  const modules = [...new Set(scripts.flatMap((s) => s.modules))].sort();
  assert.deepEqual(
    modules.filter((m) => m !== "deno.json"),
    ["lib/util/errors.ts", "lib/util/version.ts", "main.ts"],
  );
  assert.deepEqual(scripts.flatMap((s) => s.nodeImports), []);
});

Deno.test("dist/agent's chunks import chunks by URL, so Deno reads none before a command imports it", async () => {
  const scripts = await evaluatedScripts(["version"]);
  const main = scripts.find((s) => s.url.endsWith("/main.js"));
  assert.ok(main, scripts.map((s) => s.url).join("\n"));
  const dir = new URL(".", main.url);
  let byUrl = 0;
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.endsWith(".js")) continue;
    const text = await Deno.readTextFile(new URL(entry.name, dir));
    // A string literal is a module graph edge: Deno would read and analyse its target first.
    assert.doesNotMatch(text, /\bimport\(\s*["'`]/, entry.name);
    byUrl +=
      text.match(/\bimport\(new URL\("\.\/[\w.-]+\.js", import\.meta\.url\)\.href\)/g)?.length ?? 0;
  }
  assert.ok(byUrl >= 4, `${byUrl} imports by URL`); // run, serve, start and commander at least
});

Deno.test("dist/agent run evaluates no Hono, jose, commander, server/ or lib/start/ code, no node: module", async () => {
  const scripts = await evaluatedScripts(["run", "examples/hello.yaml"]);
  const modules = scripts.flatMap((s) => s.modules);
  assert.ok(modules.includes("lib/run/local_run.ts"), modules.join("\n"));
  const foreign = modules.filter((m) =>
    ["npm:hono", "npm:jose", "npm:commander"].includes(m) || m.startsWith("server/") ||
    m.startsWith("lib/start/")
  );
  assert.deepEqual(foreign, []);
  assert.deepEqual(scripts.flatMap((s) => s.nodeImports), []);
});

Deno.test("dist/agent run of a job loads none of Deno's Node layer (no node:timers from setTimeout)", async () => {
  // Deno's debug log names every module it compiles, Deno's own lazily loaded ones included: in
  // Deno 2.9 the first call of the global setTimeout loads node:timers and two dozen modules of
  // the Node layer (lib/util/delay.ts), which no code on this path may do.
  const result = await runAgent(["run", "examples/hello.yaml"], { env: { DENO_LOG: "debug" } });
  assert.equal(result.code, 0, show(result));
  const loaded = [...result.stderr.matchAll(/ for ES module: ([^\s,]+)/g)].map((m) => m[1]);
  assert.ok(loaded.some((m) => m.endsWith("/main.js")), `modules seen:\n${loaded.join("\n")}`);
  assert.deepEqual(loaded.filter((m) => /^(?:node:|ext:deno_node\/)/.test(m)), []);
});

Deno.test("dist/agent run peaks under 60 MiB of memory while a job prints 20 MB", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent-memory-" });
  try {
    const path = join(dir, "output.yaml");
    await Deno.writeTextFile(
      path,
      [
        "commands:",
        "  - directive: yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 20000000",
        // The agent is the parent of the PTY shim (`script`), the job shell's parent.
        "  - directive: grep VmHWM /proc/$(cut -d ' ' -f 4 /proc/$PPID/stat)/status",
        "",
      ].join("\n"),
    );
    // The first run of a build fills Deno's caches (dependency analysis, code cache), which
    // costs memory once (compile.sh); the figure is that of every later run.
    assert.equal((await runAgent(["run", "examples/hello.yaml"])).code, 0);
    const result = await runAgent(["run", path]);
    assert.equal(result.code, 0, result.stderr);
    const peak = /^VmHWM:\s+(\d+) kB$/m.exec(result.stdout);
    assert.ok(peak, result.stdout.slice(-500));
    const mib = Number(peak[1]) / 1024;
    assert.ok(mib <= 60, `peak RSS ${mib.toFixed(1)} MiB`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dist/agent serve --metrics-addr serves /metrics (prom-client's Node builtins load in the bundle)", async () => {
  await ensureBuilt();
  const dir = await Deno.makeTempDir({ prefix: "agent-metrics-" });
  const previous = Deno.env.get("AGENT_BIN");
  Deno.env.set("AGENT_BIN", AGENT);
  try {
    await Deno.mkdir(join(dir, "home"));
    await using agent = await startServeAgent({
      dir,
      env: { HOME: join(dir, "home"), XDG_CACHE_HOME: CACHE_HOME },
      args: ["--metrics-addr", "127.0.0.1:0"],
    });
    const line = await agent.waitForLine(/Serving metrics on/);
    const port = Number(/127\.0\.0\.1:(\d+)\/metrics/.exec(line)![1]);
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    const body = await res.text();
    assert.equal(res.status, 200, body);
    assert.match(body, /^# TYPE semaphore_agent_jobs_finished_total counter$/m);
  } finally {
    if (previous === undefined) Deno.env.delete("AGENT_BIN");
    else Deno.env.set("AGENT_BIN", previous);
    await Deno.remove(dir, { recursive: true });
  }
});
