/**
 * Runs real jobs for tests and renders their events in the simplified notation of the
 * original's tests (SEMAPHORE_COMPAT.md §5.7): `job_started`, `directive: X`, output strings,
 * `Exit Code: N`, `job_finished: R`.
 *
 * @module
 */

import type { JobEvent, JobResult } from "../../lib/engine/events.ts";
import { parseJobRequestJson } from "../../lib/engine/job_request.ts";
import { Job, type JobOptions } from "../../lib/engine/job.ts";
import { createExecutor } from "../../executors/for_job.ts";
import { silentLogger } from "../../lib/util/agent_log.ts";

/** Renders events in the simplified notation; consecutive outputs are merged. */
export function simplify(events: readonly JobEvent[]): string[] {
  const out: string[] = [];
  let pendingOutput: string | undefined;
  const flush = () => {
    if (pendingOutput !== undefined) out.push(pendingOutput);
    pendingOutput = undefined;
  };
  for (const e of events) {
    if (e.event === "cmd_output") {
      pendingOutput = (pendingOutput ?? "") + e.output;
      continue;
    }
    flush();
    if (e.event === "job_started") out.push("job_started");
    if (e.event === "cmd_started") out.push(`directive: ${e.directive}`);
    if (e.event === "cmd_finished") out.push(`Exit Code: ${e.exit_code}`);
    if (e.event === "job_finished") out.push(`job_finished: ${e.result}`);
  }
  flush();
  return out;
}

/** A HOME for job shells: empty, so the machine's profile files do not run. */
export async function makeHome(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "agent-test-home-" });
}

/** The environment a test job shell starts from, with `home` as HOME. */
export function testShellEnv(home: string): Record<string, string> {
  return {
    HOME: home,
    PATH: Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
    LANG: "C.UTF-8",
    TMPDIR: Deno.env.get("TMPDIR") ?? "/tmp",
  };
}

/** What {@linkcode runTestJob} returns. */
export interface TestJobRun {
  readonly result: JobResult;
  readonly events: JobEvent[];
  readonly job: Job;
  readonly home: string;
}

/** Options of {@linkcode startTestJob}: a partial job request plus job options. */
export interface TestJobOptions extends Partial<Omit<JobOptions, "request" | "sink">> {
  readonly request: Record<string, unknown>;
  /** Called with each event as it is written. */
  readonly onEvent?: (event: JobEvent, job: Job) => void;
  readonly home?: string;
}

/** Builds a job over a fresh HOME and starts it; the caller awaits `done`. */
export async function startTestJob(
  options: TestJobOptions,
): Promise<{ job: Job; events: JobEvent[]; home: string; done: Promise<JobResult> }> {
  const { request, onEvent, home: givenHome, ...rest } = options;
  const home = givenHome ?? await makeHome();
  const events: JobEvent[] = [];
  let job: Job | undefined = undefined;
  const parsed = parseJobRequestJson(JSON.stringify({ job_id: "test-job", ...request }));
  job = Job.create({
    createExecutor,
    request: parsed,
    logger: silentLogger,
    shellEnv: testShellEnv(home),
    selfHosted: true,
    ...rest,
    sink: {
      write(event) {
        events.push(event);
        onEvent?.(event, job!);
      },
    },
  });
  return { job, events, home, done: job.run() };
}

/** Runs a job to its end; removes its HOME unless one was given. */
export async function runTestJob(options: TestJobOptions): Promise<TestJobRun> {
  const { job, events, home, done } = await startTestJob(options);
  const result = await done;
  if (!options.home) await Deno.remove(home, { recursive: true });
  return { result, events, job, home };
}

/** Resolves when `predicate` holds for an event of a running job. */
export function eventWaiter(
  predicate: (event: JobEvent) => boolean,
): { onEvent: (event: JobEvent, job: Job) => void; seen: Promise<Job> } {
  let resolve!: (job: Job) => void;
  const seen = new Promise<Job>((r) => resolve = r);
  return {
    onEvent(event, job) {
      if (predicate(event)) resolve(job);
    },
    seen,
  };
}
