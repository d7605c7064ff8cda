/**
 * `waitpid(2)` through Deno's FFI for one child the agent did not spawn: an orphan a child
 * subreaper adopted (DECISIONS.md 23), which Deno never waits for, so it would stay a zombie.
 * Never call it for a child `Deno.Command` spawned (Deno waits for those itself).
 *
 * @module
 */

const WNOHANG = 1;
const SYMBOLS = {
  waitpid: { parameters: ["i32", "pointer", "i32"], result: "i32" },
} as const;

let library: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/** Reaps `pid` if it is a dead child of this process; returns whether it was reaped. */
export function reapChild(pid: number): boolean {
  if (Deno.build.os !== "linux") return false;
  try {
    library ??= Deno.dlopen("libc.so.6", SYMBOLS);
  } catch {
    return false;
  }
  return library.symbols.waitpid(pid, null, WNOHANG) === pid;
}
