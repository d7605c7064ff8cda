/**
 * Test images built from the host's own binaries, no registry needed (DESIGN.md "Tests and
 * CI"): a root filesystem with bash and its libraries, busybox-static with its applets and the
 * `docker` client, turned into images with the Engine API's import (`docker import`).
 *
 * - `agent-test/bash:1`: bash, busybox applets, the docker client, users root/nobody/semaphore;
 * - `agent-test/nobash:1`: busybox applets only;
 * - `agent-test/pong:1`: busybox, answering `pong` to every TCP connection on port 5432.
 *
 * Tags are fixed; an image is built only when missing, under a file lock so parallel test
 * files build it once. Bump {@linkcode TEST_IMAGE_VERSION} when the recipe changes.
 *
 * Also decides whether Docker tests run: {@linkcode dockerSkipReason}.
 *
 * @module
 */

import { DockerClient } from "../../executors/docker_api.ts";

/** The tag of every test image; bump it when the recipe below changes. */
export const TEST_IMAGE_VERSION = "1";

/** The test images by role. */
export const TEST_IMAGES = {
  bash: `agent-test/bash:${TEST_IMAGE_VERSION}`,
  nobash: `agent-test/nobash:${TEST_IMAGE_VERSION}`,
  pong: `agent-test/pong:${TEST_IMAGE_VERSION}`,
} as const;

const PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const BUSYBOX_CANDIDATES = ["/bin/busybox", "/usr/bin/busybox"];
const DOCKER_CANDIDATES = ["/usr/bin/docker", "/usr/local/bin/docker"];
const TERMINFO = ["/usr/share/terminfo/x/xterm", "/lib/terminfo/x/xterm", "/lib/terminfo/d/dumb"];

/**
 * Why Docker tests cannot run here (`undefined` when they can). With
 * `AGENT_TEST_REQUIRE_ALL=1` nothing is skipped: the reason is returned as `undefined` so the
 * tests run and fail loudly.
 */
export async function dockerSkipReason(): Promise<string | undefined> {
  let reason: string | undefined;
  try {
    const client = await DockerClient.connect();
    client.close();
  } catch (error) {
    reason = error instanceof Error ? error.message : String(error);
  }
  if (reason === undefined) {
    for (const [what, paths] of [["busybox", BUSYBOX_CANDIDATES]] as const) {
      if (!(await firstExisting(paths))) reason = `no ${what} at ${paths.join(" or ")}`;
    }
  }
  if (reason === undefined) return undefined;
  if (Deno.env.get("AGENT_TEST_REQUIRE_ALL") === "1") return undefined;
  console.log(`Skipping Docker tests: ${reason}`);
  return reason;
}

async function firstExisting(paths: readonly string[]): Promise<string | undefined> {
  for (const path of paths) {
    try {
      await Deno.stat(path);
      return path;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

async function run(command: string, args: readonly string[]): Promise<string> {
  const output = await new Deno.Command(command, { args: [...args], stderr: "piped" }).output();
  if (!output.success) {
    throw new Error(
      `Cannot run ${command} ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`,
    );
  }
  return new TextDecoder().decode(output.stdout);
}

/** The shared libraries a dynamic binary loads (absolute paths), from `ldd`. */
async function sharedLibraries(binary: string): Promise<string[]> {
  const result = await new Deno.Command("ldd", { args: [binary], stderr: "null" }).output();
  if (!result.success) return []; // "not a dynamic executable"
  const libs: string[] = [];
  for (const line of new TextDecoder().decode(result.stdout).split("\n")) {
    const match = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (match) libs.push(match[1]);
  }
  return libs;
}

async function copyInto(root: string, source: string, destination = source): Promise<void> {
  const target = `${root}${destination}`;
  await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), { recursive: true });
  await Deno.copyFile(await Deno.realPath(source), target);
  await Deno.chmod(target, (await Deno.stat(source)).mode! & 0o7777);
}

async function copyBinary(root: string, source: string, destination: string): Promise<void> {
  await copyInto(root, source, destination);
  for (const lib of await sharedLibraries(source)) await copyInto(root, lib);
}

/** The common base: directories, users, busybox and its applets. */
async function baseRootfs(root: string): Promise<void> {
  for (const dir of ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "home/semaphore"]) {
    await Deno.mkdir(`${root}/${dir}`, { recursive: true });
  }
  await Deno.mkdir(`${root}/tmp`, { recursive: true });
  await Deno.chmod(`${root}/tmp`, 0o1777);
  await Deno.chown(`${root}/home/semaphore`, 1000, 1000).catch(() => {});
  await Deno.writeTextFile(
    `${root}/etc/passwd`,
    "root:x:0:0:root:/root:/bin/bash\n" +
      "semaphore:x:1000:1000:semaphore:/home/semaphore:/bin/bash\n" +
      "nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
  );
  await Deno.writeTextFile(
    `${root}/etc/group`,
    "root:x:0:\nsemaphore:x:1000:\nnogroup:x:65534:\n",
  );
  const busybox = (await firstExisting(BUSYBOX_CANDIDATES))!;
  await copyBinary(root, busybox, "/bin/busybox");
  const applets = (await run("/bin/busybox", ["--list"])).split("\n").filter((a) => a !== "");
  for (const applet of applets) {
    if (applet === "busybox") continue;
    await Deno.symlink("busybox", `${root}/bin/${applet}`).catch(() => {});
  }
}

