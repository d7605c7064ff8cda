/**
 * The job lifecycle against real bash in a real PTY: the golden sequences of
 * SEMAPHORE_COMPAT.md §5.7 (from the original's `pkg/jobs/job_test.go`), DECISIONS.md 4, 7, 8
 * and 18.
 */

import assert from "node:assert/strict";
import {
  eventWaiter,
  makeHome,
  runTestJob,
  simplify,
  startTestJob,
} from "./support/job_harness.ts";
import type { JobEvent } from "../lib/engine/events.ts";
import { encodeBase64 } from "../lib/util/base64.ts";
import { recordingLogger } from "./support/recording_logger.ts";

const cmd = (directive: string, alias = "") => ({ directive, alias });
const env = (name: string, value: string) => ({ name, value: encodeBase64(value) });

const START = [
  "job_started",
  "directive: Exporting environment variables",
  "Exit Code: 0",
  "directive: Injecting Files",
  "Exit Code: 0",
];
const epilogueExport = (code = 0) => [
  "directive: Exporting environment variables",
  "Exporting SEMAPHORE_JOB_RESULT\n",
  `Exit Code: ${code}`,
];

Deno.test("job: env vars are available to commands", async () => {
  const { result, events } = await runTestJob({
    request: {
      env_vars: [env("A", "VALUE_A"), env("B", "VALUE_B")],
      commands: [cmd("echo -n $A"), cmd("echo -n $B"), cmd("echo -n $C")],
    },
  });
  assert.equal(result, "passed");
  assert.deepEqual(simplify(events), [
    "job_started",
    "directive: Exporting environment variables",
    "Exporting A\nExporting B\n",
    "Exit Code: 0",
    "directive: Injecting Files",
    "Exit Code: 0",
    "directive: echo -n $A",
    "VALUE_A",
    "Exit Code: 0",
    "directive: echo -n $B",
    "VALUE_B",
    "Exit Code: 0",
    "directive: echo -n $C",
    "Exit Code: 0",
    ...epilogueExport(),
    "job_finished: passed",
  ]);
});

Deno.test("job: env var values are taken literally and sorted by name", async () => {
  const { events } = await runTestJob({
    request: {
      env_vars: [
        env("D", "$PATH:/etc/a\n"),
        env("C", "quotes ' quotes\n"),
        env("B", "how are you?\n"),
        env("A", "hello\n"),
        env("E", ""),
      ],
      commands: [cmd('echo "$A$B$C$D[$E]"')],
    },
  });
  assert.deepEqual(simplify(events).slice(0, 9), [
    "job_started",
    "directive: Exporting environment variables",
    "Exporting A\nExporting B\nExporting C\nExporting D\nExporting E\n",
    "Exit Code: 0",
    "directive: Injecting Files",
    "Exit Code: 0",
    'directive: echo "$A$B$C$D[$E]"',
    "hello\nhow are you?\nquotes ' quotes\n$PATH:/etc/a\n[]\n",
    "Exit Code: 0",
  ]);
});

Deno.test("job: a failing command runs the always and on-fail epilogues", async () => {
  const { result, events } = await runTestJob({
    request: {
      commands: [cmd("badcommand"), cmd("echo never")],
      epilogue_always_commands: [cmd("echo -n $SEMAPHORE_JOB_RESULT")],
      epilogue_on_pass_commands: [cmd("echo -n on pass")],
      epilogue_on_fail_commands: [cmd("echo -n on fail")],
    },
  });
  assert.equal(result, "failed");
  assert.deepEqual(simplify(events), [
    ...START,
    "directive: badcommand",
    "bash: badcommand: command not found\n",
    "Exit Code: 127",
    ...epilogueExport(),
    "directive: echo -n $SEMAPHORE_JOB_RESULT",
    "failed",
    "Exit Code: 0",
    "directive: echo -n on fail",
    "on fail",
    "Exit Code: 0",
    "job_finished: failed",
  ]);
});

