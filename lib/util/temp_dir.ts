/**
 * The OS temp dir, where the agent keeps job logs and its own log by default.
 *
 * @module
 */

/** The OS temp dir as Go's `os.TempDir()` (and `Deno.makeTempDir`) see it. */
export function osTempDir(): string {
  try {
    const dir = Deno.env.get("TMPDIR");
    if (dir) return dir;
  } catch {
    // No env permission: fall back to the default like Go does for an empty $TMPDIR.
  }
  return "/tmp";
}
