/**
 * A cgroup per shell job (DECISIONS.md 23): made before the job shell starts, the shell started
 * inside it (so every descendant is in it, whatever it does to its session, parent or
 * environment), emptied and waited for at job end, measured, limited, then removed.
 *
 * Layouts, found once per process by {@linkcode jobIsolation}:
 * - `v2`: the unified hierarchy alone (current distributions). The job's cgroup is a child of
 *   the agent's own cgroup; controllers are enabled for it where the agent's cgroup delegates
 *   them. Emptied with `cgroup.kill`, or freeze + SIGKILL + thaw on kernels before 5.14.
 * - `v1`: one hierarchy per controller (`pids`, `memory`, `cpuacct`, `cpu`, `freezer`,
 *   `blkio`), a child of the agent's cgroup in each, plus the v2 hierarchy when it is mounted
 *   beside them (`/sys/fs/cgroup/unified`), whose `cgroup.kill` then empties the job at once.
 *   Without it: freeze, SIGKILL every pid in `cgroup.procs`, thaw, until empty.
 * - `none`: no cgroup can be made (not root, no delegation): the agent becomes a child
 *   subreaper and jobs are swept by their process tree, session and tag (process_tree.ts).
 *
 * @module
 */

import { delay } from "../lib/util/delay.ts";
import { existsSync } from "../lib/util/exists.ts";
import { errorMessage } from "../lib/util/errors.ts";
import { setChildSubreaper } from "../lib/util/prctl.ts";
import type { JobLimits, ResourceUsage } from "../lib/engine/executor.ts";

/** The v1 controllers a job's cgroup is made in (each where it is mounted). */
const V1_CONTROLLERS = ["pids", "memory", "cpuacct", "cpu", "freezer", "blkio"] as const;
type V1Controller = typeof V1_CONTROLLERS[number];

/** Prefix of every job cgroup's name (crash recovery looks for nothing else). */
export const JOB_CGROUP_PREFIX = "semaphore-job-";

/** How jobs are isolated on this host, and why. */
export type JobIsolation =
  | {
    readonly kind: "v2";
    /** The directory job cgroups are made in (the agent's own cgroup). */
    readonly parent: string;
    /** Controllers enabled for job cgroups (`memory`, `pids`, `cpu`, `io`). */
    readonly controllers: readonly string[];
    readonly description: string;
  }
  | {
    readonly kind: "v1";
    /** Per controller, the directory job cgroups are made in. */
    readonly parents: Readonly<Partial<Record<V1Controller, string>>>;
    /** The v2 directory job cgroups are also made in, for `cgroup.kill`. */
    readonly killer?: string;
    readonly description: string;
  }
  | { readonly kind: "none"; readonly description: string };

interface Mount {
  readonly root: string;
  readonly point: string;
  readonly type: string;
  readonly options: readonly string[];
}

/** The cgroup mounts of this mount namespace (`/proc/self/mountinfo`). */
function cgroupMounts(): Mount[] {
  const out: Mount[] = [];
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
    const [left, right] = line.split(" - ");
    if (!right) continue;
    const fields = left.split(" ");
    const [type, , superOptions = ""] = right.split(" ");
    if (type !== "cgroup" && type !== "cgroup2") continue;
    out.push({
      root: unescapeMount(fields[3]),
      point: unescapeMount(fields[4]),
      type,
      options: superOptions.split(","),
    });
  }
  return out;
}

function unescapeMount(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)));
}

/** The directory of this process's cgroup in `mount` given its path from `/proc/self/cgroup`. */
function dirIn(mount: Mount, path: string): string | undefined {
  if (mount.root !== "/" && path !== mount.root && !path.startsWith(`${mount.root}/`)) {
    return undefined; // our cgroup is not visible in this mount
  }
  const rest = mount.root === "/" ? path : path.slice(mount.root.length);
  return `${mount.point}${rest === "/" ? "" : rest}`.replace(/\/+$/, "") || "/";
}

