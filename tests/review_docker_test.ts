/**
 * Regression tests from a review of the container executor: each one fails until the bug it
 * names is fixed.
 *
 * - leftover ownership (`executors/docker_leftovers.ts`): `<hostname>/<pid>` does not tell
 *   an agent apart across PID namespaces (agents in containers, `--network host`), nor from a
 *   restarted agent that got the same PID (PID 1 in a restarted container);
 * - output chunking (`lib/output_buffer.ts`, DECISIONS.md 17): a UTF-8 sequence split across
 *   two terminal reads with a pause between them is emitted as U+FFFD.
 *
 * The namespace tests need `unshare` (util-linux) and root; they are skipped otherwise.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { createDockerExecutor } from "../executors/docker.ts";
import { JOB_LABEL, removeLeftovers } from "../executors/docker_leftovers.ts";
import { DockerClient, dockerSocketPath } from "../executors/docker_api.ts";
import type { JobEvent } from "../lib/engine/events.ts";
import type { Container, JobRequest } from "../lib/engine/job_request_types.ts";
import { silentLogger } from "../lib/util/agent_log.ts";
import { dockerSkipReason, ensureTestImages, TEST_IMAGES } from "./support/test_images.ts";

const dockerSkip = await dockerSkipReason();
if (dockerSkip === undefined) await ensureTestImages();

async function unshareSkipReason(): Promise<string | undefined> {
  if (dockerSkip !== undefined) return dockerSkip;
  const probe = await new Deno.Command("unshare", {
    args: ["-p", "-f", "-m", "--mount-proc", "true"],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => undefined);
  if (probe?.success) return undefined;
  const reason = "unshare -p -m --mount-proc is not available (needs util-linux and root)";
  console.log(`Skipping PID namespace tests: ${reason}`);
  return reason;
}
const unshareSkip = await unshareSkipReason();

const CONFIG = new URL("../deno.json", import.meta.url).pathname;
const DOCKER_MODULE = new URL("../executors/docker.ts", import.meta.url).href;
const LEFTOVERS_MODULE = new URL("../executors/docker_leftovers.ts", import.meta.url).href;
const LOG_MODULE = new URL("../lib/util/agent_log.ts", import.meta.url).href;

function container(name: string, image: string): Container {
  return { name, image, command: "", entrypoint: "", user: "", env_vars: [] };
}

function makeRequest(jobId: string, directives: string[] = []): JobRequest {
  return {
    job_id: jobId,
    executor: "dockercompose",
    compose: {
      containers: [
        container(`review-${crypto.randomUUID().slice(0, 8)}`, TEST_IMAGES.bash),
        container("db", TEST_IMAGES.pong),
      ],
      image_pull_credentials: [],
      host_setup_commands: [],
    },
    commands: directives.map((directive) => ({ directive, alias: "" })),
    epilogue_always_commands: [],
    epilogue_on_pass_commands: [],
    epilogue_on_fail_commands: [],
    env_vars: [],
    files: [],
    ssh_public_keys: [],
    callbacks: { finished: "", teardown_finished: "", token: "" },
    logger: { method: "pull", url: "", token: "", max_size_in_bytes: 0 },
  };
}

async function jobResources(jobId: string): Promise<{ containers: number; networks: number }> {
  await using client = await DockerClient.connect();
  const filters = { label: [`${JOB_LABEL}=${jobId}`] };
  return {
    containers: (await client.listContainers(filters)).length,
    networks: (await client.listNetworks(filters)).length,
  };
}

/** Removes a job's containers and networks whatever their owner (test cleanup). */
async function forceRemove(jobId: string): Promise<void> {
  await using client = await DockerClient.connect();
  const filters = { label: [`${JOB_LABEL}=${jobId}`] };
  for (const c of await client.listContainers(filters)) await client.removeContainer(c.Id);
  for (const n of await client.listNetworks(filters)) await client.removeNetwork(n.Id);
}

/**
 * A unix-socket proxy to the Docker daemon that narrows every `semaphore-agent.job` label
 * filter to one job id, so a `removeLeftovers()` run through it can touch nothing but that
 * job (other test files run container jobs at the same time).
 */
