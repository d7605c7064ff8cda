/**
 * What jobs of a dead agent leave behind, and who may remove it (executors/docker_leftovers.ts):
 * containers, networks and host job directories of agents that are gone are removed at start;
 * those of a live agent stay, whatever PID namespace either agent runs in (agents in
 * containers, `--network host`) and even when a restarted agent got the dead one's PID.
 *
 * The PID-namespace tests need `unshare` (util-linux) and root; they are skipped otherwise,
 * except under AGENT_TEST_REQUIRE_ALL=1, where they run and fail.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { createDockerExecutor } from "../executors/docker.ts";
import {
  HOST_DIR_LABEL,
  JOB_LABEL,
  OWNER_LABEL,
  removeLeftovers,
} from "../executors/docker_leftovers.ts";
import { createJobHostDir } from "../executors/job_host_dir.ts";
import { DockerClient, dockerSocketPath } from "../executors/docker_api.ts";
import type { JobRequest } from "../lib/engine/job_request_types.ts";
import { silentLogger } from "../lib/util/agent_log.ts";
import { dockerSkipReason, TEST_IMAGES, testImagesReady } from "./support/test_images.ts";
import {
  assertNothingLeft,
  container,
  containerRequest,
  mainName,
} from "./support/container_jobs.ts";

const dockerSkip = await dockerSkipReason();

async function unshareSkipReason(): Promise<string | undefined> {
  if (dockerSkip !== undefined) return dockerSkip;
  let works = false;
  try {
    // Throws at once (not a rejected promise) when `unshare` is not installed.
    const probe = await new Deno.Command("unshare", {
      args: ["-p", "-f", "-m", "--mount-proc", "true"],
      stdout: "null",
      stderr: "null",
    }).output();
    works = probe.success;
  } catch {
    works = false;
  }
  if (works) return undefined;
  if (Deno.env.get("AGENT_TEST_REQUIRE_ALL") === "1") return undefined;
  const reason = "unshare -p -m --mount-proc is not available (needs util-linux and root)";
  console.log(`Skipping PID namespace tests: ${reason}`);
  return reason;
}
const unshareSkip = await unshareSkipReason();

/** A test that needs Docker (and `unshare` when `skip` says so), with the test images. */
function leftoversTest(name: string, fn: () => Promise<void>, skip = dockerSkip): void {
  Deno.test({
    name,
    ignore: skip !== undefined,
    async fn() {
      await testImagesReady();
      await fn();
    },
  });
}

const CONFIG = new URL("../deno.json", import.meta.url).pathname;
const DOCKER_MODULE = new URL("../executors/docker.ts", import.meta.url).href;
const LEFTOVERS_MODULE = new URL("../executors/docker_leftovers.ts", import.meta.url).href;
const LOG_MODULE = new URL("../lib/util/agent_log.ts", import.meta.url).href;

/** A job with a main container and a sidecar: two containers and a network. */
function makeRequest(jobId: string): JobRequest {
  return containerRequest({
    job_id: jobId,
    containers: [container(mainName(), TEST_IMAGES.bash), container("db", TEST_IMAGES.pong)],
  });
}

/** Options of {@linkcode startDoomedAgent}. */
interface DoomedAgentOptions {
  /** Put before `deno` (e.g. `unshare ...`). @default [] */
  readonly wrap?: readonly string[];
  /** @default "inherit" */
  readonly stderr?: "inherit" | "null";
}

/** An agent process that runs a job; the test kills it. */
interface DoomedAgent extends AsyncDisposable {
  readonly child: Deno.ChildProcess;
  /** Resolves once the job's command runs. */
  readonly running: Promise<void>;
}

/**
 * An agent process (`deno run` of a script) that starts the job's containers and prints
 * `running` once its command runs.
 */