/**
 * Makes and removes a probe cgroup in `parent`: why the agent may not make job cgroups there
 * (`problem`), and in a v2 hierarchy (`v2`) whether a child has `cgroup.kill` (kernel 5.14 and
 * later; never in v1, where looking would cost a failed call per hierarchy).
 */
function probe(parent: string, v2: boolean): { problem?: string; hasKill: boolean } {
  const dir = `${parent}/${JOB_CGROUP_PREFIX}probe-${Deno.pid}-${crypto.randomUUID()}`;
  try {
    Deno.mkdirSync(dir);
  } catch (error) {
    const why = error instanceof Deno.errors.PermissionDenied
      ? "Permission denied"
      : errorMessage(error);
    return { problem: `cannot make a cgroup in ${parent}: ${why}`, hasKill: false };
  }
  let hasKill = false;
  if (v2) {
    try {
      Deno.statSync(`${dir}/cgroup.kill`);
      hasKill = true;
    } catch {
      // no cgroup.kill: an older kernel
    }
  }
  try {
    Deno.removeSync(dir);
  } catch {
    // a leftover probe an agent removes as an empty leftover cgroup
  }
  return { hasKill };
}

/**
 * Finds how jobs can be isolated here (no side effect but probe cgroups made and removed).
 * Synchronous: a few reads and directory calls on kernel file systems, each microseconds, where
 * each of Deno's asynchronous ones costs a thread-pool round trip (~0.3 ms) on the way to a
 * job's first command.
 */
export function detectJobIsolation(): JobIsolation {
  if (Deno.build.os !== "linux") return { kind: "none", description: "no cgroups: not Linux" };
  let mounts: Mount[];
  let ownCgroups: string[];
  try {
    mounts = cgroupMounts();
    ownCgroups = Deno.readTextFileSync("/proc/self/cgroup").split("\n").filter((l) => l);
  } catch (error) {
    return { kind: "none", description: `no cgroups: ${errorMessage(error)}` };
  }
  const v2Path = ownCgroups.find((l) => l.startsWith("0::"))?.slice(3);
  const v2Mount = mounts.find((m) => m.type === "cgroup2");
  const v2Dir = v2Mount && v2Path !== undefined ? dirIn(v2Mount, v2Path) : undefined;
  // Controllers on v1 hierarchies (a `name=systemd` hierarchy alone does not count).
  const v1Mounts = mounts.filter((m) =>
    m.type === "cgroup" && V1_CONTROLLERS.some((c) => m.options.includes(c))
  );
  const problems: string[] = [];

  if (v1Mounts.length === 0) {
    if (!v2Dir) return { kind: "none", description: "no cgroups: no cgroup hierarchy is mounted" };
    const { problem, hasKill } = probe(v2Dir, true);
    if (problem) return { kind: "none", description: `no cgroups: ${problem}` };
    const controllers = delegateV2Controllers(v2Dir);
    return {
      kind: "v2",
      parent: v2Dir,
      controllers,
      description: `cgroup v2: a cgroup per job in ${v2Dir} (controllers: ${
        controllers.join(", ") || "none"
      }; stopped by ${hasKill ? "cgroup.kill" : "freeze + kill + thaw"})`,
    };
  }

  const candidates: [V1Controller, string][] = [];
  for (const controller of V1_CONTROLLERS) {
    const mount = v1Mounts.find((m) => m.options.includes(controller));
    if (!mount) continue;
    const line = ownCgroups.find((l) => l.split(":")[1]?.split(",").includes(controller));
    const path = line?.split(":").slice(2).join(":");
    const dir = path !== undefined ? dirIn(mount, path) : undefined;
    if (dir) candidates.push([controller, dir]);
  }
  // The v2 hierarchy is used only beside a v1 one.
  const probes = candidates.map(([, dir]) => probe(dir, false));
  const v2Probe = v2Dir && candidates.length > 0 ? probe(v2Dir, true) : undefined;
  const parents: Partial<Record<V1Controller, string>> = {};
  candidates.forEach(([controller, dir], i) => {
    const { problem } = probes[i];
    if (problem) problems.push(problem);
    else parents[controller] = dir;
  });
  let killer: string | undefined;
  if (v2Dir && v2Probe && Object.keys(parents).length > 0) {
    if (!v2Probe.problem && v2Probe.hasKill) killer = v2Dir;
  }
  if (!parents.freezer && !killer) {
    return {
      kind: "none",
      description: `no cgroups: ${problems[0] ?? "no freezer hierarchy to stop jobs with"}`,
    };
  }
  const always = Object.keys(parents).filter((c) => c !== "cpu" && !(c === "freezer" && killer));
  return {
    kind: "v1",
    parents,
    killer,
    description: `cgroup v1: a cgroup per job in ${always.join(", ")}${
      parents.cpu ? " (and cpu with --job-cpu-limit)" : ""
    }, ${killer ? `and in ${killer}: stopped by cgroup.kill` : "stopped by the freezer"}`,
  };
}