Deno.test("job: a passing job runs the always and on-pass epilogues", async () => {
  const { result, events } = await runTestJob({
    request: {
      commands: [cmd("true")],
      epilogue_always_commands: [cmd("echo -n $SEMAPHORE_JOB_RESULT")],
      epilogue_on_pass_commands: [cmd("echo -n on pass")],
      epilogue_on_fail_commands: [cmd("echo -n on fail")],
    },
  });
  assert.equal(result, "passed");
  assert.deepEqual(simplify(events), [
    ...START,
    "directive: true",
    "Exit Code: 0",
    ...epilogueExport(),
    "directive: echo -n $SEMAPHORE_JOB_RESULT",
    "passed",
    "Exit Code: 0",
    "directive: echo -n on pass",
    "on pass",
    "Exit Code: 0",
    "job_finished: passed",
  ]);
});

Deno.test("job: an alias is shown as the directive with a Running line", async () => {
  const { events } = await runTestJob({
    request: { commands: [cmd("echo -n 'hello world'", "Display Hello World")] },
  });
  assert.deepEqual(simplify(events).slice(5, 8), [
    "directive: Display Hello World",
    "Running: echo -n 'hello world'\nhello world",
    "Exit Code: 0",
  ]);
  const outputs = events.filter((e) => e.event === "cmd_output").map((e) => e.output);
  assert.equal(outputs[0], "Running: echo -n 'hello world'\n");
});

async function stopWhenStarted(directive: string, request: Record<string, unknown>) {
  const waiter = eventWaiter((e) => e.event === "cmd_started" && e.directive === directive);
  const run = await startTestJob({ request, onEvent: waiter.onEvent });
  const job = await waiter.seen;
  // The command is written to the shell right after cmd_started; stop once bash runs it.
  await waitForProcess(run.home, directive);
  await job.stop();
  const result = await run.done;
  await Deno.remove(run.home, { recursive: true });
  return { result, events: run.events };
}

/** Waits until a process whose command line contains `text` runs with HOME=home. */
async function waitForProcess(home: string, text: string): Promise<void> {
  const needle = text.split(" ")[0];
  for (let i = 0; i < 500; i++) {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
        if (!cmdline.startsWith(needle)) continue;
        const environ = Deno.readTextFileSync(`/proc/${entry.name}/environ`);
        if (environ.split("\0").includes(`HOME=${home}`)) return;
      } catch {
        // gone
      }
    }
    await new Promise((r) => setTimeout(r, 10)); // polling /proc: there is no event to await
  }
  throw new Error(`no process '${text}' appeared`);
}

Deno.test("job: stop during a command ends it with exit code 1 and skips the rest", async () => {
  const { result, events } = await stopWhenStarted("sleep 60", {
    commands: [cmd("sleep 60"), cmd("echo never")],
    epilogue_always_commands: [cmd("echo never")],
  });
  assert.equal(result, "stopped");
  assert.deepEqual(simplify(events), [
    ...START,
    "directive: sleep 60",
    "Exit Code: 1",
    "job_finished: stopped",
  ]);
});

Deno.test("job: stop during an epilogue ends the job stopped", async () => {
  const { result, events } = await stopWhenStarted("sleep 60", {
    commands: [cmd("true")],
    epilogue_always_commands: [cmd("sleep 60"), cmd("echo never")],
    epilogue_on_pass_commands: [cmd("echo never")],
  });
  assert.equal(result, "stopped");
  assert.deepEqual(simplify(events), [
    ...START,
    "directive: true",
    "Exit Code: 0",
    ...epilogueExport(),
    "directive: sleep 60",
    "Exit Code: 1",
    "job_finished: stopped",
  ]);
});

