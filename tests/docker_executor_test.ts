/**
 * The container executor (executors/docker.ts) driven by the real job lifecycle: each job runs
 * through `Job.create` with the `createExecutor` of executors/for_job.ts, as every mode runs
 * it, and the test checks the job log, the result and that Docker holds nothing of the job.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  containerFilePath,
  createDockerExecutor,
  type DockerExecutorOptions,
} from "../executors/docker.ts";
import { JOB_LABEL } from "../executors/docker_leftovers.ts";
import type { CreateExecutor, ExecutorSetup } from "../lib/engine/executor.ts";
import { DockerClient } from "../executors/docker_api.ts";
import { encodeEvent, type JobEvent, type JobResult } from "../lib/engine/events.ts";
import type { ImagePullCredentials, JobRequest } from "../lib/engine/job_request_types.ts";
import { JobConstructionError } from "../lib/util/errors.ts";
import { Job } from "../lib/engine/job.ts";
import { BOOT_MARKER } from "../lib/engine/shell_session.ts";
import { createExecutor } from "../executors/for_job.ts";
import { encodeBase64 } from "../lib/util/base64.ts";
import { type Logger, silentLogger } from "../lib/util/agent_log.ts";
import { recordingLogger } from "./support/recording_logger.ts";
import { simplify } from "./support/job_harness.ts";
import { dockerSkipReason, TEST_IMAGES, testImagesReady } from "./support/test_images.ts";
import { registrySkipReason, startRegistry } from "./support/registry.ts";
import {
  assertNothingLeft,
  commands,
  container,
  containerRequest as makeRequest,
  mainName,
} from "./support/container_jobs.ts";
import { startWedgedDocker } from "./support/wedged_docker.ts";

const dockerSkip = await dockerSkipReason();
const registrySkip = dockerSkip ?? await registrySkipReason();

interface JobRun {
  readonly result: JobResult;
  readonly events: JobEvent[];
  readonly log: string[];
  readonly job: Job;
}

/** Options of {@linkcode runJob}: the mode's executor settings, plus test hooks. */
interface RunOptions extends Partial<Omit<ExecutorSetup, "request" | "sink" | "logger">> {
  /** @default silentLogger */
  readonly logger?: Logger;
  /** Called with each event; may stop the job. */
  readonly onEvent?: (event: JobEvent, job: Job) => void;
  /**
   * Container-executor settings no mode sets (Docker socket, `aws` CLI, home directory, shell
   * start deadline): the job's executor is then `createDockerExecutor` with these instead of
   * for_job.ts's choice.
   */
  readonly dockerOnly?: Partial<DockerExecutorOptions>;
}

/** The executor builder for `dockerOnly` settings. */
function dockerExecutorWith(settings: Partial<DockerExecutorOptions>): CreateExecutor {
  return (setup) =>
    createDockerExecutor({
      request: setup.request,
      sink: setup.sink,
      logger: setup.logger,
      ...settings,
    });
}

/**
 * Runs a container job through `Job` (lib/engine/job.ts) as every mode does, then checks that
 * Docker holds nothing of the job (unless the job was pointed at another Docker socket).
 */
async function runJob(request: JobRequest, options: RunOptions = {}): Promise<JobRun> {
  const { onEvent, dockerOnly, logger = silentLogger, ...setup } = options;
  const events: JobEvent[] = [];
  let job: Job | undefined = undefined;
  job = Job.create({
    createExecutor: dockerOnly ? dockerExecutorWith(dockerOnly) : createExecutor,
    request,
    logger,
    ...setup,
    sink: {
      write(event: JobEvent) {
        events.push(event);
        if (job) onEvent?.(event, job);
      },
    },
  });
  const result = await job.run();
  if (dockerOnly?.dockerSocketPath === undefined) await assertNothingLeft(request.job_id);
  return { result, events, log: simplify(events), job };
}

const START = [
  "job_started",
  "directive: Pulling docker images...",
  "Exit Code: 0",
  "directive: Starting the docker image...",
  "Starting a new bash session.\n",
  "Exit Code: 0",
];

function epilogueExport(): string[] {
  return [
    "directive: Exporting environment variables",
    "Exporting SEMAPHORE_JOB_RESULT\n",
    "Exit Code: 0",
  ];
}

/**
 * A test that needs Docker and the test images: skipped without Docker, unless
 * AGENT_TEST_REQUIRE_ALL=1, where each such test fails on its own.
 */
function dockerTest(name: string, fn: () => Promise<void>): void {
  Deno.test({
    name,
    ignore: dockerSkip !== undefined,
    async fn() {
      await testImagesReady();
      await fn();
    },
  });
}

// ---- pure helpers --------------------------------------------------------------------------

Deno.test("containerFilePath() keeps absolute and ~ paths and puts the rest under ~/", () => {
  assert.equal(containerFilePath("/etc/x"), "/etc/x");
  assert.equal(containerFilePath("~/x"), "~/x");
  assert.equal(containerFilePath("a/b.txt"), "~/a/b.txt");
});

