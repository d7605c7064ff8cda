/**
 * Finds and kills every process a job started (DECISIONS.md 18): the descendants of the
 * terminal process, every process in the job shell's session (orphans keep it after their
 * parent died), and every process whose environment carries the job's process tag (daemons
 * that left the session still inherit it). Linux `/proc` only.
 *
 * @module
 */

/** Options of {@linkcode killProcessTree}. */
export interface KillProcessTreeOptions {
  /** The process at the top of the tree (e.g. the PTY shim). */
  readonly rootPid: number;
  /** `NAME=VALUE` present in the environment of every process of the job. */
  readonly tag?: string;
  /** Extra session ids whose members belong to the job. @default [] */
  readonly sessionIds?: readonly number[];
}

interface ProcInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly sid: number;
  /** Dead and waiting to be reaped: nothing left to kill. */
  readonly zombie: boolean;
}

function readStat(pid: number): ProcInfo | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const state = fields[0];
    return {
      pid,
      ppid: Number(fields[1]),
      sid: Number(fields[3]),
      zombie: state === "Z" || state === "X",
    };
  } catch {
    return undefined;
  }
}

function listProcesses(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const info = readStat(Number(entry.name));
    if (info) out.push(info);
  }
  return out;
}

function hasTag(pid: number, tag: string): boolean {
  try {
    const environ = Deno.readFileSync(`/proc/${pid}/environ`);
    return new TextDecoder().decode(environ).split("\0").includes(tag);
  } catch {
    return false;
  }
}

/** Returns the pids of the job's processes, the root included while it lives. */
export function findProcessTree(options: KillProcessTreeOptions): number[] {
  const { rootPid, tag, sessionIds = [] } = options;
  const processes = listProcesses();
  const self = Deno.pid;
  const members = new Set<number>();
  if (processes.some((p) => p.pid === rootPid)) members.add(rootPid);
  const sessions = new Set(sessionIds);
  for (const p of processes) {
    if (p.ppid === rootPid) sessions.add(p.pid); // the shell the shim started leads a session
  }
  const own = processes.find((p) => p.pid === self)?.sid;
  if (own !== undefined) sessions.delete(own); // never the agent's own session
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of processes) {
      if (members.has(p.pid) || p.pid === self) continue;
      if (members.has(p.ppid) || sessions.has(p.sid)) {
        members.add(p.pid);
        grew = true;
      }
    }
  }
  if (tag) {
    for (const p of processes) {
      if (!members.has(p.pid) && p.pid !== self && !p.zombie && hasTag(p.pid, tag)) {
        members.add(p.pid);
      }
    }
  }
  const zombies = new Set(processes.filter((p) => p.zombie).map((p) => p.pid));
  return [...members].filter((pid) => !zombies.has(pid));
}

/**
 * SIGKILLs the whole tree, again and again until nothing of it is left (a process may fork
 * while we look). Returns how many processes were signalled.
 */
export function killProcessTree(options: KillProcessTreeOptions): number {
  let killed = 0;
  for (let round = 0; round < 20; round++) {
    const pids = findProcessTree(options);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
        killed++;
      } catch {
        // already gone
      }
    }
  }
  return killed;
}
