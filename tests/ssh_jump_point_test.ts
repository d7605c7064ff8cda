/**
 * The hosted SSH debug path (SEMAPHORE_COMPAT.md §11, e2e `hosted/ssh_jump_points`): a job
 * posted to `agent serve` carries an SSH public key; while the job runs, a real `sshd` on a
 * loopback port lets that key in, and `bash /tmp/ssh_jump_point echo here` prints `here`.
 */

import assert from "node:assert/strict";
import { AUTH, startCallbackReceiver, startServeAgent } from "./support/serve_agent.ts";

const SSHD = "/usr/sbin/sshd";

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

const missing = ["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"].filter((p) => !exists(p));
const required = Deno.env.get("AGENT_TEST_REQUIRE_ALL") === "1";
if (missing.length > 0 && !required) {
  console.error(`ssh_jump_point_test: skipped, missing ${missing.join(", ")} (openssh-server)`);
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}${text}`);
  }
  return text;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A real sshd on 127.0.0.1 that reads authorized keys from `authorizedKeys`. */
async function startSshd(dir: string, authorizedKeys: string) {
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/host_key`]);
  // sshd insists on its privilege separation directory even when it does not use it.
  await Deno.mkdir("/run/sshd", { recursive: true, mode: 0o755 }).catch(() => {});
  const port = freePort();
  const config = `${dir}/sshd_config`;
  await Deno.writeTextFile(
    config,
    [
      `Port ${port}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${dir}/host_key`,
      "PidFile none",
      "UsePAM no",
      "StrictModes no",
      `AuthorizedKeysFile ${authorizedKeys}`,
      "PubkeyAuthentication yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PermitRootLogin prohibit-password",
      "LogLevel INFO",
      "",
    ].join("\n"),
  );
  const child = new Deno.Command(SSHD, {
    args: ["-D", "-e", "-f", config],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("Server listening on 127.0.0.1")) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`sshd did not start:\n${seen}`);
    seen += value;
  }
  // Keep draining so sshd never blocks on a full pipe.
  const drain = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  return {
    port,
    async [Symbol.asyncDispose]() {
      child.kill("SIGTERM");
      await child.status;
      await drain;
    },
  };
}

Deno.test({
  name: "agent serve lets the job's SSH key in: bash /tmp/ssh_jump_point echo here prints here",
  ignore: missing.length > 0 && !required,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "ssh_jump_point_" });
    try {
      await Deno.mkdir(`${dir}/home`);
      await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/client_key`]);
      const publicKey = await Deno.readTextFile(`${dir}/client_key.pub`);
      await using sshd = await startSshd(dir, `${dir}/home/.ssh/authorized_keys`);
      await using receiver = startCallbackReceiver();
      await using agent = await startServeAgent({ dir, env: { HOME: `${dir}/home` } });

      const res = await agent.fetch("/jobs", {
        method: "POST",
        headers: AUTH,
        body: JSON.stringify({
          job_id: "ssh-job",
          commands: [{ directive: "sleep 120" }],
          ssh_public_keys: [btoa(publicKey.trim())],
          callbacks: {
            finished: `${receiver.base}/finished`,
            teardown_finished: `${receiver.base}/teardown_finished`,
          },
        }),
      });
      assert.equal(await res.text(), '{"message": "ok"}');
      // Host setup (authorized_keys, jump point) is done once the first command started.
      for (;;) {
        const log = await (await agent.fetch("/jobs/ssh-job/log", { headers: AUTH })).text();
        if (log.includes('"directive":"sleep 120"')) break;
      }
      assert.match(
        await Deno.readTextFile(`${dir}/home/.ssh/authorized_keys`),
        new RegExp(`${publicKey.trim().replaceAll("+", "\\+")}\n`),
      );
      const user = (await run("id", ["-un"])).trim();
      const output = await run("ssh", [
        "-i",
        `${dir}/client_key`,
        "-p",
        String(sshd.port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
        `${user}@127.0.0.1`,
        "bash",
        "/tmp/ssh_jump_point",
        "echo",
        "here",
      ]);
      assert.equal(output, "here\n");

      const stop = await agent.fetch("/stop", { method: "POST", headers: AUTH });
      assert.equal(stop.status, 200);
      await stop.body?.cancel();
      const [finished] = await receiver.waitFor(1);
      assert.equal(finished.body, '{"result": "stopped"}');
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
