/**
 * Runs the blocks of a plan (PIPELINES.md §2.7): a block starts when its dependencies passed
 * (skipped counts as passed) and is canceled when one failed; the jobs of running blocks share
 * `concurrency` slots; `fail_fast` stop/cancel, job and pipeline deadlines, and a stop from
 * outside (Ctrl-C). It knows nothing of how a job runs: `startJob` does that.
 *
 * @module
 */

import type { PlannedJob } from "./expand.ts";
import { after, type Timer } from "../../util/delay.ts";

/** The end of one job. */
export type JobOutcome = "passed" | "failed" | "stopped" | "canceled";

/** The end of one block. */
export type BlockOutcome = "passed" | "failed" | "stopped" | "canceled" | "skipped";

/** A job that is running. */
export interface RunningJob {
  readonly result: Promise<"passed" | "failed" | "stopped">;
  stop(): Promise<void>;
}

/** One block as the scheduler sees it. */
export interface SchedulerBlock {
  readonly index: number;
  readonly name: string;
  /** Indices of blocks it waits for; blocks not in the list count as passed. */
  readonly dependencies: readonly number[];
  readonly jobs: readonly PlannedJob[];
  readonly skipped: boolean;
  readonly failFast: { readonly stop: boolean; readonly cancel: boolean };
}

/** Options of {@linkcode runBlocks}. */
export interface SchedulerOptions {
  readonly blocks: readonly SchedulerBlock[];
  /** Jobs running at once across blocks. */
  readonly concurrency: number;
  readonly failFast: { readonly stop: boolean; readonly cancel: boolean };
  /** Pipeline deadline in ms from now. @default none */
  readonly deadlineMs?: number;
  /** Milliseconds in a minute of a time limit (tests shorten it). @default 60000 */
  readonly msPerMinute?: number;
  /** Whether job time limits apply. @default true */
  readonly jobDeadlines?: boolean;
  /** Stops everything when aborted (Ctrl-C). */
  readonly signal?: AbortSignal;
  startJob(job: PlannedJob): RunningJob;
  onBlockStart?(block: SchedulerBlock): void;
  onBlockEnd?(block: SchedulerBlock, outcome: BlockOutcome, ms: number): void;
  onJobEnd?(job: PlannedJob, outcome: JobOutcome, ms: number): void;
}

/** What a run of the blocks gives. */
export interface SchedulerResult {
  readonly blocks: ReadonlyMap<number, BlockOutcome>;
  readonly jobs: ReadonlyMap<number, { outcome: JobOutcome; ms: number }>;
  readonly result: "passed" | "failed" | "stopped" | "canceled";
  readonly reason: "" | "test" | "user" | "timeout" | "fast_failing";
  /** Whether any job started. */
  readonly anyJobRan: boolean;
}