/** The main-container rootfs: the base plus bash, terminfo and the docker client. */
async function bashRootfs(root: string): Promise<void> {
  await baseRootfs(root);
  const bash = await Deno.realPath((await firstExisting(["/bin/bash", "/usr/bin/bash"]))!);
  await Deno.remove(`${root}/bin/bash`).catch(() => {});
  await copyBinary(root, bash, "/bin/bash");
  await Deno.symlink("/bin/bash", `${root}/usr/bin/bash`).catch(() => {});
  for (const entry of TERMINFO) {
    if (await firstExisting([entry])) await copyInto(root, entry);
  }
  const docker = await firstExisting(DOCKER_CANDIDATES);
  if (docker) await copyBinary(root, docker, "/usr/bin/docker");
}

async function importRootfs(
  client: DockerClient,
  root: string,
  reference: string,
  cmd: readonly string[],
): Promise<void> {
  const tar = new Deno.Command("tar", {
    args: ["-C", root, "--numeric-owner", "-cf", "-", "."],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const [status] = await Promise.all([
    tar.status,
    client.importImage(tar.stdout, reference, {
      changes: [`ENV ${PATH_ENV}`, `CMD ${JSON.stringify(cmd)}`],
    }),
    tar.stderr.cancel(),
  ]);
  if (!status.success) throw new Error(`Cannot build ${reference}: tar failed`);
}

let ready: Promise<typeof TEST_IMAGES> | undefined;

/**
 * {@linkcode ensureTestImages} once per test process. Each Docker test awaits it first (not the
 * module at load), so that without a daemon under `AGENT_TEST_REQUIRE_ALL=1` every test fails
 * on its own instead of one load error standing for all of them.
 */
export function testImagesReady(): Promise<typeof TEST_IMAGES> {
  ready ??= ensureTestImages();
  return ready;
}

/** Builds whichever test images are missing; returns their tags. */
export async function ensureTestImages(): Promise<typeof TEST_IMAGES> {
  await using client = await DockerClient.connect();
  const missing = async () => {
    const result: string[] = [];
    for (const image of Object.values(TEST_IMAGES)) {
      if (!(await client.inspectImage(image))) result.push(image);
    }
    return result;
  };
  if ((await missing()).length === 0) return TEST_IMAGES;
  using lock = await Deno.open("/tmp/agent-test-images.lock", { create: true, write: true });
  await lock.lock(true);
  try {
    const todo = await missing();
    if (todo.length === 0) return TEST_IMAGES;
    const dir = await Deno.makeTempDir({ prefix: "agent-test-rootfs-" });
    try {
      if (todo.includes(TEST_IMAGES.bash)) {
        await bashRootfs(`${dir}/bash`);
        await importRootfs(client, `${dir}/bash`, TEST_IMAGES.bash, ["bash"]);
      }
      if (todo.includes(TEST_IMAGES.nobash) || todo.includes(TEST_IMAGES.pong)) {
        await baseRootfs(`${dir}/busybox`);
        await importRootfs(client, `${dir}/busybox`, TEST_IMAGES.nobash, ["sh"]);
        await importRootfs(client, `${dir}/busybox`, TEST_IMAGES.pong, [
          "nc",
          "-ll",
          "-p",
          "5432",
          "-e",
          "echo",
          "pong",
        ]);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  } finally {
    await lock.unlock();
  }
  return TEST_IMAGES;
}
