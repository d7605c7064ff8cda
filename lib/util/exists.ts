/**
 * Whether a path names something that can be stat'ed now.
 *
 * @module
 */

/** Whether `path` exists (false too when it cannot be stat'ed, e.g. no permission). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** {@linkcode exists}, synchronously: for kernel file systems, which answer at once. */
export function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