/** Runs the blocks; resolves when every block has ended. Never rejects. */
export function runBlocks(options: SchedulerOptions): Promise<SchedulerResult> {
  const { blocks, concurrency, startJob, signal } = options;
  const jobDeadlines = options.jobDeadlines ?? true;
  const msPerMinute = options.msPerMinute ?? 60_000;
  const state = new Map<number, BlockOutcome | "pending" | "running">();
  const present = new Set(blocks.map((b) => b.index));
  for (const b of blocks) state.set(b.index, "pending");
  const jobResults = new Map<number, { outcome: JobOutcome; ms: number }>();
  const queue: { job: PlannedJob; block: SchedulerBlock }[] = [];
  const running = new Map<number, { handle: RunningJob; block: SchedulerBlock }>();
  const blockStart = new Map<number, number>();
  let halted: "" | "user" | "timeout" | "fast_failing" = "";
  let anyJobRan = false;
  let anyFailed = false;
  let resolveDone!: (r: SchedulerResult) => void;
  const done = new Promise<SchedulerResult>((r) => resolveDone = r);
  let finished = false;
  let deadlineTimer: Timer | undefined;

  const remaining = (b: SchedulerBlock) => b.jobs.filter((j) => !jobResults.has(j.nn)).length;

  const endBlock = (b: SchedulerBlock) => {
    if (state.get(b.index) !== "running") return;
    const outcomes = b.jobs.map((j) => jobResults.get(j.nn)!.outcome);
    const outcome: BlockOutcome = outcomes.includes("failed")
      ? "failed"
      : outcomes.includes("stopped")
      ? "stopped"
      : outcomes.includes("canceled")
      ? "canceled"
      : "passed";
    state.set(b.index, outcome);
    options.onBlockEnd?.(b, outcome, performance.now() - (blockStart.get(b.index) ?? 0));
  };

  const cancelJob = (job: PlannedJob, block: SchedulerBlock) => {
    if (jobResults.has(job.nn)) return;
    jobResults.set(job.nn, { outcome: "canceled", ms: 0 });
    options.onJobEnd?.(job, "canceled", 0);
    if (remaining(block) === 0 && ![...running.values()].some((r) => r.block === block)) {
      endBlock(block);
    }
  };

  const cancelQueued = (only?: SchedulerBlock) => {
    for (let i = queue.length - 1; i >= 0; i--) {
      if (only && queue[i].block !== only) continue;
      const [{ job, block }] = queue.splice(i, 1);
      cancelJob(job, block);
    }
  };

  const halt = (reason: "user" | "timeout" | "fast_failing", stopRunning: boolean) => {
    if (!halted || reason !== "fast_failing") halted = halted || reason;
    cancelQueued();
    if (stopRunning) { for (const { handle } of running.values()) void handle.stop(); }
  };

  const pump = () => {
    if (finished) return;
    // Start blocks whose dependencies ended.
    let changed = true;
    while (changed) {
      changed = false;
      for (const b of blocks) {
        if (state.get(b.index) !== "pending") continue;
        const deps = b.dependencies.filter((d) => present.has(d)).map((d) => state.get(d)!);
        if (deps.some((s) => s === "pending" || s === "running")) continue;
        changed = true;
        if (halted || deps.some((s) => s === "failed" || s === "canceled" || s === "stopped")) {
          state.set(b.index, "canceled");
          for (const job of b.jobs) {
            jobResults.set(job.nn, { outcome: "canceled", ms: 0 });
            options.onJobEnd?.(job, "canceled", 0);
          }
          options.onBlockEnd?.(b, "canceled", 0);
        } else if (b.skipped || b.jobs.length === 0) {
          state.set(b.index, "skipped");
          options.onBlockEnd?.(b, "skipped", 0);
        } else {
          state.set(b.index, "running");
          blockStart.set(b.index, performance.now());
          options.onBlockStart?.(b);
          for (const job of b.jobs) queue.push({ job, block: b });
        }
      }
    }
    while (!halted && running.size < concurrency && queue.length > 0) {
      const { job, block } = queue.shift()!;
      launch(job, block);
    }
    if (
      running.size === 0 && queue.length === 0 &&
      [...state.values()].every((s) => s !== "pending" && s !== "running")
    ) {
      finish();
    }
  };

  const launch = (job: PlannedJob, block: SchedulerBlock) => {
    anyJobRan = true;
    const started = performance.now();
    const handle = startJob(job);
    running.set(job.nn, { handle, block });
    let timer: Timer | undefined;
    let timedOut = false;
    if (jobDeadlines) {
      timer = after(job.timeLimit * msPerMinute, () => {
        timedOut = true;
        void handle.stop();
      });
    }
    handle.result.then((result) => result, () => "failed" as const).then((result) => {
      timer?.cancel();
      running.delete(job.nn);
      const outcome: JobOutcome = timedOut ? "stopped" : result;
      const ms = performance.now() - started;
      jobResults.set(job.nn, { outcome, ms });
      options.onJobEnd?.(job, outcome, ms);
      if (outcome === "failed") {
        anyFailed = true;
        if (options.failFast.stop) halt("fast_failing", true);
        else if (options.failFast.cancel) halt("fast_failing", false);
        else if (block.failFast.stop) {
          cancelQueued(block);
          for (const r of running.values()) if (r.block === block) void r.handle.stop();
        } else if (block.failFast.cancel) cancelQueued(block);
      }
      if (remaining(block) === 0 && ![...running.values()].some((r) => r.block === block)) {
        endBlock(block);
      }
      pump();
    });
  };

  const finish = () => {
    if (finished) return;
    finished = true;
    deadlineTimer?.cancel();
    signal?.removeEventListener("abort", onAbort);
    const outcomes = [...state.values()] as BlockOutcome[];
    let result: SchedulerResult["result"];
    let reason: SchedulerResult["reason"];
    if (halted === "user" || halted === "timeout") {
      result = anyJobRan ? "stopped" : "canceled";
      reason = halted;
    } else if (anyFailed || outcomes.includes("failed")) {
      result = "failed";
      reason = halted === "fast_failing" ? "fast_failing" : "test";
    } else if (outcomes.includes("stopped")) {
      result = "stopped";
      reason = "timeout";
    } else {
      result = "passed";
      reason = "";
    }
    resolveDone({
      blocks: state as Map<number, BlockOutcome>,
      jobs: jobResults,
      result,
      reason,
      anyJobRan,
    });
  };

  const onAbort = () => {
    halt("user", true);
    pump();
  };
  if (signal?.aborted) onAbort();
  signal?.addEventListener("abort", onAbort);
  if (options.deadlineMs !== undefined) {
    deadlineTimer = after(options.deadlineMs, () => {
      halt("timeout", true);
      pump();
    });
  }
  pump();
  return done;
}