Deno.test("createDockerExecutor() refuses a job without containers", () => {
  const request = makeRequest({ containers: [] });
  assert.throws(
    () => createDockerExecutor({ request, sink: { write() {} }, logger: silentLogger }),
    (error: Error) =>
      error instanceof JobConstructionError &&
      error.message === "Cannot run a dockercompose job: compose.containers is empty",
  );
});

// ---- jobs ----------------------------------------------------------------------------------

dockerTest("a hello-world container job logs the original's shape and leaves nothing", async () => {
  const run = await runJob(makeRequest({ commands: commands("echo Hello World") }));
  assert.equal(run.result, "passed");
  assert.deepEqual(run.log, [
    ...START,
    "directive: Exporting environment variables",
    "Exit Code: 0",
    "directive: Injecting Files",
    "Exit Code: 0",
    "directive: echo Hello World",
    "Hello World\n",
    "Exit Code: 0",
    ...epilogueExport(),
    "job_finished: passed",
  ]);
});

dockerTest(
  "env vars, container env vars, aliases and the user apply in the main container",
  async () => {
    const request = makeRequest({
      containers: [
        container(mainName(), TEST_IMAGES.bash, {
          user: "semaphore",
          env_vars: [{ name: "FROM_CONTAINER", value: encodeBase64("c v") }, {
            name: "BROKEN",
            value: "!!",
          }],
        }),
      ],
      env_vars: [
        { name: "B", value: encodeBase64("$PATH:'q'") },
        { name: "A", value: encodeBase64("ünï") },
      ],
      commands: [
        { directive: "echo $A $B $FROM_CONTAINER [$BROKEN]", alias: "Show vars" },
        { directive: "whoami; cd /tmp", alias: "" },
        { directive: "pwd; echo 'ünïcödé 😀'; printf '\\x96\\x96\\x96\\x96\\x96'", alias: "" },
      ],
    });
    const run = await runJob(request);
    assert.equal(run.result, "passed");
    assert.deepEqual(run.log, [
      ...START,
      "directive: Exporting environment variables",
      "Exporting A\nExporting B\n",
      "Exit Code: 0",
      "directive: Injecting Files",
      "Exit Code: 0",
      "directive: Show vars",
      "Running: echo $A $B $FROM_CONTAINER [$BROKEN]\nünï $PATH:'q' c v []\n",
      "Exit Code: 0",
      "directive: whoami; cd /tmp",
      "semaphore\n",
      "Exit Code: 0",
      "directive: pwd; echo 'ünïcödé 😀'; printf '\\x96\\x96\\x96\\x96\\x96'",
      "/tmp\nünïcödé 😀\n\udfff\udfff\udfff\udfff\udfff",
      "Exit Code: 0",
      ...epilogueExport(),
      "job_finished: passed",
    ]);
    const encoded = run.events.filter((e) => e.event === "cmd_output").map(encodeEvent).join("");
    assert.match(encoded, /\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd/);
  },
);

dockerTest(
  "services reach each other by name; command and entrypoint apply; custom main name",
  async () => {
    const builder = mainName("builder");
    const request = makeRequest({
      containers: [
        container(builder, TEST_IMAGES.bash),
        container("db", TEST_IMAGES.pong),
        container("cache", TEST_IMAGES.nobash, {
          entrypoint: "nc",
          command: "-ll -p 6379 -e echo cached",
          env_vars: [{ name: "X", value: encodeBase64("1") }],
        }),
        container("probe", TEST_IMAGES.nobash, {
          command: `sh -c "until nc db 5432 </dev/null > /tmp/reply; do sleep 0.1; done; ` +
            `nc -ll -p 7000 -e cat /tmp/reply"`,
        }),
      ],
      commands: commands(
        "for i in $(seq 50); do nc db 5432 </dev/null 2>/dev/null && break; sleep 0.1; done",
        "for i in $(seq 50); do nc cache 6379 </dev/null 2>/dev/null && break; sleep 0.1; done",
        "for i in $(seq 50); do nc probe 7000 </dev/null 2>/dev/null && break; sleep 0.1; done",
        `docker ps --filter name=${builder} --format '{{.Names}}' | grep -x ${builder}`,
      ),
    });
    const run = await runJob(request);
    const outputs = run.log.filter((line) =>
      !line.startsWith("directive") && !line.startsWith("Exit")
    );
    assert.equal(run.result, "passed", run.log.join("|"));
    assert.equal(outputs.filter((o) => o === "pong\n").length, 2, outputs.join("|"));
    assert.ok(outputs.includes("cached\n"));
    assert.ok(outputs.includes(`${builder}\n`));
  },
);

