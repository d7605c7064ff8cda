/**
 * `prctl(2)` through Deno's FFI, for the two process attributes the agent sets on itself:
 * not dumpable (so `/proc/<agent>/environ`, `cmdline`'s memory and `ptrace` are root-only,
 * DECISIONS.md 21) and child subreaper (orphans of a job re-parent to the agent, DECISIONS.md 23).
 * Linux only; elsewhere, or where libc cannot be opened, each call reports `unsupported`.
 *
 * @module
 */

const PR_GET_DUMPABLE = 3;
const PR_SET_DUMPABLE = 4;
const PR_SET_CHILD_SUBREAPER = 36;
const PR_GET_CHILD_SUBREAPER = 37;

const SYMBOLS = {
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
} as const;

/** What a `prctl` call gave: done, refused by the kernel, or not possible here. */
export type PrctlOutcome =
  | { readonly state: "ok"; readonly value: number }
  | { readonly state: "failed"; readonly reason: string }
  | { readonly state: "unsupported"; readonly reason: string };

let library: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

function call(option: number, arg: number): PrctlOutcome {
  if (Deno.build.os !== "linux") return { state: "unsupported", reason: "not Linux" };
  try {
    library ??= Deno.dlopen("libc.so.6", SYMBOLS);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { state: "unsupported", reason: `Cannot open libc: ${reason}` };
  }
  const value = library.symbols.prctl(option, BigInt(arg), 0n, 0n, 0n);
  return value < 0
    ? { state: "failed", reason: `prctl(${option}) returned ${value}` }
    : { state: "ok", value };
}

/** Makes this process dumpable or not (`PR_SET_DUMPABLE`). */
export function setDumpable(dumpable: boolean): PrctlOutcome {
  return call(PR_SET_DUMPABLE, dumpable ? 1 : 0);
}

/** Whether this process is dumpable (`PR_GET_DUMPABLE`): value 1 yes, 0 no. */
export function getDumpable(): PrctlOutcome {
  return call(PR_GET_DUMPABLE, 0);
}

/** Makes this process a child subreaper or not (`PR_SET_CHILD_SUBREAPER`). */
export function setChildSubreaper(on: boolean): PrctlOutcome {
  return call(PR_SET_CHILD_SUBREAPER, on ? 1 : 0);
}

/** Whether this process is a child subreaper (`PR_GET_CHILD_SUBREAPER` writes to a pointer). */
export function isChildSubreaper(): boolean {
  const out = new Int32Array(1);
  const pointer = Deno.UnsafePointer.value(Deno.UnsafePointer.of(out));
  return call(PR_GET_CHILD_SUBREAPER, Number(pointer)).state === "ok" && out[0] === 1;
}