/**
 * Enables the controllers job cgroups can use in `dir`'s `cgroup.subtree_control`. A cgroup with
 * processes cannot delegate (no internal processes), so the agent first moves itself into a leaf
 * `agent` child, as systemd's `Delegate=yes` expects. Job cgroups are then made beside it.
 */
function delegateV2Controllers(dir: string): string[] {
  let available: string[];
  try {
    available = Deno.readTextFileSync(`${dir}/cgroup.controllers`).trim().split(/\s+/).filter((
      c,
    ) => ["memory", "pids", "cpu", "io"].includes(c));
  } catch {
    return [];
  }
  if (available.length === 0) return [];
  const wanted = available.map((c) => `+${c}`).join(" ");
  const enable = () => Deno.writeTextFileSync(`${dir}/cgroup.subtree_control`, wanted);
  try {
    enable();
  } catch {
    try {
      // Only the agent moves: other processes of its cgroup (a login session's) stay where they
      // are, and then no controller can be delegated.
      try {
        Deno.mkdirSync(`${dir}/agent`);
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      }
      Deno.writeTextFileSync(`${dir}/agent/cgroup.procs`, `${Deno.pid}`);
      enable();
    } catch {
      // keep what is enabled already
    }
  }
  try {
    const enabled = Deno.readTextFileSync(`${dir}/cgroup.subtree_control`).trim().split(/\s+/);
    return available.filter((c) => enabled.includes(c));
  } catch {
    return [];
  }
}

let isolation: Promise<JobIsolation> | undefined;

/**
 * How this agent isolates jobs, found once. In the `none` layout it also makes the agent a child
 * subreaper, so orphans of a job re-parent to the agent and its sweep finds them.
 */
export function jobIsolation(): Promise<JobIsolation> {
  isolation ??= new Promise<JobIsolation>((found) => found(detectJobIsolation())).then((found) => {
    if (found.kind !== "none") return found;
    const outcome = setChildSubreaper(true);
    const subreaper = outcome.state === "ok"
      ? "the agent is a child subreaper and sweeps each job's processes by tree, session and tag"
      : `the agent sweeps each job's processes by tree, session and tag (not a subreaper: ${outcome.reason})`;
    return { kind: "none", description: `${found.description}; ${subreaper}` };
  });
  return isolation;
}

/**
 * The pids in the `cgroup.procs` of `dirs` now. Read synchronously: the kernel answers at once,
 * and a loop that waits for a job's cgroup to empty would otherwise spend most of its time
 * handing each read to a thread (~0.3 ms a file, five files a round in v1).
 */
function pidsIn(dirs: readonly string[]): number[] {
  const all = new Set<number>();
  for (const dir of dirs) {
    let text = "";
    try {
      text = Deno.readTextFileSync(`${dir}/cgroup.procs`);
    } catch {
      // gone, or not readable: no pids there
    }
    for (const line of text.split("\n")) if (line) all.add(Number(line));
  }
  return [...all];
}

/**
 * A number in a control file. Control files are read and written synchronously, like
 * `cgroup.procs` above: the kernel answers at once.
 */