dockerTest("job limits become the container's Memory, NanoCpus and PidsLimit", async () => {
  const read = (file: string) => `read -r v < /sys/fs/cgroup/${file}; echo $v`;
  const run = await runJob(
    makeRequest({
      commands: commands(
        read("memory/memory.limit_in_bytes"),
        read("cpu/cpu.cfs_quota_us"),
        read("pids/pids.max"),
      ),
    }),
    { limits: { memoryBytes: 256 * 1024 * 1024, cpus: 0.5, pids: 100 } },
  );
  assert.equal(run.result, "passed", run.log.join("\n"));
  for (const [file, value] of [["memory", "268435456"], ["cpu", "50000"], ["pids", "100"]]) {
    const at = run.log.findIndex((l) =>
      l.startsWith(`directive: read -r v < /sys/fs/cgroup/${file}`)
    );
    assert.equal(run.log[at + 1], `${value}\n`);
  }
});

dockerTest("a container job whose command the memory limit kills fails and says why", async () => {
  const bigAlloc = "dd if=/dev/zero of=/dev/null bs=629145600 count=1";
  const { result, log } = await runJob(
    makeRequest({ commands: commands(bigAlloc, "echo next") }),
    { limits: { memoryBytes: 256 * 1024 * 1024 } },
  );
  assert.equal(result, "failed", log.join("\n"));
  const at = log.indexOf(`directive: ${bigAlloc}`);
  assert.match(log[at + 1], /Killed: the job reached its memory limit \(256 MiB\)\n$/);
  assert.notEqual(log[at + 2], "Exit Code: 0");
  assert.ok(!log.includes("directive: echo next"));
});

dockerTest("a container job whose bash the memory limit kills fails and says why", async () => {
  const grow = "x=$(head -c 629145600 /dev/zero | tr '\\0' a); echo ${#x}";
  const { result, log } = await runJob(
    makeRequest({ commands: commands(grow) }),
    { limits: { memoryBytes: 256 * 1024 * 1024 } },
  );
  assert.equal(result, "failed", log.join("\n"));
  const at = log.indexOf(`directive: ${grow}`);
  assert.match(log[at + 1], /Killed: the job reached its memory limit \(256 MiB\)\n$/);
});

dockerTest(
  "a fork bomb in a container job under a process limit of 100 fails it and says why",
  async () => {
    const bomb = "bomb() { bomb | bomb & }; bomb; sleep 3";
    const { result, log } = await runJob(
      makeRequest({ commands: commands(bomb, "echo next") }),
      { limits: { pids: 100 } },
    );
    assert.equal(result, "failed", log.join("\n"));
    const at = log.indexOf(`directive: ${bomb}`);
    assert.match(log[at + 1], /Killed: the job reached its process limit \(100\)\n$/);
    assert.notEqual(log[at + 2], "Exit Code: 0");
  },
);

dockerTest("Job measures a container job from its containers' cgroups", async () => {
  const { result, log, job } = await runJob(makeRequest({
    commands: commands("x=$(head -c 52428800 /dev/zero | tr '\\0' a); echo ${#x}"),
  }));
  assert.equal(result, "passed", log.join("\n"));
  assert.ok(log.includes("52428800\n"), log.join("\n"));
  const usage = job.usage!;
  assert.ok(usage.peakMemoryBytes! >= 50 * 1024 * 1024, JSON.stringify(usage));
  assert.ok(usage.cpuUserSeconds! + usage.cpuSystemSeconds! > 0, JSON.stringify(usage));
  assert.ok(usage.peakProcesses! >= 2, JSON.stringify(usage));
});

dockerTest("a container job's secrets, from the job and the container, are redacted", async () => {
  const request = makeRequest({
    containers: [
      container(mainName(), TEST_IMAGES.bash, {
        env_vars: [{ name: "C_TOKEN", value: encodeBase64("container-secret-2") }],
      }),
    ],
    env_vars: [{ name: "DB_PASSWORD", value: encodeBase64("job-secret-1") }],
    commands: commands(
      'echo "$DB_PASSWORD $C_TOKEN"',
      "echo '::add-mask::added-value'; echo added-value",
    ),
  });
  const run = await runJob(request);
  assert.equal(run.result, "passed");
  const text = run.log.join("\n");
  for (const secret of ["job-secret-1", "container-secret-2", "added-value"]) {
    assert.ok(!text.includes(secret), `${secret} in the log:\n${text}`);
  }
  assert.ok(run.log.includes("[REDACTED] [REDACTED]\n"), text);
});

dockerTest("docker-in-docker: a job runs docker against the mounted socket", async () => {
  const run = await runJob(makeRequest({
    commands: commands(`docker run --rm --network none ${TEST_IMAGES.nobash} echo inner`),
  }));
  assert.equal(run.result, "passed", run.log.join("|"));
  assert.ok(run.log.includes("inner\n"));
});

