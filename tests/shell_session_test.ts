import assert from "node:assert/strict";
import { BOOT_MARKER, ShellSession } from "../lib/engine/shell_session.ts";
import { PtyProcess } from "../executors/pty.ts";
import { makeHome, testShellEnv } from "./support/job_harness.ts";

/** A login bash on a PTY with `home` as HOME, and a session over it; both end on dispose. */
async function openSession(
  home: string,
  options: { cwd?: string } = {},
): Promise<{ session: ShellSession; storage: string } & AsyncDisposable> {
  const storage = await Deno.makeTempDir({ prefix: "agent-session-test-" });
  const pty = new PtyProcess({
    command: ["bash", "--login", "--noediting"],
    env: testShellEnv(home),
    cwd: options.cwd,
    processTag: `SEMAPHORE_JOB_PROCESS_TAG=${crypto.randomUUID()}`,
  });
  const session = new ShellSession({ terminal: pty, hostStorageDir: storage });
  return {
    session,
    storage,
    async [Symbol.asyncDispose]() {
      await pty.kill();
      await session.close();
      await Deno.remove(storage, { recursive: true });
    },
  };
}

/** A HOME whose `.bash_profile` holds `profile`. */
async function homeWithProfile(profile: string): Promise<string> {
  const home = await makeHome();
  await Deno.writeTextFile(`${home}/.bash_profile`, profile);
  return home;
}

Deno.test("ShellSession.start() finds the boot marker whatever the first prompt shows", async (t) => {
  // The first prompt is printed before `export PS1=''` is read, so it lands on the line of the
  // marker's output (no newline) or prints lines of its own.
  const prompts: readonly [string, string][] = [
    ["the default prompt in a directory named echo", String.raw`\u@\h:\w\$ `],
    ["a prompt that contains echo", "echo> "],
    ["a prompt that contains the marker's text and echo", `echo ${BOOT_MARKER} `],
    ["a prompt that is the marker's text on a line of its own", String.raw`${BOOT_MARKER}\n`],
    ["a prompt that echoes the marker's text", `$(echo ${BOOT_MARKER}) `],
  ];
  const parent = await Deno.makeTempDir({ prefix: "agent-session-test-" });
  const cwd = `${parent}/echo`;
  await Deno.mkdir(cwd);
  for (const [name, ps1] of prompts) {
    await t.step(name, async () => {
      const home = await homeWithProfile(`PS1='${ps1}'\n`);
      await using shell = await openSession(home, { cwd });
      await shell.session.start();
      // The handshake went home; the session runs commands.
      assert.deepEqual(await shell.session.output("pwd"), { output: `${home}\n`, exitCode: 0 });
      await Deno.remove(home, { recursive: true });
    });
  }
  await Deno.remove(parent, { recursive: true });
});

Deno.test("ShellSession.start() fails with a clear error when the shell never answers", async () => {
  const home = await homeWithProfile("sleep 600\n");
  await using shell = await openSession(home);
  await assert.rejects(() => shell.session.start({ timeoutMs: 300 }), {
    message: "the shell did not answer within 0.3 s",
  });
  await Deno.remove(home, { recursive: true });
});

Deno.test("ShellSession.run() goes on after a command redirects the shell's output", async (t) => {
  await t.step("exec > file 2>&1: later output goes to the file, not the log", async () => {
    const home = await makeHome();
    await using shell = await openSession(home);
    await shell.session.start();
    const file = `${shell.storage}/user-output`;
    assert.deepEqual(await shell.session.output("echo before"), {
      output: "before\n",
      exitCode: 0,
    });
    assert.deepEqual(await shell.session.output(`exec > ${file} 2>&1`), {
      output: "",
      exitCode: 0,
    });
    assert.deepEqual(await shell.session.output("echo after; ls /nonexistent-dir"), {
      output: "",
      exitCode: 2,
    });
    assert.deepEqual(await shell.session.output("exec > /dev/tty 2>&1; echo back"), {
      output: "back\n",
      exitCode: 0,
    });
    assert.equal(
      await Deno.readTextFile(file),
      "after\nls: cannot access '/nonexistent-dir': No such file or directory\n",
    );
    await Deno.remove(home, { recursive: true });
  });

  await t.step("exec 1>&-: the shell goes on without its standard output", async () => {
    const home = await makeHome();
    await using shell = await openSession(home);
    await shell.session.start();
    assert.deepEqual(await shell.session.output("exec 1>&-"), { output: "", exitCode: 0 });
    assert.deepEqual(await shell.session.output("echo gone"), {
      output: "bash: echo: write error: Bad file descriptor\n",
      exitCode: 1,
    });
    assert.deepEqual(await shell.session.output("echo on stderr >&2"), {
      output: "on stderr\n",
      exitCode: 0,
    });
    await Deno.remove(home, { recursive: true });
  });
});

Deno.test("ShellSession.start() starts after a profile prints megabytes without a newline", async () => {
  // 8 MB without a newline, then the prompt and the marker on the same line.
  const home = await homeWithProfile("head -c 8000000 /dev/zero | tr '\\0' x\n");
  await using shell = await openSession(home);
  await shell.session.start();
  assert.deepEqual(await shell.session.output("echo ok"), { output: "ok\n", exitCode: 0 });
  await Deno.remove(home, { recursive: true });
});