for (
  const [setup, output, expected] of [
    [[], "SEMAPHORE_JOB_RESULT is set to '' - stopping job and marking it as stopped", "stopped"],
    [
      [cmd("export SEMAPHORE_JOB_RESULT=passed")],
      "SEMAPHORE_JOB_RESULT=passed - stopping job and marking it as passed",
      "passed",
    ],
    [
      [cmd("export SEMAPHORE_JOB_RESULT=failed")],
      "SEMAPHORE_JOB_RESULT=failed - stopping job and marking it as failed",
      "failed",
    ],
  ] as const
) {
  Deno.test(`job: exit code 130 ends the job ${expected}`, async () => {
    const { result, events } = await runTestJob({
      request: {
        commands: [...setup, cmd("echo 'exit 130' | sh"), cmd("echo never")],
        epilogue_always_commands: [cmd("echo never")],
      },
    });
    assert.equal(result, expected);
    assert.deepEqual(simplify(events), [
      ...START,
      ...setup.flatMap((c) => [`directive: ${c.directive}`, "Exit Code: 0"]),
      "directive: echo 'exit 130' | sh",
      "Exit Code: 130",
      "directive: Checking job result",
      output,
      "Exit Code: 0",
      `job_finished: ${expected}`,
    ]);
    const check = events.filter((e) => e.event === "cmd_finished").at(-1)!;
    assert.ok(check.event === "cmd_finished" && check.started_at === check.finished_at);
  });
}

for (
  const [name, commands, output, code] of [
    ["exit 1", [cmd("sleep infinity &"), cmd("exit 1")], undefined, 1],
    ["exit 5", [cmd("exit 5")], undefined, 5],
    ["set -e and false", [cmd("set -e"), cmd("false")], undefined, 1],
    [
      "set -eo pipefail and a failing pipe",
      [cmd("set -eo pipefail"), cmd("cat non_existant | sort")],
      "cat: non_existant: No such file or directory\n",
      1,
    ],
  ] as const
) {
  Deno.test(`job: a command that ends the shell (${name}) fails the job`, async () => {
    const { result, events } = await runTestJob({
      request: { commands, epilogue_always_commands: [cmd("echo never")] },
    });
    assert.equal(result, "failed");
    const last = commands.at(-1)!.directive;
    const tail = [
      `directive: ${last}`,
      ...(output ? [output] : []),
      `Exit Code: ${code}`,
      ...epilogueExport(1),
      "directive: echo never",
      "Exit Code: 1",
      "job_finished: failed",
    ];
    assert.deepEqual(simplify(events).slice(-tail.length), tail);
  });
}

Deno.test("job: background processes neither keep the job alive nor outlive it", async () => {
  const marker = `agent-bg-${crypto.randomUUID()}`;
  const { result } = await runTestJob({
    request: {
      commands: [
        cmd(`sleep 1000 ${marker} &`),
        cmd(`(setsid sleep 1001 ${marker} &)`),
        cmd(`nohup bash -c 'sleep 1002 ${marker}' >/dev/null 2>&1 &`),
        cmd("echo done"),
      ],
    },
  });
  assert.equal(result, "passed");
  const ps = new Deno.Command("ps", { args: ["-eo", "args"], stdout: "piped" }).outputSync();
  const left = new TextDecoder().decode(ps.stdout).split("\n").filter((l) => l.includes(marker));
  assert.deepEqual(left, []);
});

Deno.test("job: state persists between commands (cd, export, functions, aliases)", async () => {
  const { events } = await runTestJob({
    request: {
      commands: [
        cmd("mkdir -p /tmp/agent-cd-test && cd /tmp/agent-cd-test"),
        cmd("echo -n $PWD"),
        cmd("export FOO=bar; greet() { echo -n hi $1; }; alias ll='echo -n aliased'"),
        cmd("echo -n $FOO"),
        cmd("greet you"),
        cmd("ll"),
        cmd("unset FOO"),
        cmd("echo -n [$FOO]"),
        cmd("false"),
      ],
    },
  });
  const outputs = simplify(events).filter((l) =>
    !l.startsWith("directive") && !l.startsWith("Exit") && !l.startsWith("job")
  );
  assert.deepEqual(outputs, [
    "/tmp/agent-cd-test",
    "bar",
    "hi you",
    "aliased",
    "[]",
    "Exporting SEMAPHORE_JOB_RESULT\n",
  ]);
});

