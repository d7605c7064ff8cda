/**
 * A private Docker registry for credential tests: Debian's `docker-registry` on
 * 127.0.0.1:<free port> with htpasswd auth (Docker treats loopback registries as insecure, so
 * plain HTTP works), plus pushing a local image into it through the Engine API.
 *
 * @module
 */

import { DockerClient } from "../../executors/docker_api.ts";

/** Where the registry binary is on Debian. */
export const REGISTRY_BINARY = "/usr/bin/docker-registry";

/** A running registry; dispose it to stop the process and delete its storage. */
export interface TestRegistry extends AsyncDisposable {
  /** `127.0.0.1:<port>` */
  readonly address: string;
  readonly username: string;
  readonly password: string;
  /**
   * Pushes local image `source` as `<address>/<name>` with the registry's credentials, then
   * drops the local copy of that tag so a job has to pull it. Returns the full reference.
   */
  push(source: string, name: string): Promise<string>;
}

/** Why the registry tests cannot run (`undefined` when they can, or AGENT_TEST_REQUIRE_ALL=1). */
export async function registrySkipReason(): Promise<string | undefined> {
  for (const binary of [REGISTRY_BINARY, "htpasswd"]) {
    const found = await new Deno.Command("sh", {
      args: ["-c", `command -v ${binary}`],
      stdout: "null",
    }).output().then((o) => o.success, () => false);
    if (!found) {
      if (Deno.env.get("AGENT_TEST_REQUIRE_ALL") === "1") return undefined;
      const reason = `${binary} is not installed`;
      console.log(`Skipping registry tests: ${reason}`);
      return reason;
    }
  }
  return undefined;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Waits until the registry answers on `/v2/` (401 without credentials). */
async function waitUntilUp(address: string, process: Deno.ChildProcess): Promise<void> {
  let exited = false;
  process.status.then(() => exited = true);
  const deadline = performance.now() + 20_000;
  let delay = 10;
  while (performance.now() < deadline) {
    if (exited) throw new Error("Cannot start docker-registry: it exited");
    try {
      const response = await fetch(`http://${address}/v2/`);
      await response.body?.cancel();
      if (response.status === 401 || response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 200);
  }
  throw new Error(`Cannot start docker-registry: no answer on ${address} after 20 s`);
}

/** Options of {@linkcode startRegistry}. */
export interface TestRegistryOptions {
  /** @default "agent" */
  readonly username?: string;
  /** @default a random UUID */
  readonly password?: string;
}

/** Starts a registry with one user (by default `agent` with a random password). */
export async function startRegistry(options: TestRegistryOptions = {}): Promise<TestRegistry> {
  const { username = "agent", password = crypto.randomUUID() } = options;
  const dir = await Deno.makeTempDir({ prefix: "agent-test-registry-" });
  const htpasswd = await new Deno.Command("htpasswd", {
    args: ["-Bbn", username, password],
    stderr: "piped",
  }).output();
  if (!htpasswd.success) throw new Error("Cannot create the htpasswd file: htpasswd failed");
  await Deno.writeFile(`${dir}/htpasswd`, htpasswd.stdout);
  const address = `127.0.0.1:${freePort()}`;
  await Deno.writeTextFile(
    `${dir}/config.yml`,
    [
      "version: 0.1",
      "log:",
      "  level: error",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${dir}/data`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: ${address}`,
      "auth:",
      "  htpasswd:",
      "    realm: agent-test",
      `    path: ${dir}/htpasswd`,
      "",
    ].join("\n"),
  );
  const process = new Deno.Command(REGISTRY_BINARY, {
    args: ["serve", `${dir}/config.yml`],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const pushed: string[] = [];
  const stop = async () => {
    try {
      process.kill("SIGTERM");
    } catch {
      // already gone
    }
    await process.status;
    if (pushed.length > 0) {
      await using client = await DockerClient.connect();
      for (const reference of pushed) await client.removeImage(reference).catch(() => {});
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await waitUntilUp(address, process);
  } catch (error) {
    await stop();
    throw error;
  }
  const auth = { username, password, serveraddress: address };
  return {
    address,
    username,
    password,
    async push(source: string, name: string): Promise<string> {
      const reference = `${address}/${name}`;
      await using client = await DockerClient.connect();
      await client.tagImage(source, reference);
      pushed.push(reference);
      await client.pushImage(reference, { auth });
      await client.removeImage(reference);
      return reference;
    },
    [Symbol.asyncDispose]: stop,
  };
}