function startNarrowingProxy(socket: string, jobId: string): Deno.HttpServer<Deno.UnixAddr> {
  const upstream = Deno.createHttpClient({
    proxy: { transport: "unix", path: dockerSocketPath() },
  });
  const server = Deno.serve({ path: socket, onListen: () => {} }, async (request) => {
    const url = new URL(request.url);
    const filters = url.searchParams.get("filters");
    if (filters) {
      const parsed = JSON.parse(filters) as Record<string, string[]>;
      parsed.label = (parsed.label ?? []).map((l) => l === JOB_LABEL ? `${JOB_LABEL}=${jobId}` : l);
      url.searchParams.set("filters", JSON.stringify(parsed));
    }
    const body = request.body ? await request.arrayBuffer() : undefined;
    const response = await fetch(`http://docker${url.pathname}${url.search}`, {
      method: request.method,
      headers: request.headers,
      body,
      client: upstream,
    });
    const bytes = await response.arrayBuffer();
    const empty = response.status === 204 || response.status === 304;
    return new Response(empty ? null : bytes, {
      status: response.status,
      headers: response.headers,
    });
  });
  server.finished.then(() => upstream.close());
  return server;
}

/** The job host dirs (`/tmp/agent-temp-directory-*`) whose owner file says `owner`. */
async function hostDirsOf(owner: string): Promise<string[]> {
  const dirs: string[] = [];
  for await (const entry of Deno.readDir("/tmp")) {
    if (!entry.isDirectory || !entry.name.startsWith("agent-temp-directory-")) continue;
    const text = await Deno.readTextFile(`/tmp/${entry.name}/.owner`).catch(() => "");
    if (text === owner) dirs.push(entry.name);
  }
  return dirs;
}

/**
 * Runs `removeLeftovers()` as an agent starting in a new PID namespace (PID 1 there) would,
 * seeing only job `jobId` (through the narrowing proxy) and, in /tmp, only the host dirs
 * `keepDirs` (bind-mounted from the real /tmp over a private tmpfs), so that it cannot touch
 * what other test files run at the same time.
 */
