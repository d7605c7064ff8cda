/**
 * Finds and kills every process a job started when the job has no cgroup (DECISIONS.md 18, 23):
 * the descendants of the terminal process, every process in the job shell's session (orphans
 * keep it after their parent died), every process whose environment carries the job's process
 * tag (daemons that left the session still inherit it), and, when the agent is a child
 * subreaper, the orphans it adopted from jobs (children of the agent outside its session), and
 * every process that holds the job's mark file open (a descriptor every process of the job
 * inherits, which `setsid`, `env -i` and re-parenting keep).
 * Linux `/proc` only. Every read is asynchronous: a sweep never blocks the agent's event loop.
 *
 * @module
 */

import { reapChild } from "../lib/util/reap.ts";

/** Options of {@linkcode killProcessTree}. */
export interface KillProcessTreeOptions {
  /** The process at the top of the tree (e.g. the PTY shim). */
  readonly rootPid: number;
  /** `NAME=VALUE` present in the environment of every process of the job. */
  readonly tag?: string;
  /** Extra session ids whose members belong to the job. @default [] */
  readonly sessionIds?: readonly number[];
  /**
   * Also the agent's children outside its own session: orphans of a job that re-parented to the
   * agent (a child subreaper). @default false
   */
  readonly adoptedOrphans?: boolean;
  /** A file every process of the job holds open (see {@linkcode MARK_FD}). @default none */
  readonly markFile?: string;
}

/**
 * The descriptor on which the job's shell, and so every process it starts, holds the job's mark
 * file open. High, so that jobs' own `exec 9>lock` idioms leave it alone.
 */
export const MARK_FD = 200;

interface ProcInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly sid: number;
  /** The executable's name (at most 15 characters). */
  readonly comm: string;
  /** When it started, in clock ticks since boot: with the pid, it names one process for good. */
  readonly start: number;
  /** Dead and waiting to be reaped: nothing left to kill. */
  readonly zombie: boolean;
}

/** Parses `/proc/<pid>/stat`; `undefined` when the process is gone. */
export async function readStat(pid: number): Promise<ProcInfo | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const state = fields[0];
    return {
      pid,
      ppid: Number(fields[1]),
      sid: Number(fields[3]),
      comm: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")),
      start: Number(fields[19]),
      zombie: state === "Z" || state === "X",
    };
  } catch {
    return undefined;
  }
}

async function listProcesses(): Promise<ProcInfo[]> {
  const pids: number[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (/^\d+$/.test(entry.name)) pids.push(Number(entry.name));
  }
  const infos = await Promise.all(pids.map(readStat));
  return infos.filter((info): info is ProcInfo => info !== undefined);
}

/** Whether process `pid` holds `markFile` open (also once the file was deleted). */
async function holdsMark(pid: number, markFile: string): Promise<boolean> {
  try {
    const link = await Deno.readLink(`/proc/${pid}/fd/${MARK_FD}`);
    if (link === markFile || link === `${markFile} (deleted)`) return true;
  } catch {
    // not open there (or not ours to read): look at every descriptor
  }
  try {
    for await (const entry of Deno.readDir(`/proc/${pid}/fd`)) {
      const link = await Deno.readLink(`/proc/${pid}/fd/${entry.name}`).catch(() => "");
      if (link === markFile || link === `${markFile} (deleted)`) return true;
    }
  } catch {
    // gone, or another user's
  }
  return false;
}

async function hasTag(pid: number, tag: string): Promise<boolean> {
  try {
    const environ = await Deno.readFile(`/proc/${pid}/environ`);
    return new TextDecoder().decode(environ).split("\0").includes(tag);
  } catch {
    return false;
  }
}