async function startDoomedAgent(
  request: JobRequest,
  options: DoomedAgentOptions = {},
): Promise<DoomedAgent> {
  const { wrap = [], stderr = "inherit" } = options;
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
  const [command, ...prefix] = [...wrap, Deno.execPath()];
  const child = new Deno.Command(command, {
    args: [...prefix, "run", "-A", "--config", CONFIG, script, JSON.stringify(request)],
    stdout: "piped",
    stderr,
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const running = (async () => {
    let seen = "";
    while (!seen.includes("running")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the doomed agent ended before its job ran");
      seen += value;
    }
  })();
  return {
    child,
    running,
    async [Symbol.asyncDispose]() {
      await running.catch(() => {});
      await reader.cancel().catch(() => {});
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await child.status;
      await Deno.remove(script);
    },
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

leftoversTest(
  "removeLeftovers() in another PID namespace spares the running job of a live agent",
  async () => {
    // Agents in containers that share the host's /tmp and Docker socket (e.g. with
    // --network host, so the same hostname) each live in their own PID namespace.
    const jobId = `leftovers-live-${crypto.randomUUID()}`;
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
  unshareSkip,
);

leftoversTest(
  "removeLeftovers() lets a restarted agent with a killed one's PID remove the killed agent's job",
  async () => {
    // An agent that is PID 1 of its container, killed and restarted with the container, is
    // PID 1 again on the same hostname: `<hostname>/1` then names both.
    const jobId = `leftovers-pid1-${crypto.randomUUID()}`;
    try {
      await using agent = await startDoomedAgent(makeRequest(jobId), {
        wrap: ["unshare", "-p", "-f", "--mount-proc", "--kill-child"],
        stderr: "null",
      });
      await agent.running;
      agent.child.kill("SIGKILL"); // --kill-child: the agent (PID 1 of its namespace) dies with it
      await agent.child.status;
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
      await forceRemove(jobId);
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
  unshareSkip,
);

/** A job host dir as a dead agent leaves it: its owner file is there but nobody locks it. */
async function deadAgentHostDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "agent-temp-directory-" });
  await Deno.writeTextFile(`${dir}/.owner`, `${Deno.hostname()}/${Deno.pid}`);
  return dir;
}

leftoversTest("removeLeftovers() removes what dead agents left and spares live ones", async () => {
  await using client = await DockerClient.connect();
  const jobId = `leftover-${crypto.randomUUID()}`;
  const make = async (labels: Record<string, string>) => {
    labels = { [JOB_LABEL]: jobId, ...labels };
    const network = await client.createNetwork(`agent-test-${crypto.randomUUID()}`, { labels });
    const id = await client.createContainer(undefined, {
      Image: TEST_IMAGES.nobash,
      Cmd: ["sleep", "60"],
      Labels: labels,
      HostConfig: { NetworkMode: "none" },
    });
    return { network, id };
  };
  // The owner label names this (live) process in both: only the lock on the host dir counts.
  await using liveDir = await createJobHostDir();
  const deadDir = await deadAgentHostDir();
  const ownLabel = `${Deno.hostname()}/${Deno.pid}`;
  const dead = await make({ [OWNER_LABEL]: ownLabel, [HOST_DIR_LABEL]: deadDir });
  const live = await make({ [OWNER_LABEL]: ownLabel, [HOST_DIR_LABEL]: liveDir.path });
  const gone = await make({ [OWNER_LABEL]: ownLabel, [HOST_DIR_LABEL]: `${deadDir}-missing` });
  // Older agents' resources (no host dir label) are judged by `<hostname>/<pid>`.
  const oldDead = await make({ [OWNER_LABEL]: `${Deno.hostname()}/999999999` });
  const oldLive = await make({ [OWNER_LABEL]: ownLabel });
  try {
    // Agents started by other tests running at the same time may remove the dead owner's
    // resources first, so check what is left rather than what this call counted.
    await removeLeftovers({ logger: silentLogger });
    for (const { id } of [dead, gone, oldDead]) {
      assert.equal(await client.inspectContainer(id), undefined);
    }
    const networks = (await client.listNetworks({ label: [`${JOB_LABEL}=${jobId}`] }))
      .map((n) => n.Id);
    assert.deepEqual(networks.toSorted(), [live.network, oldLive.network].toSorted());
    assert.ok(await client.inspectContainer(live.id));
    assert.ok(await client.inspectContainer(oldLive.id));
    await assert.rejects(() => Deno.stat(deadDir), Deno.errors.NotFound);
    assert.ok((await Deno.stat(liveDir.path)).isDirectory);
  } finally {
    for (const { id, network } of [dead, live, gone, oldDead, oldLive]) {
      await client.removeContainer(id).catch(() => {});
      await client.removeNetwork(network).catch(() => {});
    }
    await Deno.remove(deadDir, { recursive: true }).catch(() => {});
  }
  await assertNothingLeft(jobId);
});

leftoversTest("removeLeftovers() deletes the host job directories of dead agents", async () => {
  const dead = await deadAgentHostDir();
  await using live = await createJobHostDir();
  // Being made: no owner file yet.
  const unowned = await Deno.makeTempDir({ dir: "/tmp", prefix: "agent-temp-directory-" });
  try {
    await Deno.writeTextFile(`${dead}/.env`, "export SECRET=x\n");
    await removeLeftovers({ logger: silentLogger });
    await assert.rejects(() => Deno.stat(dead), Deno.errors.NotFound);
    assert.ok((await Deno.stat(live.path)).isDirectory);
    assert.ok((await Deno.stat(unowned)).isDirectory);
    // The owner file stays locked (the job is still this agent's) after the check.
    await using owner = await Deno.open(`${live.path}/.owner`);
    assert.equal(await owner.tryLock(true), false);
  } finally {
    await Deno.remove(dead, { recursive: true }).catch(() => {});
    await Deno.remove(unowned, { recursive: true });
  }
  await live.remove();
  await assert.rejects(() => Deno.stat(live.path), Deno.errors.NotFound);
});

leftoversTest(
  "removeLeftovers() clears what a killed agent left in the middle of a job",
  async () => {
    const jobId = `killed-${crypto.randomUUID()}`;
    try {
      await using agent = await startDoomedAgent(makeRequest(jobId));
      await agent.running;
      agent.child.kill("SIGKILL");
      await agent.child.status;
      assert.deepEqual(await jobResources(jobId), { containers: 2, networks: 1 });
      await removeLeftovers({ logger: silentLogger });
      await assertNothingLeft(jobId);
    } finally {
      await removeLeftovers({ logger: silentLogger });
    }
  },
);