dockerTest("failing and unknown commands fail the job and run the fail epilogues", async () => {
  const run = await runJob(makeRequest({
    commands: commands("nosuchcommand", "echo never"),
    epilogue_always_commands: commands("echo always $SEMAPHORE_JOB_RESULT"),
    epilogue_on_pass_commands: commands("echo on pass"),
    epilogue_on_fail_commands: commands("echo on fail", "false", "echo not after false"),
  }));
  assert.equal(run.result, "failed");
  assert.deepEqual(run.log.slice(START.length), [
    "directive: Exporting environment variables",
    "Exit Code: 0",
    "directive: Injecting Files",
    "Exit Code: 0",
    "directive: nosuchcommand",
    "bash: nosuchcommand: command not found\n",
    "Exit Code: 127",
    ...epilogueExport(),
    "directive: echo always $SEMAPHORE_JOB_RESULT",
    "always failed\n",
    "Exit Code: 0",
    "directive: echo on fail",
    "on fail\n",
    "Exit Code: 0",
    "directive: false",
    "Exit Code: 1",
    "job_finished: failed",
  ]);
});

dockerTest("files are injected inside the container; a broken mode fails the job", async () => {
  const run = await runJob(makeRequest({
    files: [
      { path: "test.txt", content: encodeBase64("hello\n"), mode: "0600" },
      { path: "/tmp/deep/dir/x.sh", content: encodeBase64("echo from-x\n"), mode: "0755" },
    ],
    commands: commands("cat ~/test.txt; stat -c %a ~/test.txt; /tmp/deep/dir/x.sh"),
  }));
  assert.equal(run.result, "passed", run.log.join("|"));
  assert.deepEqual(run.log.slice(START.length + 2, START.length + 9), [
    "directive: Injecting Files",
    "Injecting test.txt with file mode 0600\nInjecting /tmp/deep/dir/x.sh with file mode 0755\n",
    "Exit Code: 0",
    "directive: cat ~/test.txt; stat -c %a ~/test.txt; /tmp/deep/dir/x.sh",
    "hello\n600\nfrom-x\n",
    "Exit Code: 0",
    "directive: Exporting environment variables",
  ]);

  const broken = await runJob(makeRequest({
    files: [{ path: "test.txt", content: encodeBase64("x"), mode: "obviously broken" }],
    commands: commands("echo never"),
  }));
  assert.equal(broken.result, "failed");
  assert.deepEqual(broken.log.slice(START.length + 2), [
    "directive: Injecting Files",
    "Injecting test.txt with file mode obviously broken\n" +
    "Failed to set file mode to obviously broken\n",
    "Exit Code: 1",
    ...epilogueExport(),
    "job_finished: failed",
  ]);
});

dockerTest("stty echo inside the job does not break the marker protocol", async () => {
  const run = await runJob(makeRequest({
    commands: commands("stty echo", "echo after echo on", "echo $((1+2))"),
  }));
  assert.equal(run.result, "passed");
  assert.ok(run.log.includes("after echo on\n"), run.log.join("|"));
  assert.ok(run.log.includes("3\n"), run.log.join("|"));
});

dockerTest(
  "a prompt with echo and the marker's text, and exec > file in a command, hang nothing",
  async () => {
    const request = makeRequest({
      containers: [
        container(mainName(), TEST_IMAGES.bash, {
          env_vars: [{ name: "PS1", value: encodeBase64(`echo ${BOOT_MARKER} \\w\\$ `) }],
        }),
      ],
      commands: commands(
        "echo before",
        // Only stdout: readline (on in the container) writes its bracketed-paste codes on stderr.
        "exec > /tmp/out",
        "echo after",
        "exec 1>&-",
        "echo closed",
      ),
      epilogue_always_commands: commands("cat /tmp/out >/dev/tty"),
    });
    const run = await runJob(request);
    assert.equal(run.result, "failed");
    assert.deepEqual(run.log.slice(START.length + 4), [
      "directive: echo before",
      "before\n",
      "Exit Code: 0",
      "directive: exec > /tmp/out",
      "Exit Code: 0",
      "directive: echo after",
      "Exit Code: 0",
      "directive: exec 1>&-",
      "Exit Code: 0",
      "directive: echo closed",
      "bash: echo: write error: Bad file descriptor\n",
      "Exit Code: 1",
      ...epilogueExport(),
      "directive: cat /tmp/out >/dev/tty",
      "after\n",
      "Exit Code: 0",
      "job_finished: failed",
    ]);
  },
);

dockerTest("a main container whose bash never answers fails the start in time", async () => {
  const request = makeRequest({
    containers: [
      container(mainName(), TEST_IMAGES.bash, {
        env_vars: [{ name: "PROMPT_COMMAND", value: encodeBase64("sleep 600") }],
      }),
    ],
    commands: commands("echo never"),
  });
  const run = await runJob(request, { dockerOnly: { shellStartTimeoutMs: 1000 } });
  assert.equal(run.result, "failed");
  assert.deepEqual(run.log, [
    "job_started",
    "directive: Pulling docker images...",
    "Exit Code: 0",
    "directive: Starting the docker image...",
    "Starting a new bash session.\nFailed to start the docker image\n" +
    "the shell did not answer within 1 s",
    "Exit Code: 1",
    "job_finished: failed",
  ]);
});