/** Returns the pids of the job's processes, the root included while it lives. */
export async function findProcessTree(options: KillProcessTreeOptions): Promise<number[]> {
  const { rootPid, tag, sessionIds = [], adoptedOrphans = false, markFile } = options;
  const processes = await listProcesses();
  const self = Deno.pid;
  const members = new Set<number>();
  if (processes.some((p) => p.pid === rootPid)) members.add(rootPid);
  const sessions = new Set(sessionIds);
  for (const p of processes) {
    if (p.ppid === rootPid) sessions.add(p.pid); // the shell the shim started leads a session
  }
  const own = processes.find((p) => p.pid === self)?.sid;
  if (own !== undefined) sessions.delete(own); // never the agent's own session
  if (adoptedOrphans) {
    for (const p of processes) {
      if (p.ppid === self && p.sid !== own && !p.zombie) members.add(p.pid);
    }
  }
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
  if (tag || markFile) {
    const candidates = processes.filter((p) => !members.has(p.pid) && p.pid !== self && !p.zombie);
    const found = await Promise.all(
      candidates.map(async (p) =>
        (tag !== undefined && await hasTag(p.pid, tag)) ||
        (markFile !== undefined && await holdsMark(p.pid, markFile))
      ),
    );
    candidates.forEach((p, i) => found[i] && members.add(p.pid));
  }
  const zombies = new Set(processes.filter((p) => p.zombie).map((p) => p.pid));
  return [...members].filter((pid) => !zombies.has(pid));
}

/**
 * Reaps the agent's adopted orphans that died (zombies whose parent is the agent, outside its
 * session): Deno waits only for the children it spawned.
 */
export async function reapAdoptedOrphans(): Promise<void> {
  const self = Deno.pid;
  const own = (await readStat(self))?.sid;
  for (const p of await listProcesses()) {
    if (p.ppid === self && p.zombie && p.sid !== own) reapChild(p.pid);
  }
}

/**
 * SIGKILLs the whole tree, again and again until nothing of it is left (a process may fork
 * while we look). Returns how many processes were signalled.
 */
export async function killProcessTree(options: KillProcessTreeOptions): Promise<number> {
  let killed = 0;
  for (let round = 0; round < 20; round++) {
    const pids = await findProcessTree(options);
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
  if (options.adoptedOrphans) await reapAdoptedOrphans();
  return killed;
}

/** A process named for good: its pid and its start time (see {@linkcode readStat}). */
export interface ProcessId {
  readonly pid: number;
  readonly start: number;
}

/** The job's processes (as {@linkcode findProcessTree} finds them), named for good. */
export async function identifyProcessTree(options: KillProcessTreeOptions): Promise<ProcessId[]> {
  const out: ProcessId[] = [];
  for (const pid of await findProcessTree(options)) {
    const info = await readStat(pid);
    if (info && !info.zombie) out.push({ pid, start: info.start });
  }
  return out;
}

/**
 * SIGKILLs the processes of `ids` that still run (same pid and start time: never a process that
 * got a recorded pid later) and their descendants, until none is left. Returns how many were
 * signalled.
 */
export async function killIdentifiedProcesses(ids: readonly ProcessId[]): Promise<number> {
  let killed = 0;
  const known = new Map(ids.map(({ pid, start }) => [pid, start]));
  for (let round = 0; round < 20 && known.size > 0; round++) {
    const processes = await listProcesses();
    const members = new Set(
      processes.filter((p) => known.get(p.pid) === p.start && p.pid !== Deno.pid).map((p) => p.pid),
    );
    let grew = true;
    while (grew) {
      grew = false;
      for (const p of processes) {
        if (!members.has(p.pid) && members.has(p.ppid) && p.pid !== Deno.pid) {
          members.add(p.pid);
          known.set(p.pid, p.start); // its parent may be gone by the next round
          grew = true;
        }
      }
    }
    const alive = processes.filter((p) => members.has(p.pid) && !p.zombie);
    if (alive.length === 0) break;
    for (const p of alive) {
      try {
        Deno.kill(p.pid, "SIGKILL");
        killed++;
      } catch {
        // gone
      }
    }
  }
  return killed;
}