Deno.test("job: $? is the previous command's exit code", async () => {
  const { events } = await runTestJob({
    request: { commands: [cmd("(exit 3) || true; bash -c 'exit 7'; true"), cmd("echo -n $?")] },
  });
  assert.equal(simplify(events)[8], "0");
  const again = await runTestJob({
    request: { commands: [cmd("grep -q nothing /dev/null || true"), cmd("echo -n $?")] },
  });
  assert.equal(simplify(again.events)[8], "0");
  const failed = await runTestJob({
    request: { commands: [cmd("bash -c 'exit 7'"), cmd("echo -n $?")] },
  });
  assert.equal(simplify(failed.events)[6], "Exit Code: 7");
});

Deno.test("job: multi-line commands run as one", async () => {
  const { events } = await runTestJob({
    request: {
      commands: [cmd("for i in 1 2 3; do\n  echo -n $i\ndone\nif true; then echo -n !; fi")],
    },
  });
  assert.equal(simplify(events)[6], "123!");
});

Deno.test("job: stty echo in a command does not break the protocol", async () => {
  const { result, events } = await runTestJob({
    request: { commands: [cmd("stty echo"), cmd("echo Hello World")] },
  });
  assert.equal(result, "passed");
  assert.deepEqual(simplify(events).slice(5, 11), [
    "directive: stty echo",
    "Exit Code: 0",
    "directive: echo Hello World",
    "Hello World\n",
    "Exit Code: 0",
    "directive: Exporting environment variables",
  ]);
});

Deno.test("job: unicode and broken unicode are kept as Go encodes them", async () => {
  const { events } = await runTestJob({
    request: {
      commands: [
        cmd("echo -n 'こんにちは世界 ✓'"),
        cmd(`echo | awk '{ printf("%c%c%c%c%c", 150, 150, 150, 150, 150) }'`),
      ],
    },
  });
  const outputs = events.filter((e) => e.event === "cmd_output");
  assert.equal(outputs[0].event === "cmd_output" && outputs[0].output, "こんにちは世界 ✓");
  const { encodeEvent } = await import("../lib/engine/events.ts");
  assert.match(encodeEvent(outputs[1]), /"output":"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd"}/);
});

Deno.test("job: 20 MB of output is rebuilt exactly from cmd_output events", async () => {
  const { events } = await runTestJob({
    request: {
      commands: [cmd("head -c 15000000 /dev/urandom | base64 -w 100; printf 'end'")],
    },
  });
  const first = events.findIndex((e) =>
    e.event === "cmd_started" && e.directive.startsWith("head")
  );
  const last = events.findIndex((e, i) => i > first && e.event === "cmd_finished");
  const output = events.slice(first, last).filter((
    e,
  ): e is Extract<JobEvent, { event: "cmd_output" }> => e.event === "cmd_output").map((e) =>
    e.output
  ).join("");
  const lines = output.split("\n");
  assert.equal(lines.at(-1), "end");
  assert.equal(output.length, 20_000_000 + 200_000 + 3);
  assert.ok(lines.slice(0, -1).every((l) => l.length === 100));
  assert.ok(!output.includes("\r"));
});

Deno.test("job: large output of short pieces is concatenated in order", async () => {
  const { events } = await runTestJob({
    request: { commands: [cmd("for i in {1..100}; { printf 'hello'; }")] },
  });
  assert.equal(simplify(events)[6], "hello".repeat(100));
});