dockerTest(
  "stopping during a command ends it with exit code 1 and removes everything",
  async () => {
    const request = makeRequest({
      containers: [container(mainName(), TEST_IMAGES.bash), container("db", TEST_IMAGES.pong)],
      commands: commands("echo started; sleep 300", "echo never"),
      epilogue_always_commands: commands("echo no epilogue"),
    });
    const started = performance.now();
    const run = await runJob(request, {
      onEvent: (event, job) => {
        if (event.event === "cmd_output" && event.output.includes("started")) job.stop();
      },
    });
    assert.ok(performance.now() - started < 30_000);
    assert.equal(run.result, "stopped");
    assert.deepEqual(run.log.slice(START.length + 4), [
      "directive: echo started; sleep 300",
      "started\n",
      "Exit Code: 1",
      "job_finished: stopped",
    ]);
  },
);

dockerTest("stopping during an epilogue marks the job stopped", async () => {
  const run = await runJob(
    makeRequest({
      commands: commands("true"),
      epilogue_always_commands: commands("echo epilogue; sleep 300", "echo never"),
    }),
    {
      onEvent: (event, job) => {
        if (event.event === "cmd_output" && event.output.includes("epilogue")) job.stop();
      },
    },
  );
  assert.equal(run.result, "stopped");
  assert.deepEqual(run.log.slice(-4), [
    "directive: echo epilogue; sleep 300",
    "epilogue\n",
    "Exit Code: 1",
    "job_finished: stopped",
  ]);
});

dockerTest("a command that ends the shell reports its status; later ones get 1", async () => {
  const run = await runJob(makeRequest({
    commands: commands("echo bye; exit 5", "echo never"),
    epilogue_always_commands: commands("echo epilogue"),
  }));
  assert.equal(run.result, "failed");
  assert.deepEqual(run.log.slice(START.length + 4), [
    "directive: echo bye; exit 5",
    "bye\n",
    "Exit Code: 5",
    "directive: Exporting environment variables",
    "Exporting SEMAPHORE_JOB_RESULT\n",
    "Exit Code: 1",
    "directive: echo epilogue",
    "Exit Code: 1",
    "job_finished: failed",
  ]);
});

