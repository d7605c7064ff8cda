/**
 * Container-executor benchmarks for `deno task bench`, each beside its floor measured in the
 * same run on the same daemon:
 *
 * - job start latency: executor start to the first command running, for a one-container job
 *   whose image is present, against `docker run --rm IMAGE true` done through the Engine API
 *   as the Docker CLI does it (create, attach, wait, start, read to the end, removed);
 * - output throughput: a command printing N bytes in the job shell (every byte through the
 *   event encoding, checked), against the same command under `docker exec -t` in the same
 *   container (hijacked TTY stream read to the end).
 *
 * Both measure with the locally built test images (tests/support/test_images.ts).
 *
 * @module
 */

import type { BenchContext, BenchRow } from "./bench.ts";
import { createDockerExecutor, JOB_LABEL } from "../../executors/docker.ts";
import { DockerClient } from "../../executors/docker_api.ts";
import { encodeEvent, type JobEvent } from "../../lib/engine/events.ts";
import type { JobRequest } from "../../lib/engine/job_request_types.ts";
import { silentLogger } from "../../lib/util/agent_log.ts";
import { ensureTestImages } from "../support/test_images.ts";
import { commands, container, containerRequest } from "../support/container_jobs.ts";

/** A one-container job request on `image`. */
function request(image: string, directives: readonly string[] = []): JobRequest {
  return containerRequest({
    job_id: `bench-${crypto.randomUUID()}`,
    containers: [container(`bench-${crypto.randomUUID().slice(0, 8)}`, image)],
    commands: commands(...directives),
  });
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * Milliseconds from creating the executor to the first command running (`cmd_started` of
 * `true`), through prepare, start, env export and file injection, as a job does.
 */
export async function measureJobStart(image: string): Promise<number> {
  let firstCommandAt = 0;
  const started = performance.now();
  await using executor = createDockerExecutor({
    request: request(image),
    sink: {
      write(event: JobEvent) {
        if (event.event === "cmd_started" && event.directive === "true" && !firstCommandAt) {
          firstCommandAt = performance.now();
        }
      },
    },
    logger: silentLogger,
    writeJumpPoint: false,
  });
  if (await executor.prepare() !== 0 || await executor.start() !== 0) {
    throw new Error(`Cannot start a container job on ${image}`);
  }
  await executor.exportEnvVars([], []);
  await executor.injectFiles([]);
  await executor.runCommand("true");
  return firstCommandAt - started;
}

/** What {@linkcode measureDockerRun} returns. */
export interface DockerRunResult {
  readonly ms: number;
  /** `default` (as `docker run` does) or `none` when the daemon has no usable default bridge. */
  readonly network: "default" | "none";
}

/**
 * Times `docker run --rm IMAGE true` done as the Docker CLI does it through the Engine API:
 * create (auto-remove), attach, wait for removal, start, read the output to its end. On the
 * default network, like `docker run`; a daemon whose default bridge is broken gets the same run
 * without a network (reported).
 */
export async function measureDockerRun(image: string): Promise<DockerRunResult> {
  await using client = await DockerClient.connect();
  const run = async (networkMode?: string) => {
    const started = performance.now();
    const id = await client.createContainer(undefined, {
      Image: image,
      Cmd: ["true"],
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: { AutoRemove: true, ...(networkMode ? { NetworkMode: networkMode } : {}) },
    });
    await using stream = await client.attachContainer(id, { stdin: false });
    const removed = client.waitContainer(id, { condition: "removed" });
    try {
      await client.startContainer(id);
    } catch (error) {
      await stream.readable.cancel();
      await client.removeContainer(id);
      await removed.catch(() => {});
      throw error;
    }
    for await (const _ of stream.readable) { /* `true` prints nothing */ }
    await removed;
    return performance.now() - started;
  };
  try {
    return { ms: await run(), network: "default" };
  } catch {
    return { ms: await run("none"), network: "none" };
  }
}

/** What {@linkcode measureThroughput} returns, in milliseconds for `bytes` of output. */
export interface ThroughputResult {
  readonly bytes: number;
  /** The command in the job shell, every byte through the event encoding. */
  readonly agentMs: number;
  /** The same command under `docker exec -t` in the same container. */
  readonly execMs: number;
  /** Bytes of JSON lines the agent's events encoded to. */
  readonly logBytes: number;
}

/** Times printing `bytes` bytes in a container job against `docker exec -t`. */
export async function measureThroughput(image: string, bytes: number): Promise<ThroughputResult> {
  const command = `yes 0123456789012345678901234567890123456789 | head -c ${bytes}`;
  const job = request(image);
  let outputBytes = 0;
  let encodedBytes = 0;
  await using executor = createDockerExecutor({
    request: job,
    sink: {
      write(event: JobEvent) {
        encodedBytes += encodeEvent(event).length;
        if (event.event === "cmd_output") outputBytes += event.output.length;
      },
    },
    logger: silentLogger,
    writeJumpPoint: false,
  });
  if (await executor.prepare() !== 0 || await executor.start() !== 0) {
    throw new Error(`Cannot start a container job on ${image}`);
  }
  outputBytes = 0;
  const agentStarted = performance.now();
  const exitCode = await executor.runCommand(command);
  const agentMs = performance.now() - agentStarted;
  if (exitCode !== 0 || outputBytes !== bytes) {
    throw new Error(`Cannot measure throughput: exit ${exitCode}, ${outputBytes}/${bytes} bytes`);
  }

  await using client = await DockerClient.connect();
  const [main] = await client.listContainers({
    label: [`${JOB_LABEL}=${job.job_id}`],
  });
  const execId = await client.createExec(main.Id, { Cmd: ["sh", "-c", command], Tty: true });
  const execStarted = performance.now();
  await using stream = await client.startExec(execId, { tty: true });
  let received = 0;
  for await (const chunk of stream.readable) received += chunk.length;
  const execMs = performance.now() - execStarted;
  if (received < bytes) throw new Error(`Cannot measure docker exec: ${received}/${bytes} bytes`);
  return { bytes, agentMs, execMs, logBytes: encodedBytes };
}

const ms = (value: number) => `${value.toFixed(0)} ms`;
const ratio = (a: number, b: number) => b > 0 ? `${(a / b).toFixed(2)}x` : "n/a";

/** The bench runner's entry: start latency and output throughput rows. */
export async function dockerBench(context: BenchContext): Promise<BenchRow[]> {
  const images = await ensureTestImages();
  const runs = context.quick ? 3 : 7;
  const bytes = context.quick ? 10_000_000 : 100_000_000;
  await measureJobStart(images.bash); // warm-up: page cache, daemon caches
  await measureDockerRun(images.bash);
  const agentStarts: number[] = [];
  const dockerRuns: DockerRunResult[] = [];
  for (let i = 0; i < runs; i++) {
    agentStarts.push(await measureJobStart(images.bash));
    dockerRuns.push(await measureDockerRun(images.bash));
  }
  const start = median(agentStarts);
  const floor = median(dockerRuns.map((r) => r.ms));
  const networkNote = dockerRuns.some((r) => r.network === "none")
    ? "; floor ran with --network none: the daemon's default bridge is unusable"
    : "";
  const throughput = await measureThroughput(images.bash, bytes);
  const mbps = (ms: number) => `${(throughput.bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
  return [
    {
      figure: "container job start (1 container, image present)",
      agent: ms(start),
      floor: ms(floor),
      ratio: ratio(start, floor),
      note: `docker run --rm IMAGE true via the Engine API, median of ${runs} (goal <= 1.5x)` +
        networkNote,
    },
    {
      figure: `container output throughput (${throughput.bytes / 1e6} MB)`,
      agent: mbps(throughput.agentMs),
      floor: mbps(throughput.execMs),
      ratio: ratio(throughput.agentMs, throughput.execMs),
      note: "same command under docker exec -t (ratio: time; goal <= 1.43x, i.e. >= 70%)",
    },
  ];
}

if (import.meta.main) {
  const tmp = await Deno.makeTempDir();
  try {
    const rows = await dockerBench({
      root: ".",
      agent: [],
      quick: Deno.args.includes("--quick"),
      env: {},
      tmp,
    });
    for (const row of rows) console.log(JSON.stringify(row));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}