function readNumber(file: string): number | undefined {
  try {
    const value = Number(Deno.readTextFileSync(file).trim());
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** `key value` lines (`cpu.stat`, `memory.events`, `pids.events`, `memory.oom_control`). */
function readKeyed(file: string): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const line of Deno.readTextFileSync(file).split("\n")) {
      const [key, value] = line.trim().split(/\s+/);
      if (key && value !== undefined) out.set(key, Number(value));
    }
  } catch {
    // not there
  }
  return out;
}

/** Writes a control file, creating nothing; `false` when the kernel refused it. */
function write(file: string, value: string): boolean {
  try {
    Deno.writeTextFileSync(file, value, { create: false });
    return true;
  } catch {
    return false;
  }
}

/** Which limit a job reached, counted since the job began. */
export interface LimitCounters {
  readonly memory: number;
  readonly pids: number;
}

/** A job cgroup's dirs, as recorded for crash recovery. */
export interface JobCgroupRecord {
  /** Every directory of the job's cgroup (one per hierarchy). */
  readonly dirs: readonly string[];
  /** The v1 freezer hierarchy's dir. */
  readonly freezer?: string;
  /** The v2 dir (`cgroup.kill`, `cgroup.freeze`). */
  readonly v2?: string;
}

/** One job's cgroup (one directory per hierarchy). */
export class JobCgroup {
  /** Every directory, the killer's (v2) last. */
  readonly dirs: readonly string[];
  readonly limits: JobLimits;
  readonly #isolation: Exclude<JobIsolation, { kind: "none" }>;
  readonly #byController: Readonly<Record<string, string>>;
  /** The v2 directory (with `cgroup.kill` and `cgroup.freeze`), if any. */
  readonly #v2: string | undefined;
  #seen: LimitCounters = { memory: 0, pids: 0 };
  #removed = false;

  private constructor(
    isolation: Exclude<JobIsolation, { kind: "none" }>,
    byController: Record<string, string>,
    v2: string | undefined,
    limits: JobLimits,
  ) {
    this.#isolation = isolation;
    this.#byController = byController;
    this.#v2 = v2;
    this.limits = limits;
    this.dirs = [...new Set([...Object.values(byController), ...(v2 ? [v2] : [])])];
  }

  /**
   * Makes the cgroup `name` in every hierarchy of `isolation` and applies `limits`.
   *
   * @throws {Error} when a directory cannot be made or a limit cannot be set (what was made is
   *   removed again).
   */
  static async create(
    isolation: Exclude<JobIsolation, { kind: "none" }>,
    name: string,
    limits: JobLimits = {},
  ): Promise<JobCgroup> {
    const byController: Record<string, string> = {};
    let v2: string | undefined;
    if (isolation.kind === "v2") {
      v2 = `${isolation.parent}/${name}`;
      for (const c of isolation.controllers) byController[c] = v2;
    } else {
      for (const [controller, parent] of Object.entries(isolation.parents)) {
        // Each hierarchy costs a directory and a migration at job start: only what is used.
        if (controller === "freezer" && isolation.killer) continue; // v2 freezes and kills
        if (controller === "cpu" && limits.cpus === undefined) continue; // cpuacct measures
        byController[controller] = `${parent}/${name}`;
      }
      if (isolation.killer) v2 = `${isolation.killer}/${name}`;
    }
    const cgroup = new JobCgroup(isolation, byController, v2, limits);
    try {
      for (const dir of cgroup.dirs) Deno.mkdirSync(dir); // see detectJobIsolation: no waiting
      cgroup.#applyLimits();
    } catch (error) {
      await cgroup.remove().catch(() => {});
      throw error;
    }
    return cgroup;
  }

  /** The `cgroup.procs` files a process writes its pid to, to join the job (every hierarchy). */
  get procsFiles(): string[] {
    return this.dirs.map((dir) => `${dir}/cgroup.procs`);
  }