dockerTest(
  "stopping while the containers start stops the job and removes everything",
  async () => {
    // Stopped before any container exists.
    const early = await runJob(makeRequest({ commands: commands("echo never") }), {
      onEvent: (event, job) => {
        if (event.event === "cmd_output" && event.output.startsWith("Starting a new bash")) {
          job.stop();
        }
      },
    });
    assert.equal(early.result, "stopped");
    assert.deepEqual(early.log, [
      ...START.slice(0, 4),
      "Starting a new bash session.\nFailed to start the docker image\nthe job was stopped",
      "Exit Code: 1",
      "job_finished: stopped",
    ]);

    // Stopped while the main container runs but bash has not answered yet.
    const request = makeRequest({
      containers: [
        container(mainName(), TEST_IMAGES.bash, { entrypoint: `sh -c "sleep 300; exec bash" --` }),
        container("db", TEST_IMAGES.pong),
      ],
      commands: commands("echo never"),
    });
    await using client = await DockerClient.connect();
    const late = await runJob(request, {
      onEvent: (event, job) => {
        if (event.event !== "cmd_output" || !event.output.startsWith("Starting a new bash")) return;
        (async () => {
          const filters = { label: [`${JOB_LABEL}=${request.job_id}`] };
          while (true) {
            const running = await client.listContainers(filters);
            if (running.filter((c) => c.State === "running").length === 2) break;
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          await job.stop();
        })();
      },
    });
    assert.equal(late.result, "stopped");
    assert.deepEqual(late.log, [
      ...START.slice(0, 4),
      "Starting a new bash session.\nFailed to start the docker image\nthe job was stopped",
      "Exit Code: 1",
      "job_finished: stopped",
    ]);
  },
);

dockerTest(
  "a UTF-8 character split across two reads with a pause is not replaced by U+FFFD",
  async () => {
    // DECISIONS.md 17: no UTF-8 sequence is split (tests/output_buffer_test.ts pins the logic).
    const directive = "printf '\\xe2\\x9c'; sleep 0.5; printf '\\x93 done\\n'";
    const run = await runJob(makeRequest({ commands: commands(directive) }));
    assert.equal(run.result, "passed");
    const at = run.log.indexOf(`directive: ${directive}`);
    assert.deepEqual(run.log.slice(at, at + 3), [
      `directive: ${directive}`,
      "\u2713 done\n",
      "Exit Code: 0",
    ]);
  },
);

dockerTest("an image without bash fails the start with the daemon's reason", async () => {
  const run = await runJob(makeRequest({
    containers: [container(mainName(), TEST_IMAGES.nobash)],
    commands: commands("echo never"),
  }));
  assert.equal(run.result, "failed");
  assert.equal(run.log.length, 7, run.log.join("|"));
  assert.deepEqual(run.log.slice(0, 4), START.slice(0, 4));
  assert.match(
    run.log[4],
    /^Starting a new bash session\.\nFailed to start the docker image\nError response from daemon: .*executable file not found.*[^\n]$/s,
  );
  assert.deepEqual(run.log.slice(5), ["Exit Code: 1", "job_finished: failed"]);
});

dockerTest("an image that exists nowhere fails the pull with a readable reason", async () => {
  const run = await runJob(makeRequest({
    containers: [container(mainName(), "127.0.0.1:9/agent-test/nothing:1")],
  }));
  assert.equal(run.result, "failed");
  assert.equal(run.log[1], "directive: Pulling docker images...");
  assert.match(run.log[2], /^Error response from daemon: .*127\.0\.0\.1:9.*\n$/);
  assert.deepEqual(run.log.slice(3), ["Exit Code: 1", "job_finished: failed"]);
});

Deno.test("a daemon that is not running fails the job naming the socket", async () => {
  const run = await runJob(makeRequest(), {
    dockerOnly: { dockerSocketPath: "/nonexistent/docker.sock" },
  });
  assert.equal(run.result, "failed");
  assert.deepEqual(run.log, [
    "job_started",
    "directive: Pulling docker images...",
    "Cannot connect to the Docker daemon at unix:///nonexistent/docker.sock: " +
    "No such file or directory (os error 2)\n",
    "Exit Code: 1",
    "job_finished: failed",
  ]);
});

dockerTest(
  "--files become bind mounts; missing host files are skipped or fail the job",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "agent-test-files-" });
    try {
      await Deno.writeTextFile(`${dir}/config.txt`, "from the host\n");
      const logger = recordingLogger();
      const run = await runJob(makeRequest({ commands: commands("cat /etc/agent/config.txt") }), {
        logger,
        fileInjections: [
          { hostPath: `${dir}/config.txt`, destination: "/etc/agent/config.txt" },
          { hostPath: `${dir}/missing.txt`, destination: "/etc/agent/missing.txt" },
        ],
      });
      assert.equal(run.result, "passed");
      assert.ok(run.log.includes("from the host\n"));
      assert.ok(
        logger.lines.some((l) =>
          l.startsWith(`warn: Error injecting file ${dir}/missing.txt - ignoring it: `)
        ),
        logger.lines.join("\n"),
      );

      const failingLogger = recordingLogger();
      const failing = await runJob(makeRequest({ commands: commands("echo never") }), {
        logger: failingLogger,
        fileInjections: [{ hostPath: `${dir}/missing.txt`, destination: "/x" }],
        failOnMissingFiles: true,
      });
      assert.equal(failing.result, "failed");
      assert.deepEqual(failing.log, ["job_started", "job_finished: failed"]);
      assert.ok(
        failingLogger.lines.some((l) =>
          l.includes(`Cannot inject file ${dir}/missing.txt: `) &&
          l.endsWith("(--fail-on-missing-files is set)")
        ),
        failingLogger.lines.join("\n"),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

dockerTest("host setup commands run on the host first; a failing one fails the job", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent-test-setup-" });
  try {
    const home = `${dir}/home`;
    await Deno.mkdir(home);
    const run = await runJob(
      makeRequest({
        hostSetup: commands(`echo set-up > ${dir}/marker`),
        ssh_public_keys: [encodeBase64("ssh-ed25519 AAAA test@example")],
        commands: commands("true"),
      }),
      { dockerOnly: { homeDir: home } },
    );
    assert.equal(run.result, "passed");
    assert.equal(await Deno.readTextFile(`${dir}/marker`), "set-up\n");
    assert.equal(
      await Deno.readTextFile(`${home}/.ssh/authorized_keys`),
      "ssh-ed25519 AAAA test@example\n",
    );

    const logger = recordingLogger();
    const failing = await runJob(makeRequest({ hostSetup: commands("exit 3") }), {
      logger,
      dockerOnly: { homeDir: home },
    });
    assert.equal(failing.result, "failed");
    assert.deepEqual(failing.log, ["job_started", "job_finished: failed"]);
    assert.ok(
      logger.lines.some((l) => l.endsWith("Cannot run host setup command 'exit 3': exit code 3")),
      logger.lines.join("\n"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

dockerTest("/dev/kvm is passed when asked for and present", async () => {
  let present = true;
  try {
    await Deno.stat("/dev/kvm");
  } catch {
    present = false;
  }
  const run = await runJob(
    makeRequest({
      commands: commands("test -e /dev/kvm && echo kvm || echo no kvm"),
    }),
    { exposeKvmDevice: true },
  );
  assert.equal(run.result, "passed");
  assert.ok(run.log.includes(present ? "kvm\n" : "no kvm\n"), run.log.join("|"));
});

dockerTest("pull metrics are reported for semaphoreci/android images", async () => {
  const image = "agent-test/semaphoreci/android:1";
  await using client = await DockerClient.connect();
  await client.tagImage(TEST_IMAGES.bash, image);
  try {
    const gauges: [string, number, readonly string[]][] = [];
    const run = await runJob(makeRequest({ containers: [container(mainName(), image)] }), {
      metrics: { gauge: (name, value, tags) => gauges.push([name, value, tags]) },
    });
    assert.equal(run.result, "passed");
    assert.deepEqual(gauges.map(([name]) => name), [
      "compose.docker.pull.rate",
      "compose.docker.pull.duration",
    ]);
    assert.deepEqual(gauges[0], ["compose.docker.pull.rate", 1, ["semaphoreci/android"]]);
  } finally {
    await client.removeImage(image);
  }
});

dockerTest(
  "credentials: unknown strategies and a missing aws CLI fail with one clear line",
  async () => {
    const missingType = await runJob(makeRequest({
      credentials: [{ env_vars: [], files: [] }],
    }));
    assert.deepEqual(missingType.log, [
      "job_started",
      "directive: Setting up image pull credentials",
      "Failed to resolve docker login strategy: DOCKER_CREDENTIAL_TYPE not set\n",
      "Exit Code: 1",
      "job_finished: failed",
    ]);

    const unknown = await runJob(makeRequest({
      credentials: [{
        env_vars: [{ name: "DOCKER_CREDENTIAL_TYPE", value: encodeBase64("Quay") }],
        files: [],
      }],
    }));
    assert.equal(
      unknown.log[2],
      "Failed to resolve docker login strategy: unknown DOCKER_CREDENTIAL_TYPE: 'Quay'\n",
    );

    const ecr = await runJob(
      makeRequest({
        credentials: [{
          env_vars: [
            { name: "DOCKER_CREDENTIAL_TYPE", value: encodeBase64("AWS_ECR") },
            { name: "AWS_REGION", value: encodeBase64("us-east-1") },
            { name: "AWS_ACCESS_KEY_ID", value: encodeBase64("x") },
            { name: "AWS_SECRET_ACCESS_KEY", value: encodeBase64("y") },
          ],
          files: [],
        }],
      }),
      { dockerOnly: { awsCommand: "/nonexistent/aws" } },
    );
    assert.deepEqual(ecr.log, [
      "job_started",
      "directive: Setting up image pull credentials",
      "Setting up credentials for ECR\n" +
      "Failed to determine docker login command: the AWS CLI ('/nonexistent/aws') is not " +
      "installed on the agent's host; AWS_ECR image pull credentials need it\n",
      "Exit Code: 1",
      "job_finished: failed",
    ]);
  },
);

Deno.test({
  name: "a private image is pulled with good credentials and refused with bad ones",
  ignore: registrySkip !== undefined,
  async fn() {
    await testImagesReady();
    await using registry = await startRegistry();
    const image = await registry.push(TEST_IMAGES.bash, "agent-test/private-bash:1");
    const credentials = (password: string): ImagePullCredentials[] => [{
      env_vars: [
        { name: "DOCKER_CREDENTIAL_TYPE", value: encodeBase64("GenericDocker") },
        { name: "DOCKER_URL", value: encodeBase64(registry.address) },
        { name: "DOCKER_USERNAME", value: encodeBase64(registry.username) },
        { name: "DOCKER_PASSWORD", value: encodeBase64(password) },
      ],
      files: [],
    }];

    const bad = await runJob(makeRequest({
      containers: [container(mainName(), image)],
      credentials: credentials("wrong"),
    }));
    assert.equal(bad.result, "failed");
    assert.equal(bad.log[1], "directive: Setting up image pull credentials");
    assert.match(
      bad.log[2],
      new RegExp(
        '^Setting up credentials for Docker\ndocker login -u "\\$DOCKER_USERNAME" -p ' +
          '"\\$DOCKER_PASSWORD" \\$DOCKER_URL\nError response from daemon: .*401 Unauthorized\n\n$',
      ),
    );
    assert.deepEqual(bad.log.slice(3), ["Exit Code: 1", "job_finished: failed"]);

    const good = await runJob(makeRequest({
      containers: [container(mainName(), image)],
      credentials: credentials(registry.password),
      commands: commands("echo pulled"),
    }));
    assert.equal(good.result, "passed", good.log.join("|"));
    assert.deepEqual(good.log.slice(0, 5), [
      "job_started",
      "directive: Setting up image pull credentials",
      'Setting up credentials for Docker\ndocker login -u "$DOCKER_USERNAME" -p ' +
      '"$DOCKER_PASSWORD" $DOCKER_URL\nLogin Succeeded\n\n',
      "Exit Code: 0",
      "directive: Pulling docker images...",
    ]);
    assert.match(good.log[5], /^1: Pulling from agent-test\/private-bash\n/);
    assert.match(good.log[5], new RegExp(`Status: Downloaded newer image for ${image}\n$`));
    assert.ok(good.log.includes("pulled\n"));
  },
});

Deno.test({
  name: "GCR credentials log in as _json_key with the key file's content",
  ignore: registrySkip !== undefined,
  async fn() {
    await testImagesReady();
    const key = JSON.stringify({ type: "service_account", private_key: "-----x-----" });
    await using registry = await startRegistry({ username: "_json_key", password: key });
    const image = await registry.push(TEST_IMAGES.nobash, "agent-test/gcr-private:1");
    const run = await runJob(makeRequest({
      containers: [container(mainName(), TEST_IMAGES.bash), container("svc", image)],
      credentials: [{
        env_vars: [
          { name: "DOCKER_CREDENTIAL_TYPE", value: encodeBase64("GCR") },
          { name: "GCR_HOSTNAME", value: encodeBase64(registry.address) },
        ],
        files: [{ path: "/tmp/gcr/keyfile.json", content: encodeBase64(key), mode: "0600" }],
      }],
      commands: commands("true"),
    }));
    assert.equal(run.result, "passed", run.log.join("|"));
    assert.deepEqual(run.log.slice(1, 4), [
      "directive: Setting up image pull credentials",
      "Setting up credentials for GCR\n" +
      "cat /tmp/gcr/keyfile.json | docker login -u _json_key --password-stdin " +
      "https://$GCR_HOSTNAME\nLogin Succeeded\n\n",
      "Exit Code: 0",
    ]);
    assert.match(run.log[5], new RegExp(`Status: Downloaded newer image for ${image}\n$`));
    await using client = await DockerClient.connect();
    await client.removeImage(image);
  },
});

// ---- through the job engine: hooks of the lifecycle --------------------------------------

dockerTest(
  "a container job exports env vars and runs the epilogue with the §10.8 log",
  async () => {
    const { result, log } = await runJob(makeRequest({
      env_vars: [{ name: "GREETING", value: encodeBase64("Hello") }],
      commands: commands("echo $GREETING World"),
      epilogue_always_commands: commands("echo result=$SEMAPHORE_JOB_RESULT"),
    }));
    assert.equal(result, "passed");
    assert.deepEqual(log, [
      ...START,
      "directive: Exporting environment variables",
      "Exporting GREETING\n",
      "Exit Code: 0",
      "directive: Injecting Files",
      "Exit Code: 0",
      "directive: echo $GREETING World",
      "Hello World\n",
      "Exit Code: 0",
      ...epilogueExport(),
      "directive: echo result=$SEMAPHORE_JOB_RESULT",
      "result=passed\n",
      "Exit Code: 0",
      "job_finished: passed",
    ]);
  },
);

dockerTest("a container job reads SEMAPHORE_JOB_RESULT after exit code 130", async () => {
  const { result, log } = await runJob(makeRequest({
    commands: commands("export SEMAPHORE_JOB_RESULT=passed", "echo 'exit 130' | sh"),
  }));
  assert.equal(result, "passed");
  assert.deepEqual(log.slice(-4), [
    "directive: Checking job result",
    "SEMAPHORE_JOB_RESULT=passed - stopping job and marking it as passed",
    "Exit Code: 0",
    "job_finished: passed",
  ]);
});

Deno.test("Job fails a container job with a line naming the daemon when Docker stops answering", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent-test-wedged-" });
  try {
    await using daemon = startWedgedDocker(dir, { answerVersion: true });
    const request = makeRequest();
    const events: JobEvent[] = [];
    const logger = recordingLogger();
    const job = Job.create({
      createExecutor: (setup) =>
        createDockerExecutor({
          request: setup.request,
          sink: setup.sink,
          logger: setup.logger,
          dockerSocketPath: daemon.path,
          dockerTimeouts: { callMs: 500, progressMs: 500 },
          homeDir: dir,
          writeJumpPoint: false,
        }),
      request,
      sink: { write: (event: JobEvent) => events.push(event) },
      logger,
    });
    const started = performance.now();
    const result = await job.run();
    const elapsed = performance.now() - started;
    assert.equal(result, "failed");
    const image = request.compose.containers[0].image;
    assert.deepEqual(simplify(events), [
      "job_started",
      "directive: Pulling docker images...",
      `The Docker daemon at unix://${daemon.path} did not answer ` +
      `GET /images/${encodeURIComponent(image)}/json within 500ms\n`,
      "Exit Code: 1",
      "job_finished: failed",
    ]);
    // Teardown asked the daemon too (to list what to remove) and did not wait for ever.
    assert.ok(daemon.requests.some((line) => line.includes("/containers/json")));
    assert.ok(elapsed < 10_000, `the job took ${elapsed} ms`);
    assert.ok(
      logger.lines.some((line) => /Cannot clean up docker resources: The Docker daemon/.test(line)),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