async function removeLeftoversInNewPidNamespace(
  jobId: string,
  keepDirs: readonly string[],
): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "agent-review-" });
  const server = startNarrowingProxy(`${dir}/docker.sock`, jobId);
  try {
    const code = `import { removeLeftovers } from "${LEFTOVERS_MODULE}";
import { silentLogger } from "${LOG_MODULE}";
await removeLeftovers({ logger: silentLogger });`;
    const other = await new Deno.Command("unshare", {
      args: [
        "-p",
        "-f",
        "-m",
        "--mount-proc",
        "--kill-child",
        "sh",
        "-c",
        [
          'set -e; deno="$0"; config="$1"; code="$2"; stage="$3/stage"; root="$4"; shift 4',
          'for d in "$@"; do mkdir -p "$stage/$d"; mount --bind "/tmp/$d" "$stage/$d"; done',
          // The checkout itself may live under /tmp (CI clones into a temp folder): keep it.
          'mkdir -p "$stage/.root"; mount --bind "$root" "$stage/.root"',
          "mount -t tmpfs tmpfs /tmp",
          'for d in "$@"; do mkdir "/tmp/$d"; mount --bind "$stage/$d" "/tmp/$d"; done',
          'case "$root" in /tmp/*) mkdir -p "$root"; mount --bind "$stage/.root" "$root";; esac',
          'exec "$deno" eval --config "$config" "$code"',
        ].join("\n"),
        Deno.execPath(),
        CONFIG,
        code,
        dir,
        fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, ""),
        ...keepDirs,
      ],
      env: { DOCKER_HOST: `unix://${dir}/docker.sock` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(other.success, new TextDecoder().decode(other.stderr));
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
    // A host dir removed inside the namespace was a mount point there: its contents are gone,
    // the empty directory stays in the real /tmp. An empty one belongs to nobody.
    for (const d of keepDirs) {
      await Deno.remove(`/tmp/${d}`).catch(() => {}); // fails for a dir that is not empty
    }
  }
}

Deno.test({
  name: "an agent starting in another PID namespace spares the running job of a live agent",
  ignore: unshareSkip !== undefined,
  async fn() {
    // Agents in containers that share the host's /tmp and Docker socket (e.g. with
    // --network host, so the same hostname) each live in their own PID namespace.
    const jobId = `review-live-${crypto.randomUUID()}`;
    const executor = createDockerExecutor({
      request: makeRequest(jobId),
      sink: { write: () => {} },
      logger: silentLogger,
      writeJumpPoint: false,
    });
    const before = await hostDirsOf(`${Deno.hostname()}/${Deno.pid}`);
    try {
      assert.equal(await executor.prepare(), 0);
      assert.equal(await executor.start(), 0);
      assert.deepEqual(await jobResources(jobId), { containers: 2, networks: 1 });
      const mine = (await hostDirsOf(`${Deno.hostname()}/${Deno.pid}`)).filter((d) =>
        !before.includes(d)
      );
      // The other agent starts and removes what it takes for leftovers.
      await removeLeftoversInNewPidNamespace(jobId, mine);
      assert.deepEqual(
        await jobResources(jobId),
        { containers: 2, networks: 1 },
        "the other agent removed a live agent's job",
      );
      assert.equal(await executor.runCommand("true"), 0, "the live job's shell is gone");
    } finally {
      await executor.cleanup();
      await forceRemove(jobId);
    }
  },
});

Deno.test({
  name: "a restarted agent with the PID of a killed one removes the killed agent's job",
  ignore: unshareSkip !== undefined,
  async fn() {
    // An agent that is PID 1 of its container, killed and restarted with the container, is
    // PID 1 again on the same hostname: `<hostname>/1` then names both.
    const jobId = `review-pid1-${crypto.randomUUID()}`;
    const script = await Deno.makeTempFile({ suffix: ".ts" });
    await Deno.writeTextFile(
      script,
      `import { createDockerExecutor } from "${DOCKER_MODULE}";
import { silentLogger } from "${LOG_MODULE}";
const executor = createDockerExecutor({
  request: JSON.parse(Deno.args[0]), logger: silentLogger, writeJumpPoint: false,
  sink: { write: (e) => e.event === "cmd_output" && e.output.includes("running") && console.log("running") },
});
await executor.prepare();
await executor.start();
await executor.runCommand("echo running; sleep 300");
`,
    );
    const child = new Deno.Command("unshare", {
      args: [
        "-p",
        "-f",
        "--mount-proc",
        "--kill-child",
        Deno.execPath(),
        "run",
        "-A",
        "--config",
        CONFIG,
        script,
        JSON.stringify(makeRequest(jobId)),
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    try {
      let seen = "";
      while (!seen.includes("running")) {
        const { value, done } = await reader.read();
        if (done) throw new Error("the killed agent ended before its job ran");
        seen += value;
      }
      child.kill("SIGKILL"); // --kill-child: the agent (PID 1 of its namespace) dies with it
      await child.status;
      assert.deepEqual(await jobResources(jobId), { containers: 2, networks: 1 });
      // The restarted agent, PID 1 again in a new namespace, cleans up at start.
      await removeLeftoversInNewPidNamespace(jobId, await hostDirsOf(`${Deno.hostname()}/1`));
      // No agent at all runs this job any more: whoever starts next must remove it.
      await removeLeftovers({ logger: silentLogger });
      assert.deepEqual(
        await jobResources(jobId),
        { containers: 0, networks: 0 },
        "the killed agent's containers were taken for a live agent's",
      );
    } finally {
      await reader.cancel().catch(() => {});
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await child.status;
      await forceRemove(jobId);
      await Deno.remove(script);
      // Its host dir names `<hostname>/1` as owner too.
      for await (const entry of Deno.readDir("/tmp")) {
        if (!entry.name.startsWith("agent-temp-directory-")) continue;
        const owner = await Deno.readTextFile(`/tmp/${entry.name}/.owner`).catch(() => "");
        if (owner === `${Deno.hostname()}/1`) {
          await Deno.remove(`/tmp/${entry.name}`, { recursive: true }).catch(() => {});
        }
      }
    }
  },
});

Deno.test({
  name: "a UTF-8 character split across two reads with a pause is not replaced by U+FFFD",
  ignore: dockerSkip !== undefined,
  async fn() {
    const events: JobEvent[] = [];
    const request = makeRequest(`review-utf8-${crypto.randomUUID()}`);
    const executor = createDockerExecutor({
      request: {
        ...request,
        compose: { ...request.compose, containers: [request.compose.containers[0]] },
      },
      sink: { write: (event) => events.push(event) },
      logger: silentLogger,
      writeJumpPoint: false,
    });
    try {
      assert.equal(await executor.prepare(), 0);
      assert.equal(await executor.start(), 0);
      const exitCode = await executor.runCommand(
        "printf '\\xe2\\x9c'; sleep 0.5; printf '\\x93 done\\n'",
      );
      assert.equal(exitCode, 0);
    } finally {
      await executor.cleanup();
    }
    const start = events.findLastIndex((e) => e.event === "cmd_started");
    const output = events.slice(start).map((e) => e.event === "cmd_output" ? e.output : "")
      .join("");
    assert.equal(output, "\u2713 done\n"); // DECISIONS.md 17: no UTF-8 sequence is split
  },
});