Deno.test("job: files are injected with paths and modes", async () => {
  const home = await makeHome();
  const abs = await Deno.makeTempDir();
  const { result, events } = await runTestJob({
    home,
    request: {
      files: [
        { path: "test.txt", content: encodeBase64("hello\n"), mode: "0644" },
        { path: "~/a/b/c", content: encodeBase64("nested"), mode: "0600" },
        { path: `${abs}/x`, content: encodeBase64("abs"), mode: "0777" },
        { path: `${abs}/y`, content: encodeBase64("ro"), mode: "400" },
      ],
      commands: [
        cmd("cat ~/test.txt ~/a/b/c"),
        cmd(`stat -c '%a' ~/test.txt ~/a/b/c ${abs}/x ${abs}/y`),
      ],
    },
  });
  assert.equal(result, "passed");
  assert.deepEqual(simplify(events).slice(0, 6), [
    "job_started",
    "directive: Exporting environment variables",
    "Exit Code: 0",
    "directive: Injecting Files",
    `Injecting ${home}/test.txt with file mode 0644\n` +
    `Injecting ${home}/a/b/c with file mode 0600\n` +
    `Injecting ${abs}/x with file mode 0777\n` +
    `Injecting ${abs}/y with file mode 400\n`,
    "Exit Code: 0",
  ]);
  assert.equal(simplify(events)[7], "hello\nnested");
  assert.equal(simplify(events)[10], "644\n600\n777\n400\n");
  await Deno.remove(home, { recursive: true });
  await Deno.remove(abs, { recursive: true });
});

Deno.test("job: a bad file mode or content fails the job but runs epilogues", async (t) => {
  await t.step("bad mode", async () => {
    const { result, events } = await runTestJob({
      request: {
        files: [{ path: "f.txt", content: encodeBase64("x"), mode: "+x" }],
        commands: [cmd("echo never")],
      },
    });
    assert.equal(result, "failed");
    const s = simplify(events);
    assert.match(s[4], /^Injecting .*\/f\.txt with file mode \+x\nbad file permission '\+x'\n$/);
    assert.deepEqual(s.slice(5), ["Exit Code: 1", ...epilogueExport(), "job_finished: failed"]);
  });
  await t.step("bad content (DECISIONS.md 5: cmd_finished still logged)", async () => {
    const { result, events } = await runTestJob({
      request: { files: [{ path: "f.txt", content: "!!!", mode: "0644" }] },
    });
    assert.equal(result, "failed");
    const s = simplify(events);
    assert.match(s[4], /Failed to decode the content of the file\.\n$/);
    assert.equal(s[5], "Exit Code: 1");
  });
});

Deno.test("job: an env var that is not base64 fails the export step", async () => {
  const { result, events } = await runTestJob({
    request: { env_vars: [{ name: "A", value: "%%%" }], commands: [cmd("echo never")] },
  });
  assert.equal(result, "failed");
  assert.deepEqual(simplify(events), [
    "job_started",
    "directive: Exporting environment variables",
    "Exit Code: 1",
    ...epilogueExport(),
    "job_finished: failed",
  ]);
});

Deno.test("job: host env vars override job vars and only the first export lists them", async () => {
  const { events } = await runTestJob({
    hostEnvVars: [{ name: "IMPORTANT_HOST_VAR_A", value: "host a" }, { name: "X", value: "host" }],
    request: {
      env_vars: [env("X", "job")],
      commands: [cmd("echo -n $IMPORTANT_HOST_VAR_A $X")],
      epilogue_always_commands: [cmd("echo -n $IMPORTANT_HOST_VAR_A")],
    },
  });
  const s = simplify(events);
  assert.equal(s[2], "Exporting IMPORTANT_HOST_VAR_A\nExporting X\n");
  assert.equal(s[7], "host a host");
  assert.deepEqual(
    s.slice(9, 15),
    [...epilogueExport(), "directive: echo -n $IMPORTANT_HOST_VAR_A", "host a", "Exit Code: 0"]
      .slice(0, 6),
  );
});