  #applyLimits(): void {
    const { memoryBytes, cpus, pids } = this.limits;
    const c = this.#byController;
    const need = (controller: string, what: string): string => {
      const dir = c[controller];
      if (!dir) throw new Error(`cannot apply ${what}: no ${controller} controller for jobs`);
      return dir;
    };
    const set = (file: string, value: string) => {
      try {
        Deno.writeTextFileSync(file, value, { create: false });
      } catch (error) {
        throw new Error(`cannot write ${value} to ${file}: ${errorMessage(error)}`);
      }
    };
    if (this.#isolation.kind === "v2") {
      if (memoryBytes !== undefined) {
        const dir = need("memory", "the memory limit");
        set(`${dir}/memory.max`, `${memoryBytes}`);
        write(`${dir}/memory.swap.max`, "0");
      }
      if (cpus !== undefined) {
        set(`${need("cpu", "the CPU limit")}/cpu.max`, `${Math.round(cpus * 100000)} 100000`);
      }
      if (pids !== undefined) set(`${need("pids", "the process limit")}/pids.max`, `${pids}`);
    } else {
      if (memoryBytes !== undefined) {
        const dir = need("memory", "the memory limit");
        set(`${dir}/memory.limit_in_bytes`, `${memoryBytes}`);
        write(`${dir}/memory.memsw.limit_in_bytes`, `${memoryBytes}`);
      }
      if (cpus !== undefined) {
        const dir = need("cpu", "the CPU limit");
        set(`${dir}/cpu.cfs_period_us`, "100000");
        set(`${dir}/cpu.cfs_quota_us`, `${Math.round(cpus * 100000)}`);
      }
      if (pids !== undefined) set(`${need("pids", "the process limit")}/pids.max`, `${pids}`);
    }
  }

  /** What to record so that another agent can empty and remove this cgroup after a crash. */
  get record(): JobCgroupRecord {
    return { dirs: this.dirs, freezer: this.#byController.freezer, v2: this.#v2 };
  }

  /** The pids in the cgroup now (from the hierarchy that sees every process of the job). */
  pids(): number[] {
    return pidsIn(this.dirs);
  }

  /**
   * SIGKILLs every process of the job and waits until the cgroup is empty (or `deadlineMs` is
   * over). Returns whether it is empty.
   */
  async kill(deadlineMs = 10_000): Promise<boolean> {
    return await emptyCgroup(this.record, deadlineMs);
  }

  /**
   * SIGKILLs every process of the job but those in `keep` (the shell and its PTY shim) and waits
   * until they are gone: what a pids limit calls for, so the job goes on to its epilogue.
   */
  async killAllBut(keep: ReadonlySet<number>, deadlineMs = 5_000): Promise<void> {
    const freezer = this.#freezer();
    const deadline = performance.now() + deadlineMs;
    while (performance.now() < deadline) {
      const others = this.pids().filter((pid) => !keep.has(pid));
      if (others.length === 0) {
        // Dead processes count against the limit until their parent (often init) reaps them.
        const pidsDir = this.#byController.pids;
        const current = pidsDir ? readNumber(`${pidsDir}/pids.current`) : undefined;
        if (current === undefined || current <= keep.size) return;
        await delay(5);
        continue;
      }
      await freezer?.freeze();
      try {
        for (const pid of this.pids()) {
          if (keep.has(pid)) continue;
          try {
            Deno.kill(pid, "SIGKILL");
          } catch {
            // gone
          }
        }
      } finally {
        freezer?.thaw();
      }
      await delay(5); // until they are torn down and leave the cgroup
    }
  }

  #freezer(): Freezer | undefined {
    return freezerFor(this.record);
  }

  /**
   * How many times each limit was reached since the last call: processes killed by the memory
   * limit, and forks refused by the process limit.
   */
  limitHits(): Promise<LimitCounters> {
    const now = this.#limitCounters();
    const hits = { memory: now.memory - this.#seen.memory, pids: now.pids - this.#seen.pids };
    this.#seen = now;
    return Promise.resolve(hits);
  }

  #limitCounters(): LimitCounters {
    const memoryDir = this.#byController.memory;
    const pidsDir = this.#byController.pids;
    let memory = 0;
    let pids = 0;
    if (memoryDir && this.limits.memoryBytes !== undefined) {
      memory = this.#isolation.kind === "v2"
        ? readKeyed(`${memoryDir}/memory.events`).get("oom_kill") ?? 0
        : readKeyed(`${memoryDir}/memory.oom_control`).get("oom_kill") ?? 0;
    }
    if (pidsDir && this.limits.pids !== undefined) {
      pids = readKeyed(`${pidsDir}/pids.events`).get("max") ?? 0;
    }
    return { memory, pids };
  }

  /** What the job used so far (all of it once the cgroup is empty). */
  usage(): Promise<ResourceUsage> {
    return Promise.resolve(readUsage(this.#isolation.kind, this.#byController, this.#v2));
  }

  /**
   * Removes every directory (they must be empty: {@linkcode JobCgroup.kill} first).
   *
   * @throws {Error} naming the first directory that could not be removed.
   */
  async remove(): Promise<void> {
    if (this.#removed) return;
    this.#removed = true;
    await removeCgroupDirs(this.dirs);
  }
}

/** Removes cgroup dirs that exist; throws the first failure after trying them all. */
export async function removeCgroupDirs(dirs: readonly string[]): Promise<void> {
  let failure: Error | undefined;
  for (const dir of dirs) {
    // A cgroup that just emptied may still be busy for a moment in the kernel.
    for (let attempt = 0;; attempt++) {
      try {
        Deno.removeSync(dir); // no waiting on the thread pool (see detectJobIsolation)
        break;
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) break;
        if (attempt < 20 && error instanceof Deno.errors.Busy) {
          await delay(5);
          continue;
        }
        failure ??= new Error(`Cannot remove cgroup ${dir}: ${errorMessage(error)}`);
        break;
      }
    }
  }
  if (failure) throw failure;
}

interface Freezer {
  freeze(): Promise<void>;
  thaw(): void;
}

/** Freezes with v2's `cgroup.freeze` or v1's `freezer.state`, whichever the dirs have. */
function freezerFor(record: JobCgroupRecord): Freezer | undefined {
  const { freezer: v1, v2 } = record;
  if (v1) {
    return {
      async freeze() {
        write(`${v1}/freezer.state`, "FROZEN");
        for (let i = 0; i < 200; i++) {
          try {
            if (Deno.readTextFileSync(`${v1}/freezer.state`).trim() !== "FREEZING") return;
          } catch {
            return;
          }
          await delay(1);
        }
      },
      thaw() {
        write(`${v1}/freezer.state`, "THAWED");
      },
    };
  }
  if (v2) {
    return {
      async freeze() {
        if (!write(`${v2}/cgroup.freeze`, "1")) return;
        for (let i = 0; i < 200; i++) {
          if (readKeyed(`${v2}/cgroup.events`).get("frozen") === 1) return;
          await delay(1);
        }
      },
      thaw() {
        write(`${v2}/cgroup.freeze`, "0");
      },
    };
  }
  return undefined;
}

/**
 * Kills everything in a job cgroup given by its dirs and waits until no process is left (or the
 * deadline passed): `cgroup.kill` where `v2` has it, else freeze, SIGKILL each pid, thaw, again.
 * Used at job end and by crash recovery. Returns whether the cgroup is empty.
 */
export async function emptyCgroup(
  record: JobCgroupRecord,
  deadlineMs = 10_000,
): Promise<boolean> {
  const { dirs, v2 } = record;
  const deadline = performance.now() + deadlineMs;
  const canKillAtOnce = v2 !== undefined && existsSync(`${v2}/cgroup.kill`);
  const freezer = freezerFor(record);
  for (let round = 0;; round++) {
    const pids = pidsIn(dirs);
    if (pids.length === 0) return true;
    if (performance.now() > deadline) return false;
    if (canKillAtOnce && round % 5 === 0) {
      write(`${v2}/cgroup.kill`, "1");
    } else if (round % 5 === 0 || !canKillAtOnce) {
      await freezer?.freeze();
      for (const pid of pidsIn(dirs)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      freezer?.thaw();
    }
    // Killed processes leave the cgroup once the kernel has torn them down (zombies have left).
    await delay(round < 20 ? 1 : 10);
  }
}

/**
 * What a cgroup used: `byController` names its directory per controller (one directory for all
 * of them in v2), `v2` its unified directory (CPU time when there is no `cpuacct`).
 */
function readUsage(
  kind: "v1" | "v2",
  c: Readonly<Record<string, string>>,
  v2: string | undefined,
): ResourceUsage {
  const usage: { -readonly [K in keyof ResourceUsage]: ResourceUsage[K] } = {};
  if (kind === "v2") {
    const cpu = readKeyed(`${v2}/cpu.stat`);
    if (cpu.has("user_usec")) usage.cpuUserSeconds = cpu.get("user_usec")! / 1e6;
    if (cpu.has("system_usec")) usage.cpuSystemSeconds = cpu.get("system_usec")! / 1e6;
    if (c.memory) usage.peakMemoryBytes = readNumber(`${c.memory}/memory.peak`);
    if (c.pids) usage.peakProcesses = readNumber(`${c.pids}/pids.peak`);
    if (c.io) {
      try {
        let read = 0;
        let written = 0;
        for (const line of Deno.readTextFileSync(`${c.io}/io.stat`).split("\n")) {
          read += Number(/rbytes=(\d+)/.exec(line)?.[1] ?? 0);
          written += Number(/wbytes=(\d+)/.exec(line)?.[1] ?? 0);
        }
        usage.blockReadBytes = read;
        usage.blockWriteBytes = written;
      } catch {
        // no io.stat
      }
    }
  } else {
    if (c.cpuacct) {
      // `cpuacct.usage` is exact; `usage_user`/`usage_sys` and `cpuacct.stat` are sampled at
      // ticks (and disagree by 15 %): split the exact total in the ratio of the ticks.
      const total = readNumber(`${c.cpuacct}/cpuacct.usage`);
      const ticks = readKeyed(`${c.cpuacct}/cpuacct.stat`);
      if (total !== undefined) {
        const user = ticks.get("user") ?? 0;
        const system = ticks.get("system") ?? 0;
        const share = user + system > 0 ? user / (user + system) : 1;
        usage.cpuUserSeconds = (total * share) / 1e9;
        usage.cpuSystemSeconds = (total * (1 - share)) / 1e9;
      }
    } else if (v2) {
      const cpu = readKeyed(`${v2}/cpu.stat`);
      if (cpu.has("user_usec")) usage.cpuUserSeconds = cpu.get("user_usec")! / 1e6;
      if (cpu.has("system_usec")) usage.cpuSystemSeconds = cpu.get("system_usec")! / 1e6;
    }
    if (c.memory) {
      usage.peakMemoryBytes = readNumber(`${c.memory}/memory.max_usage_in_bytes`);
    }
    if (c.pids) usage.peakProcesses = readNumber(`${c.pids}/pids.peak`);
    if (c.blkio) {
      try {
        const text = Deno.readTextFileSync(`${c.blkio}/blkio.throttle.io_service_bytes_recursive`);
        let read = 0;
        let written = 0;
        for (const line of text.split("\n")) {
          const [, op, value] = line.trim().split(/\s+/);
          if (op === "Read") read += Number(value);
          if (op === "Write") written += Number(value);
        }
        usage.blockReadBytes = read;
        usage.blockWriteBytes = written;
      } catch {
        // no blkio stats
      }
    }
  }
  return usage;
}

/**
 * What the cgroup of process `pid` used so far, read from this host's cgroup hierarchies (e.g. a
 * container's, whose init process that is): `undefined` when its cgroups are not visible here
 * (another PID or mount namespace) or the process is gone.
 */
export async function processCgroupUsage(pid: number): Promise<ResourceUsage | undefined> {
  const found = await processCgroupDirs(pid);
  return found && readUsage(found.kind, found.byController, found.v2);
}

/**
 * How many processes the memory limit of process `pid`'s cgroup killed (`oom_kill`) and how many
 * forks its process limit refused (`max`), counted since the cgroup was made (e.g. a container's,
 * whose init process that is); `undefined` when its cgroups are not visible here or it is gone.
 */
export async function processLimitCounters(pid: number): Promise<LimitCounters | undefined> {
  const found = await processCgroupDirs(pid);
  if (!found) return undefined;
  const { memory, pids } = found.byController;
  return {
    memory: memory
      ? readKeyed(
        found.kind === "v2" ? `${memory}/memory.events` : `${memory}/memory.oom_control`,
      ).get("oom_kill") ?? 0
      : 0,
    pids: pids ? readKeyed(`${pids}/pids.events`).get("max") ?? 0 : 0,
  };
}

/** The cgroup directories of process `pid` on this host, per controller. */
async function processCgroupDirs(pid: number): Promise<
  | {
    readonly kind: "v1" | "v2";
    readonly byController: Readonly<Record<string, string>>;
    readonly v2: string | undefined;
  }
  | undefined
> {
  let lines: string[];
  let mounts: Mount[];
  try {
    lines = (await Deno.readTextFile(`/proc/${pid}/cgroup`)).split("\n").filter((l) => l);
    mounts = cgroupMounts();
  } catch {
    return undefined;
  }
  const v1Mounts = mounts.filter((m) => m.type === "cgroup");
  const v2Mount = mounts.find((m) => m.type === "cgroup2");
  const v2Path = lines.find((l) => l.startsWith("0::"))?.slice(3);
  const v2 = v2Mount && v2Path !== undefined ? dirIn(v2Mount, v2Path) : undefined;
  const byController: Record<string, string> = {};
  if (v1Mounts.length === 0) {
    if (!v2) return undefined;
    for (const c of ["memory", "pids", "io"]) byController[c] = v2;
    return { kind: "v2", byController, v2 };
  }
  for (const line of lines) {
    const [, controllers, ...rest] = line.split(":");
    const path = rest.join(":");
    for (const controller of controllers.split(",")) {
      const mount = v1Mounts.find((m) => m.options.includes(controller));
      const dir = mount ? dirIn(mount, path) : undefined;
      if (dir) byController[controller] = dir;
    }
  }
  return { kind: "v1", byController, v2 };
}

/** How old an empty job cgroup must be before another agent takes it for a leftover. */
const EMPTY_LEFTOVER_AGE_MS = 60_000;

/**
 * Removes the empty job cgroups, older than a minute, in the directories this agent makes job
 * cgroups in: those of jobs whose record went with their host directory. A live agent's job
 * cgroup is never empty for that long (its shell is in it until the job ends), and a cgroup that
 * still holds processes is left alone: without its record, nothing says its agent is dead.
 */
export async function removeEmptyLeftoverCgroups(
  logger: { info(message: string): void },
): Promise<number> {
  const isolation = await jobIsolation();
  const parents = isolation.kind === "v2"
    ? [isolation.parent]
    : isolation.kind === "v1"
    ? [...Object.values(isolation.parents), ...(isolation.killer ? [isolation.killer] : [])]
    : [];
  let removed = 0;
  for (const parent of parents) {
    try {
      for await (const entry of Deno.readDir(parent)) {
        if (!entry.isDirectory || !entry.name.startsWith(JOB_CGROUP_PREFIX)) continue;
        const dir = `${parent}/${entry.name}`;
        try {
          const info = await Deno.stat(dir);
          const age = Date.now() - (info.mtime?.getTime() ?? Date.now());
          if (age < EMPTY_LEFTOVER_AGE_MS) continue;
          if (pidsIn([dir]).length > 0) continue;
          await Deno.remove(dir);
          removed++;
          logger.info(`Removed the empty leftover cgroup ${dir}`);
        } catch {
          // in use again, or gone
        }
      }
    } catch {
      // not readable
    }
  }
  return removed;
}
