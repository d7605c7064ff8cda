/**
 * Finds the processes a test job started by their name (`exec -a MARKER ...`), to check that
 * none survives its job.
 *
 * @module
 */

/** Pids of live (not zombie) processes named `marker` (their argv[0]). */
export function processesWith(marker: string): number[] {
  const out: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
      if (cmdline.startsWith(`${marker}\0`) && state !== "Z") out.push(Number(entry.name));
    } catch {
      // gone
    }
  }
  return out;
}
