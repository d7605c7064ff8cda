/**
 * Hosted-only host setup shared by the executors (SEMAPHORE_COMPAT.md §11): SSH public keys
 * appended to `~/.ssh/authorized_keys` and the `/tmp/ssh_jump_point` script that debug
 * sessions run.
 *
 * @module
 */

import { decodeBase64Text } from "../lib/util/base64.ts";

/** The literal path the original writes the jump point to. */
export const SSH_JUMP_POINT_PATH = "/tmp/ssh_jump_point";

/** The user's home directory, as the job shell sees it. */
export function homeDir(): string {
  return Deno.env.get("HOME") ?? "/root";
}

/**
 * Appends each base64-encoded key as a line of `~/.ssh/authorized_keys` (§11.1).
 *
 * @throws {Error} when a key is not base64 or the file cannot be written.
 */
export async function appendAuthorizedKeys(
  keys: readonly string[],
  home: string = homeDir(),
): Promise<void> {
  if (keys.length === 0) return;
  const lines = keys.map((key, i) => {
    try {
      return decodeBase64Text(key) + "\n";
    } catch (cause) {
      throw new Error(`Cannot decode ssh_public_keys[${i}]: not base64`, { cause });
    }
  }).join("");
  await Deno.mkdir(`${home}/.ssh`, { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(`${home}/.ssh/authorized_keys`, lines, {
    append: true,
    create: true,
    mode: 0o644,
  });
}

/** The shell-executor jump point: a login shell, or the given command (§11.2). */
export const SHELL_JUMP_POINT = `#!/bin/bash
if [ "$#" -eq 0 ]; then
  exec bash --login
else
  exec "$@"
fi
`;

/** The container-executor jump point: waits for the main container, then execs into it. */
export function dockerJumpPoint(mainContainer: string): string {
  return `#!/bin/bash
cd /tmp
echo -n "Waiting for the container to start up"
until docker exec -i ${mainContainer} true >/dev/null 2>&1; do
  echo -n "."
  sleep 3
done
echo
if [ "$#" -eq 0 ]; then
  exec docker exec -ti ${mainContainer} bash --login
else
  exec docker exec -i ${mainContainer} "$@"
fi
`;
}

/**
 * Writes the jump point in place of any older one (DECISIONS.md 6): a new file, renamed over
 * the path, so a file or symlink that another user put at that path in the shared `/tmp` is
 * never written through nor left for a debug session to run (the rename fails instead).
 *
 * @throws {Error} when the file cannot be written or renamed into place
 */
export async function writeJumpPoint(
  script: string,
  path: string = SSH_JUMP_POINT_PATH,
): Promise<void> {
  const temp = await Deno.makeTempFile({
    dir: path.slice(0, path.lastIndexOf("/")) || "/",
    prefix: ".ssh_jump_point-",
  });
  try {
    await Deno.writeTextFile(temp, script);
    await Deno.chmod(temp, 0o755); // not secret: the container's name at most
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}
