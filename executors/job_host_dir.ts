/**
 * A job's directory on the host (`$TMPDIR/agent-temp-directory-*`, mode 0700, DECISIONS.md 20):
 * command files, env files, the crash record of a shell job, and what a container job mounts.
 * Its owner file stays locked by the agent while the job lives, which is how every agent tells
 * a live job's directory from one a dead agent left (`docker_leftovers.ts` removes those).
 *
 * @module
 */

/**
 * Where each job's host directory is made: `$TMPDIR`, else `/tmp`. Agents that share it find each
 * other's leftovers.
 */
export function hostDirParent(): string {
  return Deno.env.get("TMPDIR") || "/tmp";
}
export const HOST_DIR_PREFIX = "agent-temp-directory-";
/**
 * Locked (exclusive) by the agent that made the host dir for as long as the job lives; its text
 * names that agent (`<hostname>/<pid>`, for people only).
 */
const OWNER_FILE = ".owner";
/**
 * The subdirectory of a host dir that is mounted into the main container. The host dir is
 * 0700: no other user of the host reaches the env file inside. The mounted dir is 0755 with
 * 0644 files, because the container's user, whoever it is, must read them.
 */
const MOUNT_DIR = "mount";

/**
 * A job's host directory and the exclusive lock on its owner file, held until
 * {@linkcode JobHostDir.remove} (the lock tells other agents the job is alive).
 */
export class JobHostDir implements AsyncDisposable {
  /** The directory's path (`/tmp/agent-temp-directory-*`, mode 0700). */
  readonly path: string;
  /** What the main container mounts: `<path>/mount`, mode 0755 (see {@linkcode MOUNT_DIR}). */
  readonly mountPath: string;
  readonly #owner: Deno.FsFile;
  #removed = false;

  /** Takes over `owner`, the open and locked owner file of `path`. */
  constructor(path: string, owner: Deno.FsFile) {
    this.path = path;
    this.mountPath = `${path}/${MOUNT_DIR}`;
    this.#owner = owner;
  }

  /**
   * Deletes the directory, then closes the owner file (which releases the lock). The file is
   * closed even when the deletion fails (that error is thrown). Only the first call acts.
   */
  async remove(): Promise<void> {
    if (this.#removed) return;
    this.#removed = true;
    try {
      await Deno.remove(this.path, { recursive: true });
    } finally {
      this.#owner.close();
    }
  }

  /** Same as {@linkcode JobHostDir.remove}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.remove();
  }
}

/**
 * Makes a job's host directory (`/tmp/agent-temp-directory-*`, mode 0700, DECISIONS.md 20)
 * with the owner file, locked for as long as the returned {@linkcode JobHostDir} is not
 * removed, and the dir the container mounts. While nobody holds that lock (this agent died),
 * `removeLeftovers` (docker_leftovers.ts) deletes the dir (env files hold secrets) and the
 * job's containers and networks.
 */
export function createJobHostDir(): JobHostDir {
  // Synchronous: a few calls on a local directory, each microseconds, where each asynchronous
  // one costs a thread-pool round trip (~0.3 ms) on the way to the job's first command.
  // Per job, so two jobs never share it; made 0700 by makeTempDir.
  const dir = Deno.makeTempDirSync({ dir: hostDirParent(), prefix: HOST_DIR_PREFIX });
  let owner: Deno.FsFile | undefined;
  try {
    Deno.mkdirSync(`${dir}/${MOUNT_DIR}`);
    Deno.chmodSync(`${dir}/${MOUNT_DIR}`, 0o755); // whatever the umask
    // Locked before it gets its name: no agent ever sees an owner file that is not locked.
    const unnamed = `${dir}/${OWNER_FILE}.new`;
    Deno.writeTextFileSync(unnamed, ownerLabel(), { mode: 0o600, createNew: true });
    owner = Deno.openSync(unnamed, { read: true });
    owner.lockSync(true);
    Deno.renameSync(unnamed, `${dir}/${OWNER_FILE}`);
  } catch (error) {
    owner?.close();
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // what cannot be removed now, the leftover sweep removes (its owner file is not locked)
    }
    throw error;
  }
  return new JobHostDir(dir, owner);
}

/**
 * Whether an agent holds the lock on the owner file of host dir `dir` (`"held"`), nobody does
 * (`"free"`, tried and let go at once), the dir or its owner file does not exist, or it cannot
 * be told (`"unknown"`, e.g. no permission: treated as alive).
 */
export async function ownerState(
  dir: string,
): Promise<"held" | "free" | "no dir" | "no owner file" | "unknown"> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(`${dir}/${OWNER_FILE}`, { read: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) return "unknown";
    try {
      await Deno.stat(dir);
      return "no owner file";
    } catch (statError) {
      return statError instanceof Deno.errors.NotFound ? "no dir" : "unknown";
    }
  }
  try {
    if (!(await file.tryLock(true))) return "held";
    await file.unlock();
    return "free";
  } catch {
    return "unknown";
  } finally {
    file.close();
  }
}

/** This agent process as `<hostname>/<pid>` (a container's owner label, the owner file's text). */
export function ownerLabel(): string {
  return `${hostname()}/${Deno.pid}`;
}

export function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown";
  }
}