Deno.test("job: pre-job hook runs with its warning and sees the job env", async (t) => {
  const dir = await Deno.makeTempDir();
  const ok = `${dir}/ok.sh`;
  const bad = `${dir}/bad.sh`;
  await Deno.writeTextFile(ok, 'echo -n "hello from pre-job hook $A"');
  await Deno.writeTextFile(bad, "badcommand");
  await t.step("proceed on error", async () => {
    const { result, events } = await runTestJob({
      preJobHookPath: ok,
      request: { env_vars: [env("A", "a")], commands: [cmd("true")] },
    });
    assert.equal(result, "passed");
    assert.deepEqual(simplify(events).slice(6, 9), [
      "directive: Running the pre-job hook configured in the agent",
      `Running: bash ${ok}\n` +
      "Warning: The agent is configured to proceed with the job even if the pre-job hook fails.\n" +
      "hello from pre-job hook a",
      "Exit Code: 0",
    ]);
  });
  await t.step("fail on error", async () => {
    const { result, events } = await runTestJob({
      preJobHookPath: bad,
      failOnPreJobHookError: true,
      sourcePreJobHook: true,
      request: { commands: [cmd("echo never")] },
    });
    assert.equal(result, "failed");
    const s = simplify(events);
    assert.equal(s[5], "directive: Running the pre-job hook configured in the agent");
    assert.match(
      s[6],
      new RegExp(
        `^Running: source ${bad}\\nWarning: The agent is configured to fail the job if the pre-job hook fails\\.\\n.*badcommand: command not found\\n$`,
      ),
    );
    assert.deepEqual(s.slice(7), ["Exit Code: 127", ...epilogueExport(), "job_finished: failed"]);
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("job: post-job hook runs after the epilogues and sees the job env", async () => {
  const dir = await Deno.makeTempDir();
  const hook = `${dir}/post.sh`;
  await Deno.writeTextFile(hook, 'echo -n "post $A $SEMAPHORE_JOB_RESULT"; exit 3');
  const { result, events } = await runTestJob({
    postJobHookPath: hook,
    request: {
      env_vars: [env("A", "a")],
      commands: [cmd("true")],
      epilogue_always_commands: [cmd("true")],
    },
  });
  assert.equal(result, "passed");
  assert.deepEqual(simplify(events).slice(-4), [
    "directive: Running the post-job hook configured in the agent",
    `Running: bash ${hook}\npost a passed`,
    "Exit Code: 3",
    "job_finished: passed",
  ]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("job: teardown hooks run around job_finished in order", async () => {
  const order: string[] = [];
  const { result } = await runTestJob({
    request: { commands: [cmd("true")] },
    onEvent: (e) => {
      if (e.event === "job_finished") order.push(`job_finished:${e.result}`);
    },
    hooks: {
      beforeJobFinished: (r) => {
        order.push(`before:${r}`);
        return Promise.resolve();
      },
      afterJobFinished: (r) => {
        order.push(`after:${r}`);
        return Promise.reject(new Error("a failing hook does not break the job"));
      },
    },
  });
  assert.equal(result, "passed");
  assert.deepEqual(order, ["before:passed", "job_finished:passed", "after:passed"]);
});

Deno.test("job: stop before run makes a stopped job without commands", async () => {
  const { job, events, home, done } = await startTestJob({
    request: { commands: [cmd("echo never")] },
  });
  await job.stop();
  assert.equal(await done, "stopped");
  assert.ok(!simplify(events).includes("directive: echo never"));
  await Deno.remove(home, { recursive: true });
});

Deno.test("job: 0x01 bytes in a command's output are output, even right before the end", async () => {
  const { result, events } = await runTestJob({
    request: {
      commands: [
        cmd("printf '\\001hello\\001 world\\n'; printf '\\001'"),
        cmd("printf '\\001 949556c7-1-end 0\\n'"),
        cmd("echo -n after"),
      ],
    },
  });
  assert.equal(result, "passed");
  const s = simplify(events);
  assert.equal(s[6], "\x01hello\x01 world\n\x01");
  assert.equal(s[9], "\x01 949556c7-1-end 0\n");
  assert.equal(s[12], "after");
});

Deno.test("job: a file that cannot be written shows Go's error wording", async () => {
  const { result, events } = await runTestJob({
    request: { files: [{ path: "/proc/nope/f.txt", content: "eA==", mode: "0644" }] },
  });
  assert.equal(result, "failed");
  assert.equal(
    simplify(events)[4],
    "Injecting /proc/nope/f.txt with file mode 0644\n" +
      "Failed to create directory '/proc/nope': mkdir /proc/nope: no such file or directory\n",
  );
});

Deno.test("job: a command that takes the shell's output away (exec > file) does not hang it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent-job-test-" });
  const { result, events } = await runTestJob({
    request: {
      commands: [
        cmd("echo before"),
        cmd(`exec > ${dir}/out 2>&1`),
        cmd("echo after"),
        cmd("exec 1>&-"),
        cmd("echo closed"),
      ],
      epilogue_always_commands: [cmd("echo epilogue >&2")],
    },
  });
  assert.equal(result, "failed");
  assert.deepEqual(simplify(events).slice(5), [
    "directive: echo before",
    "before\n",
    "Exit Code: 0",
    `directive: exec > ${dir}/out 2>&1`,
    "Exit Code: 0",
    "directive: echo after",
    "Exit Code: 0",
    "directive: exec 1>&-",
    "Exit Code: 0",
    "directive: echo closed",
    "Exit Code: 1",
    ...epilogueExport(),
    "directive: echo epilogue >&2",
    "Exit Code: 0",
    "job_finished: failed",
  ]);
  // stderr still went to the file: the write error of `echo closed` is there, not in the log
  // (and, when the shell saw its terminal close before it was killed, bash's `logout`).
  const written = await Deno.readTextFile(`${dir}/out`);
  const expected = "after\nbash: echo: write error: Bad file descriptor\nepilogue\n";
  assert.ok([expected, `${expected}logout\n`].includes(written), written);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("job: set -x traces the end marker's echo as the original does", async () => {
  const { events } = await runTestJob({ request: { commands: [cmd("set -x"), cmd("true")] } });
  const lines = simplify(events);
  const at = lines.indexOf("directive: true");
  assert.match(
    lines[at + 1],
    /^\+ source \S+\/current-agent-cmd\n\+\+ true\n\+ AGENT_CMD_RESULT=0\n\+ echo -e '\\001 949556c7-\d+-end 0'\n$/,
  );
  assert.equal(lines[at + 2], "Exit Code: 0");
});

Deno.test("job: `exit 130` ends the shell: the job fails as in the original, it is not 'stopped' (§5.4, DECISIONS.md 8)", async () => {
  const { result, events } = await runTestJob({
    request: {
      commands: [cmd("export SEMAPHORE_JOB_RESULT=passed"), cmd("exit 130")],
      epilogue_always_commands: [cmd("echo epilogue")],
    },
  });
  // DECISIONS.md 8 changes only the exit code the command reports (130, not 1). The shell is
  // gone, so `$SEMAPHORE_JOB_RESULT` cannot be read: the original ends this job `failed` and
  // runs the epilogues (each reporting exit code 1); we end it `stopped` with
  // "SEMAPHORE_JOB_RESULT is set to ''", ignoring the `passed` the job exported.
  assert.ok(!simplify(events).includes("directive: Checking job result"));
  assert.equal(result, "failed");
});

Deno.test("job: logs what it used as one agent-log line before job_finished", async () => {
  const logger = recordingLogger();
  let linesAtFinish: string[] = [];
  const { result } = await runTestJob({
    request: { job_id: "usage-job", commands: [cmd("true")] },
    logger,
    onEvent(event) {
      if (event.event === "job_finished") linesAtFinish = [...logger.lines];
    },
  });
  assert.equal(result, "passed");
  const usage = linesAtFinish.filter((l) => l.includes("Resources used:"));
  assert.equal(usage.length, 1);
  assert.match(usage[0], /^info: \[job=usage-job\] Resources used: CPU .*; wall \d+\.\d\d s$/);
  assert.equal(logger.lines.filter((l) => l.includes("Resources used:")).length, 1);
});
